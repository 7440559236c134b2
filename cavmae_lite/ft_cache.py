"""A cache for fine-tuning runs (and the evaluations around them): the same recipe on the same weights and data
trains once, then loads in seconds.

    from cavmae_lite.ft_cache import cached_finetune
    run = cached_finetune("data/runs/notebook07", pretrained, train_set, test_set, pretrained_id=card["recipe_key"],
                          num_classes=16, mode="multimodal", max_steps=200)
    run.result.metrics, run.loaded          # FinetuneResult (classifier, history, metrics); True when read from disk

The file is ``<cache_dir>/<key>.pt``. The key is a hash of the **recipe** (:func:`recipe`): the identity of the
pretrained weights (the caller's label, e.g. the zoo card's recipe key, *and* a digest of the weights themselves),
every argument of :func:`~cavmae_lite.finetune.finetune` with its default filled in (so a changed default is a
new key), a digest of the fine-tuning code (``finetune.py`` and the modules it trains with), and a fingerprint of
the training and the test data (:func:`dataset_fingerprint`). Files are written atomically and read with ``torch.load(weights_only=True)``.

The data fingerprint of a prepared dataset covers its manifest, the synthetic generator's stamp when there is one,
its class list, the clips selected (video ids, in order), and the loading options (augmentation, frames, normalisation, sizes). It
does not hash the media files: replacing a wav or a jpg under an unchanged manifest is not noticed (delete the
cache folder then).

:func:`cached_embeddings`, :func:`cached_probe` and :func:`cached_evaluation` keep frozen embeddings, linear-probe
results and a fine-tuned classifier's test metrics the same way (keyed by the weights, the features or the
fine-tune's key, the data, the arguments and the code), so that a notebook run a second time only reads files.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from . import finetune as _ft
from .checkpoints import CheckpointError, load_checkpoint, load_strict, save_checkpoint
from .config import CAVMAEConfig
from .model import CAVMAEClassifier

CACHE_VERSION = 1


def _sha1(data: bytes | str) -> str:
    return hashlib.sha1(data.encode() if isinstance(data, str) else data).hexdigest()


def weights_digest(model: nn.Module) -> str:
    """sha1 of a model's state dict (names, dtypes, shapes and values): the identity of the weights."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def dataset_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """What identifies a dataset's items: see the module docstring. ``Subset``s (nested too) are unwrapped."""
    indices = None
    while isinstance(dataset, Subset):
        idx = [int(i) for i in dataset.indices]
        indices = idx if indices is None else [idx[i] for i in indices]
        dataset = dataset.dataset
    ids = getattr(dataset, "video_ids", None)
    if ids is None:
        raise ValueError(f"cannot fingerprint a {type(dataset).__name__} (no video_ids): pass data_key= yourself")
    ids = list(ids) if indices is None else [ids[i] for i in indices]
    fp: dict[str, Any] = {"type": type(dataset).__name__, "n": len(ids), "ids": _sha1("\n".join(map(str, ids)))}
    manifest = getattr(dataset, "manifest", None)
    if manifest is not None:  # an AVDataset from load_dataset
        fp["manifest"] = manifest.fingerprint()
        fp["classes"] = _sha1("\n".join(dataset.mids))
        stamp = Path(manifest.root) / "synthetic.json"
        if stamp.is_file():
            info = json.loads(stamp.read_text())
            fp["synthetic"] = {k: info.get(k) for k in ("generator", "seed", "splits")}
        c = dataset.config
        fp["load"] = {"train": dataset.train, "frames": dataset.return_frames, "noise": dataset.noise,
                      "mean": dataset.mean, "std": dataset.std, "seed": dataset.seed,
                      "sizes": [c.audio_length, c.num_mel_bins, c.img_size]}
    return fp


def recipe(pretrained: nn.Module | None, train_set: Dataset, test_set: Dataset | None, pretrained_id: str | None = None,
           data_key: Any = None, **finetune_kwargs: Any) -> dict[str, Any]:
    """Everything the cache key depends on (JSON-able)."""
    sig = inspect.signature(_ft.finetune)
    bound = sig.bind(None, None, None, **finetune_kwargs)
    bound.apply_defaults()
    args = {k: v for k, v in bound.arguments.items() if k not in ("pretrained", "train_set", "test_set")}
    args = {k: (str(v) if isinstance(v, torch.device) else v.to_dict() if isinstance(v, CAVMAEConfig) else v)
            for k, v in args.items()}
    return {
        "cache_version": CACHE_VERSION,
        "pretrained": {"id": pretrained_id, "weights": None if pretrained is None else weights_digest(pretrained)},
        "finetune": args,
        "code": _code_digest(_ft),
        "data": data_key if data_key is not None else {
            "train": dataset_fingerprint(train_set),
            "test": None if test_set is None else dataset_fingerprint(test_set)},
    }


def recipe_key(r: dict[str, Any]) -> str:
    return _sha1(json.dumps(r, sort_keys=True, default=str))[:16]


@dataclass
class CachedFinetune:
    """``result`` as :func:`~cavmae_lite.finetune.finetune` returns it; ``loaded``: read from ``path``, not trained;
    ``seconds``: wall time of this call (training, or loading)."""

    result: _ft.FinetuneResult
    key: str
    path: Path
    loaded: bool
    seconds: float


def _save(path: Path, r: dict[str, Any], key: str, res: _ft.FinetuneResult, seconds: float) -> None:
    clf = res.classifier
    save_checkpoint({"key": key, "recipe": json.dumps(r, sort_keys=True, default=str),
                     "model_config": clf.config.to_dict(), "num_classes": clf.num_classes,
                     "model": {k: v.detach().cpu() for k, v in clf.state_dict().items()},
                     "history": res.history, "metrics": res.metrics, "train_seconds": seconds}, path)


def _load(path: Path, key: str) -> _ft.FinetuneResult | None:
    obj = load_checkpoint(path)
    if not isinstance(obj, dict) or obj.get("key") != key:
        return None
    clf = CAVMAEClassifier(CAVMAEConfig.from_dict(obj["model_config"]), int(obj["num_classes"]))
    load_strict(clf, obj["model"], str(path))
    return _ft.FinetuneResult(clf.eval(), list(obj["history"]), dict(obj["metrics"]))


def cached_finetune(cache_dir: str | Path, pretrained: nn.Module | None, train_set: Dataset,
                    test_set: Dataset | None = None, pretrained_id: str | None = None, data_key: Any = None,
                    **finetune_kwargs: Any) -> CachedFinetune:
    """:func:`~cavmae_lite.finetune.finetune` through the cache: load ``<cache_dir>/<key>.pt`` if it is there and
    was written for this key, else fine-tune and save it (an unreadable file is retrained, with a warning). ``pretrained`` must be a model (its weights are hashed)."""
    if isinstance(pretrained, (str, Path)):
        raise TypeError("cached_finetune needs the pretrained model itself (its weights are part of the key)")
    t0 = time.time()
    r = recipe(pretrained, train_set, test_set, pretrained_id, data_key, **finetune_kwargs)
    key = recipe_key(r)
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        try:
            res = _load(path, key)
        except CheckpointError as e:  # writes are atomic, so this is damage from outside: retrain and replace it
            warnings.warn(f"fine-tuning cache {path} is unreadable, training again: {e}", stacklevel=2)
            res = None
        if res is not None:
            return CachedFinetune(res, key, path, True, time.time() - t0)
    res = _ft.finetune(pretrained, train_set, test_set, **finetune_kwargs)
    seconds = time.time() - t0
    _save(path, r, key, res, seconds)
    return CachedFinetune(res, key, path, False, seconds)


# ----- the evaluations around a fine-tune: frozen embeddings and per-mode test metrics ------------------------


# what a fine-tune's result depends on besides finetune.py itself: the recipes, augmentation, the augmenting
# dataset and sampler, weight averaging, the metrics
_FINETUNE_PARTS = ("recipes", "augment", "ft_data", "averaging", "classification", "model", "losses")


def _code_digest(module) -> str:
    """Digest of ``module``'s source; for :mod:`cavmae_lite.finetune`, also of the modules it trains with."""
    import importlib

    names = [module.__name__]
    if module.__name__.endswith(".finetune"):
        names += [f"{__package__}.{m}" for m in _FINETUNE_PARTS]
    h = hashlib.sha1()
    for name in names:
        h.update(Path(inspect.getsourcefile(importlib.import_module(name))).read_bytes())
    return h.hexdigest()[:16]


