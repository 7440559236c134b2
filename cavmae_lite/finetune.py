"""Fine-tuning ``CAVMAEClassifier`` (spec §4, §5.3) and video-level (frame-averaged) evaluation.

Two ways of turning the multimodal encoder into one vector for the head are compared (``fusion``):
  * ``"joint"`` (② multimodal output only, the official ``multimodal`` mode): mean of the joint-stream tokens;
  * ``"joint+streams"`` (① pooled single-modality + multimodal outputs): the mean of three pooled vectors —
    joint stream, audio stream (joint blocks with the audio LayerNorms + ``norm_audio``) and video stream.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .model import CAVMAE, CAVMAEClassifier, canonical_mode
from .probe import accuracy, mean_average_precision

FUSIONS = ("joint", "joint+streams")


def classifier_from_pretrained(pretrained: CAVMAE | str | Path | None, num_classes: int, config=None) -> CAVMAEClassifier:
    """A classifier whose encoder is copied from a pretrained CAVMAE (a model, a run dir / checkpoint, or None)."""
    if isinstance(pretrained, (str, Path)):
        from .train import load_pretrained

        pretrained = load_pretrained(pretrained)
    if pretrained is None:
        if config is None:
            raise ValueError("from scratch needs config=CAVMAEConfig...")
        return CAVMAEClassifier(config, num_classes)
    clf = CAVMAEClassifier(pretrained.config, num_classes)
    clf.encoder.load_state_dict(pretrained.encoder.state_dict())
    return clf


def classifier_logits(clf: CAVMAEClassifier, audio: Tensor | None, video: Tensor | None, mode: str = "multimodal",
                      fusion: str = "joint") -> Tensor:
    """(B, K) logits for a mode; ``fusion="joint+streams"`` (multimodal only) see the module docstring."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if fusion == "joint" or canonical_mode(mode) != "multimodal":
        return clf(audio, video, mode)
    enc = clf.encoder
    h_a = enc.audio_specific(enc.embed_audio(audio))
    h_v = enc.video_specific(enc.embed_video(video))
    pooled = (enc.joint_stream(h_a, h_v).mean(1) + enc.audio_stream(h_a).mean(1) + enc.video_stream(h_v).mean(1)) / 3
    return clf.head(pooled)


@torch.no_grad()
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
    """Accuracy (or mAP) with spec §4 video-level inference: when items carry ``frames`` (K, 3, H, W) and the mode
    sees video, the model runs once per frame with the same audio and the per-frame probabilities (softmax, or
    sigmoid for multi-label) are averaged. Returns {"accuracy" | "mAP", "middle_frame_*" for comparison}."""
    mode = canonical_mode(mode)
    uses_video = mode in ("multimodal", "video_only", "missing_audio")
    dev = torch.device(device)
    clf.eval().to(dev)
    prob = (lambda z: torch.sigmoid(z)) if multilabel else (lambda z: F.softmax(z, dim=-1))
    P_avg, P_mid, Y = [], [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        a = batch["audio"].to(dev)
        v = batch["video"].to(dev)
        p_mid = prob(classifier_logits(clf, a, v, mode, fusion).float())
        if frame_average and uses_video and "frames" in batch:
            fr = batch["frames"].to(dev)
            p = torch.stack([prob(classifier_logits(clf, a, fr[:, k], mode, fusion).float())
                             for k in range(fr.shape[1])]).mean(0)
        else:
            p = p_mid
        P_avg.append(p.cpu())
        P_mid.append(p_mid.cpu())
        Y.append(batch["labels"] if multilabel else torch.as_tensor(batch["label"]))
    P_avg, P_mid, Y = torch.cat(P_avg), torch.cat(P_mid), torch.cat(Y)
    if multilabel:
        return {"mAP": mean_average_precision(P_avg, Y), "middle_frame_mAP": mean_average_precision(P_mid, Y)}
    return {"accuracy": accuracy(P_avg, Y), "middle_frame_accuracy": accuracy(P_mid, Y)}


@dataclass
class FinetuneResult:
    classifier: CAVMAEClassifier
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


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
) -> FinetuneResult:
    """Fine-tune a classifier (official recipe in miniature: Adam, head at ``lr * head_lr_mult``, cosine decay).

    Single-label: cross-entropy on ``label``; multi-label: BCE on ``labels`` (multi-hot). Evaluates on
    ``test_set`` with :func:`evaluate_classifier` (frame-averaged when items carry ``frames``).
    """
    torch.manual_seed(seed)
    num_classes = num_classes or getattr(train_set, "num_classes", None)
    if not num_classes:
        raise ValueError("num_classes is needed (the dataset has no .num_classes)")
    clf = classifier_from_pretrained(pretrained, num_classes, config)
    dev = torch.device(device)
    clf.to(dev).train()
    head = [p for n, p in clf.named_parameters() if n.startswith("head.")]
    body = [p for n, p in clf.named_parameters() if not n.startswith("head.") and p.requires_grad]
    opt = torch.optim.Adam([{"params": body, "lr": lr}, {"params": head, "lr": lr * head_lr_mult}],
                           betas=(0.95, 0.999), weight_decay=weight_decay)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=len(train_set) > batch_size,
                        generator=torch.Generator().manual_seed(seed))
    total = max_steps or epochs * len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / total, 1.0))))
    cast = torch.autocast(dev.type, dtype=torch.bfloat16) if amp == "bf16" else torch.autocast(dev.type, enabled=False)
    history, step, t0 = [], 0, time.time()
    while step < total:
        for batch in loader:
            a, v = batch["audio"].to(dev), batch["video"].to(dev)
            with cast:
                z = classifier_logits(clf, a, v, mode, fusion).float()
            if multilabel:
                y = batch["labels"].to(dev).float()
                loss = F.binary_cross_entropy_with_logits(z, y * (1 - label_smoothing) + label_smoothing / num_classes)
            else:
                loss = F.cross_entropy(z, torch.as_tensor(batch["label"]).to(dev), label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            history.append({"step": step, "loss": float(loss.detach()), "time": time.time() - t0})
            if step >= total:
                break
    metrics = evaluate_classifier(clf, test_set, mode, fusion, multilabel, device=dev) if test_set is not None else {}
    return FinetuneResult(clf, history, metrics)


def compare_fusions(pretrained, train_set, test_set, **kwargs: Any) -> dict[str, dict[str, float]]:
    """The comparison ① pooled single-modality + multimodal outputs vs ② multimodal only (same budget, seed)."""
    return {f: finetune(pretrained, train_set, test_set, mode="multimodal", fusion=f, **kwargs).metrics for f in FUSIONS}


__all__ = ["FUSIONS", "FinetuneResult", "classifier_from_pretrained", "classifier_logits", "compare_fusions",
           "evaluate_classifier", "finetune"]
