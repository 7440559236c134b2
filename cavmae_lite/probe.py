"""Linear probes on frozen features and the classification metrics (accuracy, mAP), in torch only.

``mean_average_precision`` matches scikit-learn's ``average_precision_score`` averaged over classes
(macro, classes without a positive skipped), ties included: tied scores form one threshold.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def average_precision(scores: Tensor, targets: Tensor) -> float:
    """AP of one class: scores (N,), targets (N,) in {0, 1}. Sum over thresholds of (R_k - R_{k-1}) P_k."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, t = scores[order].double(), targets[order].double()
    npos = t.sum()
    if npos == 0:
        return float("nan")
    tp = t.cumsum(0)
    # evaluate precision / recall only at the last element of each group of tied scores
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    tp_k, n_k = tp[last], torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
    precision, recall = tp_k / n_k, tp_k / npos
    dr = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((dr * precision).sum())


def mean_average_precision(scores: Tensor, targets: Tensor) -> float:
    """Macro mAP: scores (N, C) (logits or probabilities), targets (N, C) multi-hot; classes without positives
    are skipped."""
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(f"scores and targets must both be (N, C), got {tuple(scores.shape)}, {tuple(targets.shape)}")
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    aps = [a for a in aps if not math.isnan(a)]
    if not aps:
        raise ValueError("no class has a positive example")
    return sum(aps) / len(aps)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy of (N, C) scores against (N,) class indices."""
    return float((logits.argmax(dim=1) == labels).float().mean())


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    multilabel: bool = False,
    num_classes: int | None = None,
    weight_decay: float = 1e-3,
    max_iter: int = 200,
) -> dict[str, float]:
    """Logistic regression on frozen features (standardised by the training statistics), full-batch L-BFGS.

    Single-label: y are class indices (N,), softmax cross-entropy; returns {"accuracy", "train_accuracy"}.
    Multi-label: y are multi-hot (N, C), sigmoid BCE; returns {"mAP", "train_mAP"}.
    ``weight_decay`` is the L2 penalty on the weights (mean-loss scale). Deterministic for given inputs.
    """
    x_tr, x_te = train_x.double(), test_x.double()
    mu, sd = x_tr.mean(0), x_tr.std(0).clamp(min=1e-6)
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    if multilabel:
        y_tr = train_y.double()
        C = y_tr.shape[1]
    else:
        keep_tr, keep_te = train_y >= 0, test_y >= 0  # -1 = unlabelled
        x_tr, y_tr, x_te, test_y = x_tr[keep_tr], train_y[keep_tr].long(), x_te[keep_te], test_y[keep_te]
        C = num_classes or int(max(int(y_tr.max()), int(test_y.max()) if len(test_y) else 0)) + 1
    W = torch.zeros(x_tr.shape[1], C, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        opt.zero_grad()
        z = x_tr @ W + b
        loss = F.binary_cross_entropy_with_logits(z, y_tr) if multilabel else F.cross_entropy(z, y_tr)
        loss = loss + weight_decay * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        z_tr, z_te = x_tr @ W + b, x_te @ W + b
    if multilabel:
        return {"mAP": mean_average_precision(z_te, test_y.double()), "train_mAP": mean_average_precision(z_tr, y_tr)}
    return {"accuracy": accuracy(z_te, test_y), "train_accuracy": accuracy(z_tr, y_tr)}


__all__ = ["accuracy", "average_precision", "linear_probe", "mean_average_precision"]
