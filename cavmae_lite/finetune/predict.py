"""Prediction with a fine-tuned ``CAVMAEClassifier`` (spec §4): the head input per mode and fusion, video-level
(frame-averaged) probabilities, and the official metrics of them.

Two ways of turning the multimodal encoder into one vector for the head (``fusion``):
  * ``"joint"`` (② multimodal output only, the official ``multimodal`` mode): mean of the joint-stream tokens;
  * ``"joint+streams"`` (① pooled single-modality + multimodal outputs): the mean of three pooled vectors —
    joint stream, audio stream (joint blocks with the audio LayerNorms + ``norm_audio``) and video stream.

    pred = predict_classifier(clf, test_set, sigmoid=True)    # Predictions: averaged / middle (N, C), targets
    prediction_report(pred)                                   # mAP, accuracy, AUC, d_prime, middle_frame_*
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..evaluate import classification_metrics
from ..model import CAVMAEClassifier, canonical_mode

FUSIONS = ("joint", "joint+streams")


def classifier_pooled(clf: CAVMAEClassifier, audio: Tensor | None, video: Tensor | None, mode: str = "multimodal",
                      fusion: str = "joint") -> Tensor:
    """(B, D) head input for a mode; ``fusion="joint+streams"`` (multimodal only) see the module docstring."""
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if fusion == "joint" or canonical_mode(mode) != "multimodal":
        return clf.pooled(audio, video, mode)
    enc = clf.encoder
    e = enc.encode(audio, video)
    h_a, h_v = e.audio, e.video
    return (enc.joint_stream(h_a, h_v).mean(1) + enc.audio_stream(h_a).mean(1) + enc.video_stream(h_v).mean(1)) / 3


def classifier_logits(clf: CAVMAEClassifier, audio: Tensor | None, video: Tensor | None, mode: str = "multimodal",
                      fusion: str = "joint") -> Tensor:
    """(B, K) logits for a mode; ``fusion="joint+streams"`` (multimodal only) see the module docstring."""
    return clf.head(classifier_pooled(clf, audio, video, mode, fusion))


def batch_targets(batch: dict, num_classes: int) -> Tensor:
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
        Y.append(batch_targets(batch, p.shape[1]))
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
        Y.append(batch_targets(batch, clf.num_classes))
        L.append(torch.as_tensor(batch["label"]))
    return torch.cat(X), torch.cat(Y), torch.cat(L)


def prediction_report(pred: Predictions) -> dict[str, Any]:
    """mAP, accuracy, AUC, d_prime of the (frame-averaged) predictions, the middle-frame mAP / accuracy,
    ``frames_averaged`` and the number of clips ``n``."""
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
) -> dict[str, Any]:
    """:func:`prediction_report` of a classifier on a dataset with spec §4 video-level inference (see
    :func:`predict_classifier`): softmax probabilities, or sigmoid ones with ``multilabel``."""
    return prediction_report(predict_classifier(clf, dataset, mode, fusion, multilabel, frame_average, batch_size,
                                                device))


__all__ = ["FUSIONS", "Predictions", "batch_targets", "classifier_logits", "classifier_pooled", "evaluate_classifier",
           "head_features", "predict_classifier", "prediction_report"]
