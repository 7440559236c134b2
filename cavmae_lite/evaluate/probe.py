"""Linear probes on frozen features (full-batch L-BFGS, in torch only); their metrics live in :mod:`.metrics`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .metrics import accuracy, mean_average_precision


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


__all__ = ["linear_probe"]
