"""Fine-tuning ``CAVMAEClassifier`` (spec §4, §5.3): one entry point, :func:`finetune`, read top to bottom.

    res = finetune(pretrained, train_set, test_set)                         # "custom": a small CPU run
    res = finetune(pretrained, train_set, test_set, "as20k", max_steps=100, freqm=24)
    res.metrics, res.score                    # the compared model's row; its value of the recipe's metric

The settings are a recipe (:mod:`cavmae_lite.finetune.recipes`): ``"custom"`` (per-step cosine, no SpecAugment /
mixup / weight averaging unless asked), or the official ``"as20k"``, ``"as2m"``, ``"vggsound"``; any field can be
overridden by keyword. The training data goes through :class:`~cavmae_lite.finetune.dataset.FinetuneTrainSet`
(mixup, SpecAugment, noise, soft targets); prediction and the metrics are :mod:`cavmae_lite.finetune.predict`.
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

from ..model import CAVMAE, CAVMAEClassifier
from ..runtime import autocast, resolve_device
from ..train import cosine_lr_factor, set_lr, step_lr_factor
from .averaging import WeightAverager
from .dataset import FinetuneTrainSet, train_loader
from .predict import classifier_logits, predict_classifier, prediction_report
from .recipes import FinetuneRecipe, get_recipe


def classifier_from_pretrained(pretrained: CAVMAE | str | Path | None, num_classes: int, config=None) -> CAVMAEClassifier:
    """A classifier whose encoder is copied from a pretrained CAVMAE (a model, a run dir / checkpoint, or None)."""
    if isinstance(pretrained, (str, Path)):
        from ..checkpoints import load_pretrained

        pretrained = load_pretrained(pretrained)
    if pretrained is None:
        if config is None:
            raise ValueError("from scratch needs config=CAVMAEConfig...")
        return CAVMAEClassifier(config, num_classes)
    clf = CAVMAEClassifier(pretrained.config, num_classes)
    clf.encoder.load_state_dict(pretrained.encoder.state_dict())
    return clf


@dataclass
class FinetuneResult:
    """``classifier``: the model after the last step; ``averaged``: the weight-averaged one (None without
    weight averaging, or when no epoch of ``wa_start..wa_end`` ended).

    ``metrics``: the test row of the model the run is compared by — the weight-averaged one when there is one,
    else the last — as :func:`~cavmae_lite.finetune.predict.prediction_report` gives it (mAP, accuracy, AUC,
    d_prime, middle_frame_*, frames_averaged, n), plus ``"metric"`` (the recipe's main metric, ``"mAP"`` or
    ``"accuracy"``) and ``"model"`` (``"wa"`` or ``"last"``); empty without a test set. ``score``: the value of
    that metric. ``report``: {"last": row, "wa": row or None, "metric", "loss", "steps", "epochs", ...}.
    """

    classifier: CAVMAEClassifier
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    averaged: CAVMAEClassifier | None = None
    recipe: FinetuneRecipe | None = None

    @property
    def score(self) -> float | None:
        """The compared model's value of the recipe's main metric (None without a test set)."""
        return self.metrics[self.metrics["metric"]] if self.metrics else None


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


def _check_budget_and_amp(max_steps: int | None, amp: str) -> None:
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if amp not in ("none", "bf16"):
        raise ValueError(f"fine-tuning amp must be 'none' or 'bf16' (fp16 would need a GradScaler), got {amp!r}")


def finetune(
    pretrained: CAVMAE | str | Path | None,
    train_set: Dataset,
    test_set: Dataset | None = None,
    recipe: str | FinetuneRecipe = "custom",
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
    """Fine-tune a classifier with a recipe (``"custom"``, ``"as20k"``, ``"as2m"``, ``"vggsound"`` or a
    :class:`~cavmae_lite.finetune.recipes.FinetuneRecipe`), any field overridden by keyword (``lr=...``,
    ``epochs=...``, ``schedule="step"``, ``freqm=48``, ``wa_start=2, wa_end=3``; None = keep).

    Loss on the soft ``target`` of the training items (mixup, SpecAugment, noise): BCE or cross-entropy.
    ``max_steps`` caps the run (it may end inside an epoch). Evaluates on ``test_set`` (frame-averaged when
    items carry ``frames``); with weight averaging, also the mean of the end-of-epoch weights of the epochs
    ``wa_start..wa_end`` reached. ``mixup_audio``: see :class:`FinetuneTrainSet`; a ``train_set`` that already is
    a ``FinetuneTrainSet`` is used as it is (its own augmentation settings). ``num_workers``: loader processes.
    """
    r = get_recipe(recipe, **overrides)
    _check_budget_and_amp(max_steps, amp)
    torch.manual_seed(seed)
    num_classes = num_classes or getattr(train_set, "num_classes", None)
    if not num_classes:
        raise ValueError("num_classes is needed (the dataset has no .num_classes)")
    loss_name = r.resolved_loss(multilabel)
    dev = resolve_device(device)
    clf = classifier_from_pretrained(pretrained, num_classes, config).to(dev)
    train = train_set if isinstance(train_set, FinetuneTrainSet) else FinetuneTrainSet(
        train_set, num_classes, r.freqm, r.timem, r.mixup, r.mixup_alpha, r.label_smoothing, mixup_audio, seed)
    loader = train_loader(train, r.batch_size, r.balanced, seed, num_classes, num_workers)
    total = max_steps or r.epochs * len(loader)
    history, avg, epochs_run = _train(clf, loader, r, loss_name, total, (mode, fusion), amp, dev)
    averaged = None
    if avg is not None and avg.count:
        averaged = copy.deepcopy(clf)
        averaged.load_state_dict(avg.average())
    report: dict[str, Any] = {"recipe": r.name, "loss": loss_name, "metric": r.resolved_metric(multilabel),
                              "steps": len(history), "epochs": epochs_run, "steps_per_epoch": len(loader),
                              "wa_epochs": list(avg.epochs) if avg is not None else None}
    metrics: dict[str, Any] = {}
    if test_set is not None:
        kw = dict(mode=mode, fusion=fusion, sigmoid=loss_name == "bce", frame_average=r.frame_average, device=dev)
        report["last"] = prediction_report(predict_classifier(clf, test_set, **kw))
        report["wa"] = prediction_report(predict_classifier(averaged, test_set, **kw)) if averaged else None
        compared = "wa" if averaged is not None else "last"
        metrics = {**report[compared], "metric": report["metric"], "model": compared}
    return FinetuneResult(clf, history, metrics, report, averaged, r)


def _optimizers(clf: CAVMAEClassifier, r: FinetuneRecipe) -> dict[str, tuple[torch.optim.Optimizer, float]]:
    """src/traintest_ft.py: Adam, the backbone at ``lr``, the head (``head.*``, the official ``mlp_head``) at
    ``lr * head_lr_mult``; with ``freeze_base`` the head only. One Adam per base learning rate, so that
    :func:`~cavmae_lite.train.set_lr` sets each (Adam is per parameter: the same steps as one Adam with two
    parameter groups). Returns {"body" (unless frozen), "head"} -> (optimizer, base lr)."""
    head = [p for n, p in clf.named_parameters() if n.startswith("head.")]
    body = [p for n, p in clf.named_parameters() if not n.startswith("head.")]
    if r.freeze_base:
        for p in body:
            p.requires_grad_(False)
    kw = dict(betas=tuple(r.betas), weight_decay=r.weight_decay)
    opts = {"head": (torch.optim.Adam(head, lr=r.lr * r.head_lr_mult, **kw), r.lr * r.head_lr_mult)}
    trainable = [p for p in body if p.requires_grad]
    if trainable:
        opts = {"body": (torch.optim.Adam(trainable, lr=r.lr, **kw), r.lr), **opts}
    return opts


def _train(clf: CAVMAEClassifier, loader: DataLoader, r: FinetuneRecipe, loss_name: str, total: int,
           head_input: tuple[str, str], amp: str, dev: torch.device
           ) -> tuple[list[dict[str, Any]], WeightAverager | None, int]:
    """``total`` optimiser steps over epochs of ``loader``; ``head_input`` = (mode, fusion). Returns the
    per-step history, the weight averager (None without averaging) and the number of epochs begun."""
    opts = _optimizers(clf, r)
    cast = autocast(amp, dev)
    avg = WeightAverager() if r.wa_start is not None else None
    history, step, epoch, t0 = [], 0, 0, time.time()
    clf.train()
    while step < total:
        epoch += 1
        for batch in loader:
            factor = (step_lr_factor(epoch, r.lr_start, r.lr_step, r.lr_decay) if r.schedule == "step"
                      else cosine_lr_factor(step, total))
            lrs = {name: set_lr(opt, base * factor) for name, (opt, base) in opts.items()}
            with cast:
                z = classifier_logits(clf, batch["audio"].to(dev), batch["video"].to(dev), *head_input).float()
            loss = finetune_loss(z, batch["target"].to(dev), loss_name)
            clf.zero_grad(set_to_none=True)
            loss.backward()
            for opt, _ in opts.values():
                opt.step()
            step += 1
            history.append({"step": step, "epoch": epoch, "loss": float(loss.detach()),
                            "lr": lrs.get("body", r.lr * factor), "head_lr": lrs["head"], "time": time.time() - t0})
            if step >= total:
                break
        if avg is not None and r.wa_start <= epoch <= r.wa_end:
            avg.add(clf.state_dict(), epoch)  # the model at the end of this epoch (the last one may be partial)
    return history, avg, epoch


__all__ = ["FinetuneResult", "classifier_from_pretrained", "finetune", "finetune_loss"]
