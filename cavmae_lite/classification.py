"""The classification metrics the official fine-tuning prints (src/utilities/stats.py): mAP, accuracy, mean
ROC AUC and d-prime, in torch only.

* mAP: :func:`cavmae_lite.probe.mean_average_precision` (macro, ties as one threshold, classes without a
  positive skipped — the official code averages scikit-learn's value over every class).
* accuracy: argmax of the scores against the argmax of the multi-hot target (the official definition; for a
  multi-label clip that is its lowest-index class); clips without any label are left out.
* AUC: per-class ROC AUC (Mann-Whitney U with tied scores counted as half), averaged over the classes having
  both positives and negatives (the official code averages in a -1 for the others).
* d-prime: ``sqrt(2) * Phi^-1(mean AUC)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .probe import mean_average_precision


def _midranks(x: Tensor) -> Tensor:
    """1-based ranks of (N,) values, tied values sharing the mean of their ranks."""
    order = torch.argsort(x, stable=True)
    xs = x[order]
    _, inverse, counts = torch.unique_consecutive(xs, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mid = ends - (counts.double() - 1) / 2  # mean of ranks (end - count + 1) .. end
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = mid[inverse]
    return ranks


def roc_auc(scores: Tensor, targets: Tensor) -> float:
    """ROC AUC of one class: scores (N,), targets (N,) in {0, 1}; NaN when one of the two groups is empty."""
    t = targets > 0.5
    npos, nneg = int(t.sum()), int((~t).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    r = _midranks(scores.double())
    return float((r[t].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def d_prime(auc: float) -> float:
    """``sqrt(2) * Phi^-1(auc)``: the separation of two unit Gaussians that would give this AUC."""
    return math.sqrt(2.0) * float(torch.special.ndtri(torch.tensor(float(auc), dtype=torch.float64)))


def accuracy_vs_targets(scores: Tensor, targets: Tensor) -> float:
    """Top-1 accuracy of (N, C) scores against argmax of (N, C) targets, over the clips with a label."""
    keep = targets.amax(dim=1) > 0
    if not keep.any():
        raise ValueError("no clip has a label: accuracy is undefined")
    return float((scores[keep].argmax(1) == targets[keep].argmax(1)).double().mean())


def classification_metrics(scores: Tensor, targets: Tensor) -> dict[str, float]:
    """{"mAP", "accuracy", "AUC", "d_prime"} of (N, C) scores (probabilities or logits) and multi-hot targets."""
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(f"scores and targets must both be (N, C), got {tuple(scores.shape)}, {tuple(targets.shape)}")
    scores, targets = scores.double(), (targets > 0.5).double()
    aucs = [roc_auc(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    aucs = [a for a in aucs if not math.isnan(a)]
    auc = sum(aucs) / len(aucs) if aucs else float("nan")
    return {"mAP": mean_average_precision(scores, targets), "accuracy": accuracy_vs_targets(scores, targets),
            "AUC": auc, "d_prime": d_prime(auc) if aucs else float("nan")}


__all__ = ["accuracy_vs_targets", "classification_metrics", "d_prime", "roc_auc"]