def _memo(cache_dir: str | Path, kind: str, r: dict[str, Any], compute) -> tuple[dict[str, Any], bool]:
    """``compute()`` (a dict of tensors / numbers / strings) once per recipe ``r``, then from ``<kind>-<key>.pt``."""
    key = recipe_key({"cache_version": CACHE_VERSION, "kind": kind, **r})
    path = Path(cache_dir) / f"{kind}-{key}.pt"
    if path.is_file():
        try:
            obj = load_checkpoint(path)
            if isinstance(obj, dict) and obj.get("key") == key:
                return obj["value"], True
        except CheckpointError as e:
            warnings.warn(f"cache {path} is unreadable, computing again: {e}", stacklevel=3)
    value = compute()
    save_checkpoint({"key": key, "value": value}, path)
    return value, False


def cached_embeddings(cache_dir: str | Path, model: nn.Module, dataset: Dataset, **kwargs: Any):
    """:func:`~cavmae_lite.evaluate.compute_embeddings` once per (weights, data, arguments, evaluate.py), then loaded.
    Returns ``(Embeddings, loaded)``."""
    from . import evaluate as ev

    r = {"weights": weights_digest(model), "data": dataset_fingerprint(dataset), "code": _code_digest(ev),
         "args": {k: str(v) for k, v in sorted(kwargs.items())}}

    def compute() -> dict[str, Any]:
        e = ev.compute_embeddings(model, dataset, **kwargs)
        return {"audio": e.audio, "video": e.video, "labels": e.labels, "labels_multi": e.labels_multi,
                "video_ids": list(e.video_ids), "joint": e.joint}

    value, loaded = _memo(cache_dir, "embeddings", r, compute)
    return ev.Embeddings(**value), loaded


