"""Per-epoch validation of a pretraining run, and the epoch checkpoints that go with it.

    val = validate(model, val_set, config, train_config)                 # {"val_loss": ..., "val_r1_a2v": ...}

The official loop (``traintest_cavmae.py``) validated after every epoch with the training losses, kept the
model with the lowest total validation loss and, with ``--save_model``, every epoch's weights. :func:`after_epoch`
does the same for :func:`cavmae_lite.train.pretrain`, with fixed masking noise so that epochs compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..checkpoints import save_checkpoint
from ..config import CAVMAEConfig, TrainConfig
from ..model import CAVMAE
from ..runtime import autocast, get_rng_state, set_rng_state
from .objective import loss_settings

BEST_NAME = "best.pt"
VAL_TERMS = ("loss", "loss_rec", "loss_rec_a", "loss_rec_v", "loss_c", "c_acc")


def epoch_name(epoch: int) -> str:
    """``epoch_<E>.pt``, E = epochs completed (1-based, like the official ``audio_model.<E>.pth``)."""
    return f"epoch_{epoch}.pt"


def eval_batch_size(num_clips: int, config: CAVMAEConfig, tc: TrainConfig, world: int = 1) -> int:
    """Validation batch: the clips one training InfoNCE step sees (``batch_size``, times the world size when
    negatives are gathered), so that the groups have the training size; a smaller set is one batch of all its
    clips, trimmed to a multiple of ``contrast_groups``. ValueError when fewer than 2 clips per group remain."""
    bs = tc.batch_size * (world if config.contrast_negatives == "global" else 1)
    if num_clips < bs:
        bs = num_clips - num_clips % tc.contrast_groups
    if bs < 2 * tc.contrast_groups:
        raise ValueError(f"validation set of {num_clips} clips is too small: it needs at least "
                         f"{2 * tc.contrast_groups} (2 per InfoNCE group, contrast_groups={tc.contrast_groups})")
    return bs


def _batches(dataset: Dataset, batch_size: int):
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=True, num_workers=0)


def _r1(audio: torch.Tensor, video: torch.Tensor) -> dict[str, float]:
    from ..evaluate import retrieval_ranks  # same tie rule as `cavmae-lite evaluate retrieval`

    a2v, v2a = retrieval_ranks(audio @ video.T)
    return {"val_r1_a2v": float((a2v == 1).double().mean()), "val_r1_v2a": float((v2a == 1).double().mean())}


@torch.no_grad()
def validate(model: CAVMAE, dataset: Dataset, config: CAVMAEConfig, tc: TrainConfig,
             device: torch.device | str = "cpu", amp: str = "none", world: int = 1) -> dict[str, float]:
    """Validation losses of ``model`` on ``dataset`` (items with ``audio`` (T, F), ``video`` (3, H, W)).

    Batches of :func:`eval_batch_size` in dataset order (the last partial batch is dropped, as the official
    loader did), the training masking ratios and mode with masking noise from a generator seeded by ``tc.seed``
    (the same masks every epoch), the loss settings of ``config`` (the run's: the model's config with the
    training overrides) and ``tc.contrast_groups``, under ``amp`` autocast. Every rank runs the whole set with
    local negatives (no collectives); the global RNG state is restored, so validating leaves the training run's
    randomness untouched, and ``model`` keeps its config and its train / eval mode. Returns the means over
    batches of ``val_loss``, ``val_loss_rec``, ``val_loss_rec_a``, ``val_loss_rec_v``, ``val_loss_c``,
    ``val_c_acc``, plus ``val_clips`` and, with ``tc.eval_retrieval``, retrieval R@1 over those clips from
    unmasked embeddings (``val_r1_a2v``, ``val_r1_v2a``).
    """
    device = torch.device(device)
    bs = eval_batch_size(len(dataset), config, tc, world)
    local = config.replace(contrast_negatives="local")
    overrides = loss_settings(model.config, local)  # passed to the forward; model.config stays as it is
    rng, was_training = get_rng_state(), model.training
    gen = torch.Generator(device=device).manual_seed(tc.seed + 1_000_033)
    sums, n_batches, embs = dict.fromkeys(VAL_TERMS, 0.0), 0, ([], [])
    model.eval()
    try:
        for batch in _batches(dataset, bs):
            audio, video = batch["audio"].to(device), batch["video"].to(device)
            with autocast(amp, device):
                o = model(audio, video, tc.mask_ratio_a, tc.mask_ratio_v, mask_mode=tc.mask_mode, generator=gen,
                          loss_settings=overrides, contrast_groups=tc.contrast_groups)
                emb = model.embed(audio, video) if tc.eval_retrieval else None
            for k in VAL_TERMS:
                sums[k] += float(getattr(o, k))
            if emb is not None:
                embs[0].append(emb[0].float().cpu())
                embs[1].append(emb[1].float().cpu())
            n_batches += 1
    finally:
        model.train(was_training)
        set_rng_state(rng)
    out = {f"val_{k}": v / n_batches for k, v in sums.items()}
    out["val_clips"] = n_batches * bs
    if embs[0]:
        out.update(_r1(torch.cat(embs[0]), torch.cat(embs[1])))
    return out


def _weights(run: Any, val: dict[str, Any] | None) -> dict[str, Any]:
    return {"model": run.model.state_dict(), "model_config": run.config.to_dict(), "train_config": run.tc.to_dict(),
            "state": dict(run.state), "validation": val}


def after_epoch(run: Any, eval_dataset: Dataset | None, save_last: Callable[[], None],
                write: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """End of an epoch of ``run`` (a ``train._Run``; ``state["epoch"]`` already counts it): validate on
    ``eval_dataset`` (if given) and ``write`` the metrics line; track the best (lowest) ``val_loss`` in the
    run state; ``save_last()`` (checkpoint.pt, every rank: it gathers RNG states); then on rank 0 write
    ``best.pt`` when the epoch is the best so far and ``epoch_<E>.pt`` with ``keep_epochs``. Both hold the
    weights with their configs, the run state and the validation metrics, no optimiser (atomic writes)."""
    st, val, improved = run.state, None, False
    if eval_dataset is not None:
        val = validate(run.model, eval_dataset, run.config, run.tc, run.device, run.amp, run.world)
        improved = val["val_loss"] < st.get("best_val_loss", math.inf)
        if improved:
            st["best_val_loss"], st["best_epoch"] = val["val_loss"], st["epoch"]
        val = {"step": st["step"], "epoch": st["epoch"], **val, "best_epoch": st.get("best_epoch"),
               "time": round(run.wall(), 2)}
        write(val)
    save_last()
    if run.out is not None and run.rank == 0:
        if improved:
            save_checkpoint(_weights(run, val), run.out / BEST_NAME)
        if run.tc.keep_epochs:
            save_checkpoint(_weights(run, val), run.out / epoch_name(st["epoch"]))
    return val


__all__ = ["BEST_NAME", "after_epoch", "epoch_name", "eval_batch_size", "validate"]
