"""cavmae-lite: a compact, complete PyTorch CAV-MAE (Gong et al., ICLR 2023) for learning and exploring.

Importing the package loads torch and the model only; data, figures and widgets live in submodules that
import their heavier dependencies (PyAV, matplotlib, ipywidgets) when used.

Imported before torch, it picks how PyTorch's idle CPU threads wait (:mod:`cavmae_lite.omp`): they sleep instead of
spinning when other processes are busy at import time, which keeps training on a shared machine from slowing
several-fold (``benchmarks/bench_contention.py``); ``CAVMAE_OMP_WAIT_POLICY`` or your own ``OMP_WAIT_POLICY`` decide
otherwise. Imported after torch, it changes nothing.
"""

from .omp import apply_wait_policy

apply_wait_policy()  # before anything imports torch

from .checkpoints import convert_official_state_dict, load_checkpoint, save_checkpoint, to_official_state_dict  # noqa: E402
from .config import CAVMAEConfig, CAVMAESyncConfig  # noqa: E402
from .losses import info_nce, reconstruction_loss  # noqa: E402
from .masking import random_masking  # noqa: E402
from .model import CAVMAE, CAVMAEClassifier, CAVMAEOutput  # noqa: E402
from .sync import CAVMAESync, CAVMAESyncOutput  # noqa: E402


def _version() -> str:
    """The installed distribution's version (pyproject.toml's, the one literal); a source tree that is not installed
    reads pyproject.toml beside the package."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cavmae-lite")
    except PackageNotFoundError:
        import re
        from pathlib import Path

        try:
            text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
        except OSError:
            return "0+unknown"
        m = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
        return m.group(1) if m else "0+unknown"


__version__ = _version()

__all__ = [
    "CAVMAE",
    "CAVMAEClassifier",
    "CAVMAEConfig",
    "CAVMAEOutput",
    "CAVMAESync",
    "CAVMAESyncConfig",
    "CAVMAESyncOutput",
    "convert_official_state_dict",
    "info_nce",
    "load_checkpoint",
    "random_masking",
    "reconstruction_loss",
    "save_checkpoint",
    "to_official_state_dict",
]
