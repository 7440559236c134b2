"""Fine-tuning ``CAVMAEClassifier`` (spec §4, §5.3) and video-level (frame-averaged) evaluation.

The settings are a recipe (:mod:`cavmae_lite.recipes`). :func:`finetune` runs ``"custom"`` built from its
arguments (a small CPU run: per-step cosine, no SpecAugment / mixup / weight averaging unless asked);
:func:`finetune_recipe` runs any recipe by name — the official ``"as20k"``, ``"as2m"``, ``"vggsound"`` — with
fields overridden by keyword. The training data goes through :class:`~cavmae_lite.ft_data.FinetuneTrainSet`
(mixup, SpecAugment, noise, soft targets).

Two ways of turning the multimodal encoder into one vector for the head are compared (``fusion``):
  * ``"joint"`` (② multimodal output only, the official ``multimodal`` mode): mean of the joint-stream tokens;
  * ``"joint+streams"`` (① pooled single-modality + multimodal outputs): the mean of three pooled vectors —
    joint stream, audio stream (joint blocks with the audio LayerNorms + ``norm_audio``) and video stream.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .averaging import WeightAverager
from .classification import classification_metrics
from .ft_data import FinetuneTrainSet, train_loader
from .model import CAVMAE, CAVMAEClassifier, canonical_mode
from .probe import accuracy, mean_average_precision
from .recipes import FinetuneRecipe, cosine_lr_factor, get_recipe, step_lr_factor

FUSIONS = ("joint", "joint+streams")


def classifier_from_pretrained(pretrained: CAVMAE | str | Path | None, num_classes: int, config=None) -> CAVMAEClassifier:
    """A classifier whose encoder is copied from a pretrained CAVMAE (a model, a run dir / checkpoint, or None)."""
    if isinstance(pretrained, (str, Path)):
        from .pretrained import load_pretrained

        pretrained = load_pretrained(pretrained)
    if pretrained is None:
        if config is None:
            raise ValueError("from scratch needs config=CAVMAEConfig...")
        return CAVMAEClassifier(config, num_classes)
    clf = CAVMAEClassifier(pretrained.config, num_classes)
    clf.encoder.load_state_dict(pretrained.encoder.state_dict())
    return clf


def classifier_pooled(clf: CAVMAEClassifier, audio: Tensor | None, video: Tensor | None, mode: str = "multimodal",
                      fusion: str = "joint") -> Tensor:
    """(B, D) head input for a mode; ``fusion="joint+streams"`` (multimodal only) see the module docstring."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if fusion == "joint" or canonical_mode(mode) != "multimodal":
        return clf.pooled(audio, video, mode)
    enc = clf.encoder
    h_a = enc.audio_specific(enc.embed_audio(audio))
    h_v = enc.video_specific(enc.embed_video(video))
    return (enc.joint_stream(h_a, h_v).mean(1) + enc.audio_stream(h_a).mean(1) + enc.video_stream(h_v).mean(1)) / 3


def classifier_logits(clf: CAVMAEClassifier, audio: Tensor | None, video: Tensor | None, mode: str = "multimodal",
                      fusion: str = "joint") -> Tensor:
    """(B, K) logits for a mode; ``fusion="joint+streams"`` (multimodal only) see the module docstring."""
    return clf.head(classifier_pooled(clf, audio, video, mode, fusion))


def _batch_targets(batch: dict, num_classes: int) -> Tensor:
    """(B, C) multi-hot targets of a batch: its ``labels``, else a one-hot of ``label`` (zeros where -1)."""
    if "labels" in batch:
        return batch["labels"].float()
    lab = torch.as_tensor(batch["label"])
    return F.one_hot(lab.clamp(min=0), num_classes).float() * (lab >= 0)[:, None]


@dataclass
class Predictions:
    """Per-clip probabilities: frame-averaged (N, C) and middle-frame (N, C); multi-hot targets (N, C); the
    first label (N,) (-1 = none); whether frames were averaged."""

    averaged: Tensor
    middle: Tensor
    targets: Tensor
    label: Tensor
    frames_averaged: bool


