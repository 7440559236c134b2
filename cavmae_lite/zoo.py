"""The model zoo of the tutorial: a tiny CAV-MAE pretrained on the default synthetic data, cached on disk.

    from cavmae_lite.zoo import pretrained_tiny
    model = pretrained_tiny()          # trains on first use (deterministic), then loads in a second

Notebooks 04, 05, 07 and 08 share this model, so none of them retrains from zero. The first call builds the
default dataset if needed (:func:`cavmae_lite.data.ensure_default_dataset`), pretrains with a fixed recipe and
seed, and saves the weights atomically (temporary file + rename) under a name that hashes the recipe and the
dataset's manifest — change either and a new model is trained; a corrupt file is retrained. A file lock
keeps two processes (e.g. parallel notebook runs) from training the same model twice.

Location: ``$CAVMAE_ZOO_DIR`` if set, else ``zoo/`` next to the default dataset (``data/zoo/`` in a source
checkout, git-ignored). With ``CAVMAE_FAST=1`` a separate, much shorter recipe is used (a few steps on the
small fast dataset): the pictures are then those of a barely trained model, but every cell runs in seconds.

The saved file is a normal cavmae-lite checkpoint (``model`` + ``model_config``), so
``cavmae-lite reconstruct CLIP --checkpoint data/zoo/tiny-....pt`` and ``train.load_pretrained`` read it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .config import CAVMAEConfig, TrainConfig
from .model import CAVMAE

ZOO_VERSION = 1
ENV_DIR = "CAVMAE_ZOO_DIR"

# Recipes: everything that determines the weights. Model: CAVMAEConfig.tiny(); training: TrainConfig.preset("tiny")
# with these overrides (fast: a few small steps so that a notebook run stays within its time budget).
# threads=-1: only the idle cores (on a shared CPU, oversubscribed OpenMP threads make a step several times slower).
FULL_RECIPE: dict[str, Any] = {"max_steps": 1200, "log_every": 10, "threads": -1}
FAST_RECIPE: dict[str, Any] = {"max_steps": 16, "batch_size": 12, "warmup_steps": 3, "log_every": 4, "threads": -1}


def _fast(fast: bool | None) -> bool:
    if fast is not None:
        return bool(fast)
    return os.environ.get("CAVMAE_FAST", "") not in ("", "0", "false", "False")


def zoo_dir() -> Path:
    """``$CAVMAE_ZOO_DIR``, else ``<default data dir>/../zoo`` (``data/zoo`` in a checkout)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    from .data import default_data_dir

    return default_data_dir().parent / "zoo"


