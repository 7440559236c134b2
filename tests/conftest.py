"""Shared test settings: one torch thread (the CI machine has 2 shared cores), fast mode, small configs."""

import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("CAVMAE_FAST", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny():
    """The tutorial-scale model config."""
    from cavmae_lite import CAVMAEConfig

    return CAVMAEConfig.tiny()


@pytest.fixture
def close_figures():
    """Headless matplotlib for figure tests; closes every figure afterwards."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")
