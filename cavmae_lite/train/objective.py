"""What a pretraining run optimises: the model's loss under the run's loss settings.

    config = run_config(model_config, train_config)    # the TrainConfig's loss overrides applied
    out = model(audio, video, loss_settings=loss_settings(model.config, config))   # what differs, passed per call

A model's config is never swapped or mutated: the run's loss settings reach the forward as an argument.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..config import CAVMAEConfig, TrainConfig

# CAVMAEConfig fields that only change the loss (a TrainConfig field of the same name overrides them when set)
LOSS_FIELDS = ("mae_weight", "contrast_weight", "contrast_temperature", "contrast_negatives", "bidirectional_contrast")


def run_config(config: CAVMAEConfig, tc: TrainConfig) -> CAVMAEConfig:
    """``config`` with the loss settings that ``tc`` gives (``tc.<field> is not None``) in place of its own."""
    overrides = {k: getattr(tc, k) for k in LOSS_FIELDS if getattr(tc, k) is not None}
    return config.replace(**overrides) if overrides else config


def loss_settings(model_config: CAVMAEConfig, config: CAVMAEConfig) -> dict[str, Any]:
    """The loss fields in which ``config`` (a run's) differs from ``model_config`` (the model's): what the run
    passes to ``CAVMAE.forward(..., loss_settings=...)``; {} when they agree. ValueError when they differ in
    anything but :data:`LOSS_FIELDS` (another architecture, or norm_pix_loss / tr_pos)."""
    same_loss = model_config.replace(**{k: getattr(config, k) for k in LOSS_FIELDS})
    if same_loss != config:
        diff = sorted(f.name for f in dataclasses.fields(config) if getattr(same_loss, f.name) != getattr(config, f.name))
        raise ValueError(f"the model's config differs from the run's in {diff}; only the loss settings "
                         f"{list(LOSS_FIELDS)} may differ (build the model from the run's config)")
    return {k: getattr(config, k) for k in LOSS_FIELDS if getattr(config, k) != getattr(model_config, k)}


__all__ = ["LOSS_FIELDS", "loss_settings", "run_config"]
