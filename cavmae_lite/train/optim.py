"""The optimiser and every learning-rate schedule of the package (the loop itself is :mod:`cavmae_lite.train`).

Schedules are multipliers of a base learning rate:

    cosine_lr_factor(step=50, total_steps=100)          -> 0.5   (half-cosine, 1 at step 0, 0 at the end)
    step_lr_factor(epoch=7, start=5, step=1, decay=0.5) -> 0.25  (the official MultiStepLR, 1-based epochs)
    lr_factor(tc, step, total_steps, steps_per_epoch)   -> pretraining's schedule (warm-up + one of the above)
    set_lr(optimizer, tc.lr * factor)                   -> writes it into every parameter group
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainConfig


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


def cosine_lr_factor(step: float, total_steps: float) -> float:
    """Multiplier of the base lr for 0-based optimiser ``step`` of ``total_steps``: 0.5 (1 + cos(pi s / S)).

    Past ``total_steps`` it stays 0; ``step`` may be fractional (``cosine_lr_factor(p, 1)`` for progress p)."""
    return 0.5 * (1 + math.cos(math.pi * min(step / max(total_steps, 1), 1.0)))


def step_lr_factor(epoch: int, start: int, step: int = 1, decay: float = 0.5) -> float:
    """Multiplier of the base lr during 1-based ``epoch`` under the official schedule.

    ``MultiStepLR(milestones=range(start, 1000, step), gamma=decay)`` stepped once after every epoch: during
    epoch e the lr has been multiplied once per milestone m <= e - 1.
    """
    if epoch < 1:
        raise ValueError(f"epochs are 1-based, got {epoch}")
    done = epoch - 1  # scheduler steps taken before this epoch
    return 1.0 if done < start else decay ** ((done - start) // step + 1)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> float:
    """Set the learning rate of every parameter group of ``optimizer`` to ``lr``; returns ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def warmup_steps(tc: TrainConfig, total_steps: int | None) -> int:
    """Warm-up length: ``warmup_fraction`` of ``total_steps`` when both are set, else ``warmup_steps``."""
    if tc.warmup_fraction is not None and total_steps:
        return round(tc.warmup_fraction * total_steps)
    return tc.warmup_steps


def lr_factor(tc: TrainConfig, step: int, total_steps: int | None, steps_per_epoch: int,
              progress: float | None = None) -> float:
    """Multiplier of ``tc.lr`` for optimiser step ``step`` (0-based) of pretraining.

    ``official``: :func:`step_lr_factor` (halved after epoch ``decay_start``, then every ``decay_every``).
    ``cosine``: linear warm-up, then :func:`cosine_lr_factor` from the end of warm-up to ``total_steps``, floored
    at ``min_lr_ratio``; with no step horizon (a ``max_minutes``-only run) pass ``progress`` in [0, 1], the
    fraction of the post-warm-up time budget used so far. ``constant``: warm-up, then 1.
    """
    if tc.schedule == "official":
        return step_lr_factor(step // max(steps_per_epoch, 1) + 1, tc.decay_start, tc.decay_every, 0.5)
    warm = warmup_steps(tc, total_steps)
    if step < warm:
        return (step + 1) / warm
    if tc.schedule == "constant" or (not total_steps and progress is None):
        return 1.0
    if total_steps:
        cosine = cosine_lr_factor(step - warm, total_steps - warm)
    else:
        cosine = cosine_lr_factor(max(progress, 0.0), 1)
    return tc.min_lr_ratio + (1 - tc.min_lr_ratio) * cosine


__all__ = ["build_optimizer", "cosine_lr_factor", "lr_factor", "set_lr", "step_lr_factor", "warmup_steps"]