@torch.no_grad()
def predict_classifier(clf: CAVMAEClassifier, dataset: Dataset, mode: str = "multimodal", fusion: str = "joint",
                       sigmoid: bool = False, frame_average: bool = True, batch_size: int = 32,
                       device: str | torch.device = "cpu") -> Predictions:
    """Spec §4 video-level inference: when items carry ``frames`` (K, 3, H, W) and the mode sees video, the
    model runs once per frame with the same audio and the per-frame probabilities (softmax, or sigmoid) are
    averaged; the middle-frame (``video``) probabilities are kept for comparison."""
    mode = canonical_mode(mode)
    uses_video = mode in ("multimodal", "video_only", "missing_audio")
    dev = torch.device(device)
    clf.eval().to(dev)
    prob = torch.sigmoid if sigmoid else (lambda z: F.softmax(z, dim=-1))
    P_avg, P_mid, Y, L = [], [], [], []
    averaged = False
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        a, v = batch["audio"].to(dev), batch["video"].to(dev)
        p_mid = prob(classifier_logits(clf, a, v, mode, fusion).float())
        p = p_mid
        if frame_average and uses_video and "frames" in batch:
            fr = batch["frames"].to(dev)
            p = torch.stack([prob(classifier_logits(clf, a, fr[:, k], mode, fusion).float())
                             for k in range(fr.shape[1])]).mean(0)
            averaged = True
        P_avg.append(p.cpu())
        P_mid.append(p_mid.cpu())
        Y.append(_batch_targets(batch, p.shape[1]))
        L.append(torch.as_tensor(batch["label"]))
    return Predictions(torch.cat(P_avg), torch.cat(P_mid), torch.cat(Y), torch.cat(L), averaged)