def recipe(fast: bool | None = None, data_dir: str | Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Everything that determines the tiny model's weights (the cache key is a hash of it)."""
    from .data import default_data_dir
    from .data.manifest import read_manifest

    fast = _fast(fast)
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    overrides = dict(FAST_RECIPE if fast else FULL_RECIPE)
    train = TrainConfig.preset("tiny", seed=seed, device="cpu", num_workers=0,
                               checkpoint_every=10**9, **overrides)
    fingerprint = read_manifest(data_dir).fingerprint() if (data_dir / "manifest.json").is_file() else "unbuilt"
    return {"zoo_version": ZOO_VERSION, "name": "tiny-fast" if fast else "tiny", "model": CAVMAEConfig.tiny().to_dict(),
            "train": train.to_dict(), "data": {"dir": str(data_dir), "manifest": fingerprint, "split": "train"}}


def _key(r: dict[str, Any]) -> str:
    keyed = {**r, "data": {k: v for k, v in r["data"].items() if k != "dir"}}  # the folder may move
    return hashlib.sha1(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]


def cache_path(fast: bool | None = None, data_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Where the tiny model for this recipe lives (whether or not it exists yet)."""
    r = recipe(fast, data_dir, seed)
    return zoo_dir() / f"{r['name']}-{_key(r)}.pt"


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, the atomic rename still prevents torn files
        yield
        return
    with open(path.with_name(f".{path.name}.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _load(path: Path, device: str | torch.device) -> tuple[CAVMAE, dict[str, Any]]:
    from .checkpoints import load_strict

    obj = load_checkpoint(path)
    if not isinstance(obj, dict) or "model" not in obj or "model_config" not in obj:
        raise CheckpointError(f"{path} is not a zoo checkpoint")
    model = CAVMAE(CAVMAEConfig.from_dict(obj["model_config"]))
    load_strict(model, obj["model"], str(path))
    info = {"path": path, "recipe": obj.get("recipe", {}), "history": obj.get("history", []),
            "train_seconds": obj.get("train_seconds")}
    return model.to(device).eval(), info


def train_tiny(fast: bool | None = None, data_dir: str | Path | None = None, seed: int = 0, progress: bool = False,
               on_step: Callable[[int, dict[str, Any]], None] | None = None) -> tuple[CAVMAE, dict[str, Any]]:
    """Pretrain the tiny model with the zoo recipe (no caching). Returns (model, checkpoint dict)."""
    from .data import ensure_default_dataset, load_dataset
    from .train import pretrain

    data_dir = ensure_default_dataset(data_dir)
    r = recipe(fast, data_dir, seed)
    config = CAVMAEConfig.from_dict(r["model"])
    tc = TrainConfig.from_dict(r["train"])
    dataset = load_dataset(data_dir, config=config, split="train", train=True, seed=seed)
    t0 = time.time()
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG untouched
        result = pretrain(config, tc, dataset, out_dir=None, progress=progress, on_step=on_step)
    model = result.model.cpu().eval()
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "recipe": r,
            "history": result.history, "train_seconds": time.time() - t0, "step": result.step}
    return model, ckpt


def pretrained_tiny_info(fast: bool | None = None, data_dir: str | Path | None = None, seed: int = 0,
                         device: str | torch.device = "cpu", force: bool = False, progress: bool = False,
                         on_step: Callable[[int, dict[str, Any]], None] | None = None,
                         ) -> tuple[CAVMAE, dict[str, Any]]:
    """:func:`pretrained_tiny` plus a dict: ``path``, ``recipe``, ``history`` (per-log-step metrics),
    ``train_seconds``, and ``trained_now`` (True when this call did the training)."""
    from .data import ensure_default_dataset

    data_dir = ensure_default_dataset(data_dir)
    path = cache_path(fast, data_dir, seed)
    with _file_lock(path):
        if path.is_file() and not force:
            try:
                model, info = _load(path, device)
                return model, {**info, "trained_now": False}
            except (CheckpointError, KeyError, RuntimeError, ValueError) as e:
                print(f"zoo: {path.name} is unreadable ({e}); training it again")
        if progress:
            print(f"zoo: training the tiny model once ({'fast' if _fast(fast) else 'full'} recipe); "
                  f"it will be cached in {path}", flush=True)
        model, ckpt = train_tiny(fast, data_dir, seed, progress, on_step)
        save_checkpoint(ckpt, path)
    info = {"path": path, "recipe": ckpt["recipe"], "history": ckpt["history"],
            "train_seconds": ckpt["train_seconds"], "trained_now": True}
    return model.to(device).eval(), info


def pretrained_tiny(fast: bool | None = None, data_dir: str | Path | None = None, seed: int = 0,
                    device: str | torch.device = "cpu", force: bool = False, progress: bool = False) -> CAVMAE:
    """The tiny CAV-MAE pretrained on the default data: loaded from the zoo cache, or trained and cached first.

    fast: the short recipe (default: ``CAVMAE_FAST=1``). data_dir: the dataset (default: the default synthetic
    set, built if missing). force: retrain even if cached. The model is returned in eval mode.
    """
    return pretrained_tiny_info(fast, data_dir, seed, device, force, progress)[0]


__all__ = ["ENV_DIR", "FAST_RECIPE", "FULL_RECIPE", "cache_path", "pretrained_tiny", "pretrained_tiny_info", "recipe",
           "train_tiny", "zoo_dir"]
