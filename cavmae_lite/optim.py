"""The optimiser and the learning-rate schedule of pretraining (the loop itself is :mod:`cavmae_lite.train`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig


def build_optimizer(model: nn.Module, tc: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with decay on weight matrices only, or the official Adam with L2 on everything.

    Fused kernels on CUDA and CPU (on CPU the fused AdamW step of the tiny model takes about a third of the
    for-each one's time); other devices use the default implementation.
    """
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {}
    if tc.optimizer == "adam":
        return torch.optim.Adam([p for _, p in params], lr=tc.lr, betas=tc.betas, weight_decay=tc.weight_decay,
                                **fused)
    decay = [p for n, p in params if p.dim() >= 2 and not n.endswith(("_pos", "_modality", "mask_token"))]
    no_decay = [p for n, p in params if not (p.dim() >= 2 and not n.endswith(("_pos", "_modality", "mask_token")))]
    groups = [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=tc.lr, betas=tc.betas, **fused)


def lr_factor(tc: TrainConfig, step: int, total_steps: int | None, steps_per_epoch: int,
              progress: float | None = None) -> float:
    """Multiplier of ``tc.lr`` for optimiser step ``step`` (0-based).

    The cosine runs from the end of warm-up to ``total_steps``; with no step horizon (a ``max_minutes``-only
    run) pass ``progress`` in [0, 1], the fraction of the post-warm-up time budget used so far.
    """
    if tc.schedule == "official":
        epoch = step // max(steps_per_epoch, 1)
        halvings = 0 if epoch < tc.decay_start else 1 + (epoch - tc.decay_start) // tc.decay_every
        return 0.5**halvings
    if step < tc.warmup_steps:
        return (step + 1) / tc.warmup_steps
    if tc.schedule == "constant" or (not total_steps and progress is None):
        return 1.0
    if total_steps:
        progress = (step - tc.warmup_steps) / max(total_steps - tc.warmup_steps, 1)
    progress = min(max(progress, 0.0), 1.0)
    return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


__all__ = ["build_optimizer", "lr_factor"]