@torch.no_grad()
def head_features(clf: CAVMAEClassifier, dataset: Dataset, mode: str = "multimodal", fusion: str = "joint",
                  batch_size: int = 32, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """The head's input for every clip (middle frame): features (N, D), multi-hot targets (N, C), labels (N,)."""
    dev = torch.device(device)
    clf.eval().to(dev)
    X, Y, L = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        X.append(classifier_pooled(clf, batch["audio"].to(dev), batch["video"].to(dev), mode, fusion).float().cpu())
        Y.append(_batch_targets(batch, clf.num_classes))
        L.append(torch.as_tensor(batch["label"]))
    return torch.cat(X), torch.cat(Y), torch.cat(L)


def _legacy_metrics(pred: Predictions, multilabel: bool) -> dict[str, float]:
    if multilabel:
        return {"mAP": mean_average_precision(pred.averaged, pred.targets),
                "middle_frame_mAP": mean_average_precision(pred.middle, pred.targets)}
    return {"accuracy": accuracy(pred.averaged, pred.label), "middle_frame_accuracy": accuracy(pred.middle, pred.label)}


def prediction_report(pred: Predictions) -> dict[str, Any]:
    """mAP, accuracy, AUC, d_prime of the (frame-averaged) predictions, and the middle-frame mAP / accuracy."""
    out: dict[str, Any] = classification_metrics(pred.averaged, pred.targets)
    mid = classification_metrics(pred.middle, pred.targets)
    out.update(middle_frame_mAP=mid["mAP"], middle_frame_accuracy=mid["accuracy"],
               frames_averaged=pred.frames_averaged, n=len(pred.targets))
    return out


def evaluate_classifier(
    clf: CAVMAEClassifier,
    dataset: Dataset,
    mode: str = "multimodal",
    fusion: str = "joint",
    multilabel: bool = False,
    frame_average: bool = True,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Accuracy (or mAP with ``multilabel``, sigmoid probabilities) with spec §4 video-level inference (see
    :func:`predict_classifier`). Returns {"accuracy" | "mAP", "middle_frame_*" for comparison}."""
    pred = predict_classifier(clf, dataset, mode, fusion, multilabel, frame_average, batch_size, device)
    return _legacy_metrics(pred, multilabel)


@dataclass
class FinetuneResult:
    """``classifier``: the model after the last step; ``metrics``: its {"accuracy" | "mAP", "middle_frame_*"};
    ``report``: {"last": official metrics, "wa": those of the weight-averaged model or None, ...};
    ``averaged``: the weight-averaged classifier (None without weight averaging)."""

    classifier: CAVMAEClassifier
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    averaged: CAVMAEClassifier | None = None
    recipe: FinetuneRecipe | None = None


def _optimizer(clf: CAVMAEClassifier, r: FinetuneRecipe) -> torch.optim.Optimizer:
    """src/traintest_ft.py: Adam, backbone at lr, head at lr * head_lr_mult; frozen backbone: head only."""
    head = [p for n, p in clf.named_parameters() if n.startswith("head.")]
    body = [p for n, p in clf.named_parameters() if not n.startswith("head.")]
    if r.freeze_base:
        for p in body:
            p.requires_grad_(False)
    groups = [{"params": head, "lr": r.lr * r.head_lr_mult, "base_lr": r.lr * r.head_lr_mult}]
    trainable = [p for p in body if p.requires_grad]
    if trainable:
        groups.insert(0, {"params": trainable, "lr": r.lr, "base_lr": r.lr})
    return torch.optim.Adam(groups, betas=tuple(r.betas), weight_decay=r.weight_decay)


def _set_lr(opt: torch.optim.Optimizer, factor: float) -> float:
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor
    return factor


def finetune_loss(logits: Tensor, target: Tensor, loss: str) -> Tensor:
    """``"bce"``: BCE-with-logits on the soft targets (mean over all entries); ``"ce"``: soft-target
    cross-entropy (mean over clips) — the official ``BCEWithLogitsLoss`` / ``CrossEntropyLoss``."""
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(target.shape)} differ in shape")
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    if loss == "ce":
        return F.cross_entropy(logits, target)
    raise ValueError(f"loss must be 'bce' or 'ce', got {loss!r}")


def _train(clf, loader, train: FinetuneTrainSet, r: FinetuneRecipe, loss_name: str, total: int, mode: str,
           fusion: str, amp: str, dev: torch.device) -> tuple[list[dict[str, Any]], WeightAverager | None, int]:
    opt = _optimizer(clf, r)
    cast = torch.autocast(dev.type, dtype=torch.bfloat16) if amp == "bf16" else torch.autocast(dev.type, enabled=False)
    avg = WeightAverager() if r.wa_start is not None else None
    history, step, epoch, t0 = [], 0, 0, time.time()
    clf.train()
    while step < total:
        epoch += 1
        train.set_epoch(epoch)
        for batch in loader:
            factor = _set_lr(opt, step_lr_factor(epoch, r.lr_start, r.lr_step, r.lr_decay) if r.schedule == "step"
                             else cosine_lr_factor(step, total))
            with cast:
                z = classifier_logits(clf, batch["audio"].to(dev), batch["video"].to(dev), mode, fusion).float()
            loss = finetune_loss(z, batch["target"].to(dev), loss_name)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            history.append({"step": step, "epoch": epoch, "loss": float(loss.detach()), "lr": r.lr * factor,
                            "head_lr": r.lr * r.head_lr_mult * factor, "time": time.time() - t0})
            if step >= total:
                break
        if avg is not None and r.wa_start <= epoch <= r.wa_end:
            avg.add(clf.state_dict(), epoch)  # the model at the end of this epoch (the last one may be partial)
    return history, avg, epoch


def finetune(
    pretrained: CAVMAE | str | Path | None,
    train_set: Dataset,
    test_set: Dataset | None = None,
    num_classes: int | None = None,
    mode: str = "multimodal",
    fusion: str = "joint",
    multilabel: bool = False,
    epochs: int = 5,
    max_steps: int | None = None,
    batch_size: int = 32,
    lr: float = 1e-4,
    head_lr_mult: float = 10.0,
    weight_decay: float = 5e-7,
    label_smoothing: float = 0.0,
    amp: str = "none",
    device: str | torch.device = "cpu",
    seed: int = 0,
    config=None,
    **recipe_fields: Any,
) -> FinetuneResult:
    """Fine-tune a classifier with the ``"custom"`` recipe made of these arguments (Adam, head at
    ``lr * head_lr_mult``, per-step cosine; no SpecAugment / mixup unless given): the small-run entry point.

    Any other recipe field can be given by keyword (``schedule="step"``, ``freqm=48``, ``mixup=0.5``,
    ``wa_start=2, wa_end=3``, ...; see :class:`~cavmae_lite.recipes.FinetuneRecipe`), and ``mixup_audio`` /
    ``num_workers`` pass through to :func:`finetune_recipe`, which runs the official recipes by name.
    """
    passthrough = {k: recipe_fields.pop(k) for k in ("mixup_audio", "num_workers") if k in recipe_fields}
    r = get_recipe("custom", epochs=epochs, batch_size=batch_size, lr=lr, head_lr_mult=head_lr_mult,
                   weight_decay=weight_decay, label_smoothing=label_smoothing, **recipe_fields)
    return finetune_recipe(pretrained, train_set, test_set, r, num_classes=num_classes, mode=mode, fusion=fusion,
                           multilabel=multilabel, max_steps=max_steps, amp=amp, device=device, seed=seed,
                           config=config, **passthrough)


def finetune_recipe(
    pretrained: CAVMAE | str | Path | None,
    train_set: Dataset,
    test_set: Dataset | None = None,
    recipe: str | FinetuneRecipe = "as20k",
    *,
    num_classes: int | None = None,
    mode: str = "multimodal",
    fusion: str = "joint",
    multilabel: bool = False,
    max_steps: int | None = None,
    amp: str = "none",
    device: str | torch.device = "cpu",
    seed: int = 0,
    config=None,
    mixup_audio: str = "auto",
    num_workers: int = 0,
    **overrides: Any,
) -> FinetuneResult:
    """Fine-tune with a recipe (``"as20k"``, ``"as2m"``, ``"vggsound"``, ``"custom"`` or a
    :class:`~cavmae_lite.recipes.FinetuneRecipe`), any field overridden by keyword (None = keep).

    Loss on the soft ``target`` of :class:`~cavmae_lite.ft_data.FinetuneTrainSet` (mixup, SpecAugment, noise):
    BCE or cross-entropy. ``max_steps`` caps the run (it may end inside an epoch). Evaluates on ``test_set``
    (frame-averaged when items carry ``frames``); with weight averaging, also the mean of the end-of-epoch
    weights of the epochs ``wa_start..wa_end`` reached. ``mixup_audio``: see :class:`FinetuneTrainSet`; a
    ``train_set`` that already is a ``FinetuneTrainSet`` is used as it is (its own augmentation settings).
    """
    r = get_recipe(recipe, **overrides)
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    torch.manual_seed(seed)
    num_classes = num_classes or getattr(train_set, "num_classes", None)
    if not num_classes:
        raise ValueError("num_classes is needed (the dataset has no .num_classes)")
    loss_name = r.resolved_loss(multilabel)
    clf = classifier_from_pretrained(pretrained, num_classes, config)
    dev = torch.device(device)
    clf.to(dev)
    train = train_set if isinstance(train_set, FinetuneTrainSet) else FinetuneTrainSet(
        train_set, num_classes, r.freqm, r.timem, r.mixup, r.mixup_alpha, r.label_smoothing, mixup_audio, seed)
    loader = train_loader(train, r.batch_size, r.balanced, seed, num_classes, num_workers)
    total = max_steps or r.epochs * len(loader)
    history, avg, epochs_run = _train(clf, loader, train, r, loss_name, total, mode, fusion, amp, dev)
    averaged = None
    if avg is not None and avg.count:
        averaged = copy.deepcopy(clf)
        averaged.load_state_dict(avg.average())
    report: dict[str, Any] = {"recipe": r.name, "loss": loss_name, "metric": r.resolved_metric(multilabel),
                              "steps": len(history), "epochs": epochs_run, "steps_per_epoch": len(loader),
                              "wa_epochs": list(avg.epochs) if avg is not None else None}
    metrics: dict[str, float] = {}
    if test_set is not None:
        kw = dict(mode=mode, fusion=fusion, sigmoid=loss_name == "bce", frame_average=r.frame_average, device=dev)
        pred = predict_classifier(clf, test_set, **kw)
        metrics = _legacy_metrics(pred, multilabel)
        report["last"] = prediction_report(pred)
        report["wa"] = prediction_report(predict_classifier(averaged, test_set, **kw)) if averaged else None
    return FinetuneResult(clf, history, metrics, report, averaged, r)


def compare_fusions(pretrained, train_set, test_set, **kwargs: Any) -> dict[str, dict[str, float]]:
    """The comparison ① pooled single-modality + multimodal outputs vs ② multimodal only (same budget, seed)."""
    return {f: finetune(pretrained, train_set, test_set, mode="multimodal", fusion=f, **kwargs).metrics for f in FUSIONS}


__all__ = ["FUSIONS", "FinetuneResult", "Predictions", "classifier_from_pretrained", "classifier_logits",
           "classifier_pooled", "compare_fusions", "evaluate_classifier", "finetune", "finetune_loss",
           "finetune_recipe", "head_features", "predict_classifier", "prediction_report"]
