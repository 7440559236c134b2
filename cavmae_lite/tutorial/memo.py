"""A memo of fine-tuning runs (and the evaluations around them) for the notebooks: the same recipe on the same
weights and data trains once, then loads in seconds.

    from cavmae_lite.tutorial.memo import cached_finetune
    run = cached_finetune("data/runs/notebook07", pretrained, train_set, test_set, pretrained_id=card["recipe_key"],
                          num_classes=16, mode="multimodal", max_steps=200)
    run.result.metrics, run.loaded          # FinetuneResult (classifier, history, metrics); True when read from disk

The file is ``<cache_dir>/<key>.pt``; the key (:func:`memo_key`) is a hash of the **memo inputs**
(:func:`memo_inputs`): the identity of the pretrained weights (the caller's label, e.g. the zoo card's recipe key,
*and* a digest of the weights themselves), the fine-tuning recipe with every override applied and the other
arguments of :func:`~cavmae_lite.finetune.finetune` with their defaults filled in (so a changed default is a new
key), a digest of the fine-tuning code (the ``finetune`` package and the modules it trains and scores with), and
a fingerprint of the training and the test data (:func:`dataset_fingerprint`). Files are written atomically and
read with ``torch.load(weights_only=True)``.

The data fingerprint of a prepared dataset covers its manifest, the synthetic generator's stamp when there is one,
its class list, the clips selected (video ids, in order), and the loading options (augmentation, frames,
normalisation, sizes). It does not hash the media files: replacing a wav or a jpg under an unchanged manifest is
not noticed (delete the cache folder then).

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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from ..checkpoints import CheckpointError, load_checkpoint, load_strict, save_checkpoint
from ..config import CAVMAEConfig
from ..data import add_noise_and_roll
from ..evaluate import Embeddings, classification_metrics, compute_embeddings, linear_probe
from ..finetune import FinetuneRecipe, FinetuneResult, evaluate_classifier, finetune, get_recipe
from ..model import CAVMAEClassifier
from ..train import set_lr

MEMO_VERSION = 2


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


def memo_inputs(pretrained: nn.Module | None, train_set: Dataset, test_set: Dataset | None,
                pretrained_id: str | None = None, data_key: Any = None, **finetune_kwargs: Any) -> dict[str, Any]:
    """Everything a memoised fine-tune's key depends on (JSON-able): see the module docstring.

    ``finetune_kwargs`` are :func:`~cavmae_lite.finetune.finetune`'s: ``recipe=`` and its field overrides become
    the resolved recipe (so ``lr=1e-4`` given or left to the default is the same key), the rest are the run's
    arguments with their defaults filled in."""
    kwargs = dict(finetune_kwargs)
    names = {f.name for f in fields(FinetuneRecipe)}
    r = get_recipe(kwargs.pop("recipe", "custom"), **{k: kwargs.pop(k) for k in list(kwargs) if k in names})
    bound = inspect.signature(finetune).bind(None, None, None, r, **kwargs)
    bound.apply_defaults()
    if bound.arguments.get("overrides"):
        raise ValueError(f"unknown finetune arguments {sorted(bound.arguments['overrides'])}")
    run = {k: (str(v) if isinstance(v, torch.device) else v.to_dict() if isinstance(v, CAVMAEConfig) else v)
           for k, v in bound.arguments.items()
           if k not in ("pretrained", "train_set", "test_set", "recipe", "overrides")}
    return {
        "memo_version": MEMO_VERSION,
        "pretrained": {"id": pretrained_id, "weights": None if pretrained is None else weights_digest(pretrained)},
        "recipe": r.to_dict(),
        "finetune": run,
        "code": _source_digest(*_FINETUNE_CODE),
        "data": data_key if data_key is not None else {
            "train": dataset_fingerprint(train_set),
            "test": None if test_set is None else dataset_fingerprint(test_set)},
    }


def memo_key(inputs: dict[str, Any]) -> str:
    """The 16-hex-digit hash of :func:`memo_inputs` (or of any JSON-able dict)."""
    return _sha1(json.dumps(inputs, sort_keys=True, default=str))[:16]


@dataclass
class CachedFinetune:
    """``result`` as :func:`~cavmae_lite.finetune.finetune` returns it; ``loaded``: read from ``path``, not trained;
    ``seconds``: wall time of this call (training, or loading)."""

    result: FinetuneResult
    key: str
    path: Path
    loaded: bool
    seconds: float


def _weights(clf: CAVMAEClassifier | None) -> dict[str, torch.Tensor] | None:
    return None if clf is None else {k: v.detach().cpu() for k, v in clf.state_dict().items()}


def _save(path: Path, inputs: dict[str, Any], key: str, res: FinetuneResult, seconds: float) -> None:
    clf = res.classifier
    save_checkpoint({"key": key, "inputs": json.dumps(inputs, sort_keys=True, default=str),
                     "model_config": clf.config.to_dict(), "num_classes": clf.num_classes,
                     "model": _weights(clf), "averaged": _weights(res.averaged), "history": res.history,
                     "metrics": res.metrics, "report": res.report,
                     "recipe": None if res.recipe is None else res.recipe.to_dict(), "train_seconds": seconds}, path)


def _load(path: Path, key: str) -> FinetuneResult | None:
    obj = load_checkpoint(path)
    if not isinstance(obj, dict) or obj.get("key") != key:
        return None
    models = []
    for name in ("model", "averaged"):
        clf = None
        if obj.get(name) is not None:
            clf = CAVMAEClassifier(CAVMAEConfig.from_dict(obj["model_config"]), int(obj["num_classes"]))
            load_strict(clf, obj[name], f"{path} ({name})")
            clf.eval()
        models.append(clf)
    rd = obj.get("recipe")
    recipe = None if rd is None else FinetuneRecipe(**{**rd, "betas": tuple(rd["betas"])})
    return FinetuneResult(models[0], list(obj["history"]), dict(obj["metrics"]), dict(obj.get("report") or {}),
                          models[1], recipe)


def cached_finetune(cache_dir: str | Path, pretrained: nn.Module | None, train_set: Dataset,
                    test_set: Dataset | None = None, pretrained_id: str | None = None, data_key: Any = None,
                    **finetune_kwargs: Any) -> CachedFinetune:
    """:func:`~cavmae_lite.finetune.finetune` through the memo: load ``<cache_dir>/<key>.pt`` if it is there and
    was written for this key, else fine-tune and save it (an unreadable file is retrained, with a warning).
    ``pretrained`` must be a model (its weights are hashed)."""
    if isinstance(pretrained, (str, Path)):
        raise TypeError("cached_finetune needs the pretrained model itself (its weights are part of the key)")
    t0 = time.time()
    inputs = memo_inputs(pretrained, train_set, test_set, pretrained_id, data_key, **finetune_kwargs)
    key = memo_key(inputs)
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        try:
            res = _load(path, key)
        except CheckpointError as e:  # writes are atomic, so this is damage from outside: retrain and replace it
            warnings.warn(f"fine-tuning cache {path} is unreadable, training again: {e}", stacklevel=2)
            res = None
        if res is not None:
            return CachedFinetune(res, key, path, True, time.time() - t0)
    res = finetune(pretrained, train_set, test_set, **finetune_kwargs)
    seconds = time.time() - t0
    _save(path, inputs, key, res, seconds)
    return CachedFinetune(res, key, path, False, seconds)


# ----- the evaluations around a fine-tune: frozen embeddings and per-mode test metrics ------------------------


# what a memoised fine-tune depends on besides its arguments and data: every module of the fine-tuning package
# (the directory of finetune's module) and the modules it trains and scores with — the model, the lr schedules,
# the audio augmentation (noise, roll, fbanks of mixed waveforms), the metrics
_FINETUNE_CODE = (finetune, CAVMAEClassifier, set_lr, add_noise_and_roll, classification_metrics)


def _source_digest(*objects: Any) -> str:
    """Digest of the source files defining ``objects``; for :func:`finetune`, of its whole package."""
    h = hashlib.sha1()
    for obj in objects:
        src = Path(inspect.getsourcefile(obj))
        for f in sorted(src.parent.glob("*.py")) if obj is finetune else [src]:
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def _memo(cache_dir: str | Path, kind: str, inputs: dict[str, Any], compute) -> tuple[dict[str, Any], bool]:
    """``compute()`` (a dict of tensors / numbers / strings) once per ``inputs``, then from ``<kind>-<key>.pt``."""
    key = memo_key({"memo_version": MEMO_VERSION, "kind": kind, **inputs})
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
    """:func:`~cavmae_lite.evaluate.compute_embeddings` once per (weights, data, arguments, its code), then loaded.
    Returns ``(Embeddings, loaded)``."""
    inputs = {"weights": weights_digest(model), "data": dataset_fingerprint(dataset),
              "code": _source_digest(compute_embeddings), "args": {k: str(v) for k, v in sorted(kwargs.items())}}

    def compute() -> dict[str, Any]:
        e = compute_embeddings(model, dataset, **kwargs)
        return {"audio": e.audio, "video": e.video, "labels": e.labels, "labels_multi": e.labels_multi,
                "video_ids": list(e.video_ids), "joint": e.joint}

    value, loaded = _memo(cache_dir, "embeddings", inputs, compute)
    return Embeddings(**value), loaded


def cached_evaluation(cache_dir: str | Path, run: CachedFinetune, dataset: Dataset, mode: str = "multimodal",
                      **kwargs: Any) -> tuple[dict[str, Any], bool]:
    """:func:`~cavmae_lite.finetune.evaluate_classifier` of a cached fine-tune's classifier, once per (fine-tune
    key, data, mode, arguments), then loaded. Returns ``(metrics, loaded)``."""
    inputs = {"finetune": run.key, "data": dataset_fingerprint(dataset), "mode": mode,
              "code": _source_digest(*_FINETUNE_CODE), "args": {k: str(v) for k, v in sorted(kwargs.items())}}
    return _memo(cache_dir, "evaluation", inputs,
                 lambda: dict(evaluate_classifier(run.result.classifier, dataset, mode=mode, **kwargs)))


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
    """:func:`~cavmae_lite.evaluate.linear_probe` once per (features, labels, arguments, its code), then loaded.
    Returns ``(metrics, loaded)``."""
    inputs = {"tensors": tensor_digest(train_x, train_y, test_x, test_y), "code": _source_digest(linear_probe),
              "args": {k: str(v) for k, v in sorted(kwargs.items())}}
    return _memo(cache_dir, "probe", inputs, lambda: dict(linear_probe(train_x, train_y, test_x, test_y, **kwargs)))


__all__ = ["MEMO_VERSION", "CachedFinetune", "cached_embeddings", "cached_evaluation", "cached_finetune",
           "cached_probe", "dataset_fingerprint", "memo_inputs", "memo_key", "tensor_digest", "weights_digest"]