def cached_evaluation(cache_dir: str | Path, run: CachedFinetune, dataset: Dataset, mode: str = "multimodal",
                      **kwargs: Any) -> tuple[dict[str, float], bool]:
    """:func:`~cavmae_lite.finetune.evaluate_classifier` of a cached fine-tune's classifier, once per (fine-tune
    key, data, mode, arguments), then loaded. Returns ``(metrics, loaded)``."""
    r = {"finetune": run.key, "data": dataset_fingerprint(dataset), "mode": mode, "code": _code_digest(_ft),
         "args": {k: str(v) for k, v in sorted(kwargs.items())}}
    return _memo(cache_dir, "evaluation", r,
                 lambda: dict(_ft.evaluate_classifier(run.result.classifier, dataset, mode=mode, **kwargs)))


def tensor_digest(*tensors: torch.Tensor) -> str:
    """sha1 of tensors' dtypes, shapes and values (e.g. probe features and labels)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(f"{t.dtype}|{tuple(t.shape)}|".encode())
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def cached_probe(cache_dir: str | Path, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
                 test_y: torch.Tensor, **kwargs: Any) -> tuple[dict[str, float], bool]:
    """:func:`~cavmae_lite.probe.linear_probe` once per (features, labels, arguments, probe.py), then loaded.
    Returns ``(metrics, loaded)``."""
    from . import probe as pr

    r = {"tensors": tensor_digest(train_x, train_y, test_x, test_y), "code": _code_digest(pr),
         "args": {k: str(v) for k, v in sorted(kwargs.items())}}
    return _memo(cache_dir, "probe", r, lambda: dict(pr.linear_probe(train_x, train_y, test_x, test_y, **kwargs)))


__all__ = ["CACHE_VERSION", "CachedFinetune", "cached_embeddings", "cached_evaluation", "cached_finetune",
           "cached_probe", "dataset_fingerprint", "recipe", "recipe_key", "tensor_digest", "weights_digest"]
