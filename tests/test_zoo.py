"""The cached tiny pretrained model: trained once (deterministically), saved atomically, then reused."""

import pytest
import torch

from cavmae_lite import zoo


@pytest.fixture()
def small_zoo(tmp_path, monkeypatch):
    from cavmae_lite.data import make_synthetic

    data = make_synthetic(tmp_path / "data", 0, 8, 0, 4, mp4=0, workers=1, progress=False)
    monkeypatch.setenv(zoo.ENV_DIR, str(tmp_path / "zoo"))
    monkeypatch.setattr(zoo, "FAST_RECIPE", {"max_steps": 2, "batch_size": 4, "warmup_steps": 1, "log_every": 1, "threads": 1})
    return data


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_trains_once_then_loads(small_zoo, tmp_path):
    model, info = zoo.pretrained_tiny_info(fast=True, data_dir=small_zoo)
    assert info["trained_now"] and info["path"].is_file() and info["path"].parent == tmp_path / "zoo"
    assert info["path"] == zoo.cache_path(fast=True, data_dir=small_zoo)
    assert len(info["history"]) == 2 and not model.training
    again, info2 = zoo.pretrained_tiny_info(fast=True, data_dir=small_zoo)
    assert not info2["trained_now"] and _same(model, again)
    assert not list(info["path"].parent.glob("*.tmp"))  # atomic save left no temporary file


def test_training_is_deterministic_and_leaves_the_rng_alone(small_zoo):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    first, _ = zoo.pretrained_tiny_info(fast=True, data_dir=small_zoo)
    assert torch.equal(torch.rand(3), before)  # the caller's random stream is untouched
    second, info = zoo.pretrained_tiny_info(fast=True, data_dir=small_zoo, force=True)
    assert info["trained_now"] and _same(first, second)


def test_recipe_change_gives_a_new_file_and_corrupt_files_are_retrained(small_zoo, monkeypatch):
    path = zoo.cache_path(fast=True, data_dir=small_zoo)
    monkeypatch.setattr(zoo, "FAST_RECIPE", {"max_steps": 3, "batch_size": 4, "warmup_steps": 1, "log_every": 1, "threads": 1})
    assert zoo.cache_path(fast=True, data_dir=small_zoo) != path
    assert zoo.cache_path(fast=False, data_dir=small_zoo).name.startswith("tiny-")
    bad = zoo.cache_path(fast=True, data_dir=small_zoo)
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"not a checkpoint")
    _, info = zoo.pretrained_tiny_info(fast=True, data_dir=small_zoo)
    assert info["trained_now"] and len(info["history"]) == 3


def test_zoo_file_is_an_ordinary_checkpoint(small_zoo):
    from cavmae_lite.train import load_pretrained

    model, info = zoo.pretrained_tiny_info(fast=True, data_dir=small_zoo)
    assert _same(model, load_pretrained(info["path"]))


def test_default_location_is_next_to_the_default_data(monkeypatch):
    from cavmae_lite.data import default_data_dir

    monkeypatch.delenv(zoo.ENV_DIR, raising=False)
    assert zoo.zoo_dir() == default_data_dir().parent / "zoo"
