"""Pretraining loop: mixed precision, gradient accumulation, DDP, atomic checkpoints and exact resume.

    result = pretrain(CAVMAEConfig.tiny(), TrainConfig.preset("tiny", max_steps=500), dataset, "runs/tiny")
    model = load_pretrained("runs/tiny")            # also accepts official CAV-MAE checkpoints

:func:`pretrain` reads top to bottom: open the run, then per optimiser step (1) the learning rate, (2) the step
(:func:`train_step`), (3) logging, (4) the epoch boundary, (5) the stopping rule (:func:`stop_reason`),
(6) validation and checkpointing (:func:`write_checkpoint`). Opening a run is :mod:`.run`, the sinks of the
curves :mod:`.metrics`, the schedules :mod:`.optim`, the objective :mod:`.objective`.

Multi-GPU: ``torchrun --nproc-per-node 4 -m cavmae_lite.cli pretrain ...`` (NCCL on GPU, gloo on CPU). Each
process draws ``batch_size`` clips per micro-step from a ``DistributedSampler``; contrastive negatives are
gathered from every rank with gradients unless ``contrast_negatives="local"`` (the official per-GPU quirk).

Exact resume: a checkpoint is written only at an optimiser-step boundary and holds the model, optimiser,
schedule, grad scaler, step, the data position (epoch, batch within the epoch) and every RNG state. Sample
order comes from (seed, epoch) alone, masking noise from the restored torch RNG, so a resumed CPU run with
``num_workers=0`` is bit-identical to an uninterrupted one. (With workers, per-sample augmentation randomness
is re-seeded at the resume point; the sample order stays exact.)
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from ..checkpoints import save_checkpoint
from ..config import CAVMAEConfig, TrainConfig
from ..model import CAVMAE
from ..runtime import autocast, get_rng_state
from .metrics import MetricsLog, require_tensorboard
from .objective import run_config
from .optim import lr_factor, set_lr
from .run import Run, epoch_batches, open_run
from .validation import after_epoch, eval_batch_size

logger = logging.getLogger(__name__)

LOGGED = ("loss", "loss_rec", "loss_rec_a", "loss_rec_v", "loss_c", "c_acc")


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) became NaN / Inf; no checkpoint was written for that step."""


@dataclass
class PretrainResult:
    model: CAVMAE  # the trained model: the one passed in (its config unchanged), or a new one
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    out_dir: Path | None = None
    stopped: str = ""  # max_steps | epochs | max_minutes | stop_after | already_finished
    amp: str = "none"
    validation: list[dict[str, Any]] = field(default_factory=list)  # this call's per-epoch validation lines


def pretrain(config: CAVMAEConfig, train_config: TrainConfig, dataset: Dataset, out_dir: str | Path | None = None,
             resume: bool = False, on_step: Callable[[int, dict[str, Any]], None] | None = None,
             progress: bool = True, model: CAVMAE | None = None, start_time: float | None = None,
             stop_after: int | None = None, eval_dataset: Dataset | None = None,
             tensorboard: bool = False) -> PretrainResult:
    """Pretrain a CAV-MAE on ``dataset`` (items: dicts with ``audio`` (T, F) and ``video`` (3, H, W)).

    out_dir: run directory for config.json, checkpoint.pt and metrics.jsonl (None: keep everything in memory).
    resume: continue from ``out_dir/checkpoint.pt`` when it exists; a run that has already reached its limit
    (steps, epochs or minutes, counted over every call) is left unchanged and ``stopped="already_finished"``.
    on_step(step, metrics): called every ``log_every`` steps with the averaged metrics (for live plots).
    progress: a tqdm bar. model: start from these weights instead of a fresh init; they are moved to the device
    and trained in place, ``model.config`` is left as it is (the run's loss settings reach its forward as
    ``loss_settings``; config.json and the checkpoint record them). ``result.model`` is that model.
    start_time: ``time.time()`` the ``max_minutes`` budget counts from (default: now). stop_after: end this call
    after that many optimiser steps without a final checkpoint (simulates a kill; for tests). eval_dataset:
    validate at every epoch end (:func:`.validation.after_epoch`: metrics.jsonl line, best.pt; ``keep_epochs``:
    epoch_<E>.pt). tensorboard: also write the curves to ``out_dir/tensorboard`` (ImportError naming the fix
    when the tensorboard package is missing).
    """
    tc = train_config
    if tensorboard:  # fail before anything is written
        if out_dir is None:
            raise ValueError("tensorboard=True needs an out_dir: the events go to out_dir/tensorboard")
        require_tensorboard()
    run = open_run(run_config(config, tc), tc, dataset, out_dir, resume, model,
                   time.time() if start_time is None else start_time)
    if eval_dataset is not None:  # too small a set fails now, not at the first epoch's end
        eval_batch_size(len(eval_dataset), run.config, tc, run.world)
    if _already_finished(run, resume):
        return PretrainResult(run.model, [], run.state["step"], run.out, "already_finished", run.amp)
    log, validation, steps_this_call, stopped = MetricsLog(run, on_step, progress, tensorboard), [], 0, ""
    run.model.train()
    batches = epoch_batches(run, dataset)
    try:
        while not stopped:
            lr = set_lr(run.optimizer, tc.lr * _lr_factor(run))  # 1. the learning rate of this step
            t0 = time.time()
            metrics = train_step(run, batches)  # 2. grad_accum micro-batches, one guarded optimiser step
            steps_this_call += 1
            log.record(metrics, lr, time.time() - t0)  # 3. metrics.jsonl / TensorBoard / bar / on_step
            end_of_epoch = _advance_epoch(run)  # 4. the epoch boundary
            stopped = stop_reason(run, steps_this_call, stop_after)  # 5. the stopping rule
            if stopped and stopped != "stop_after":
                run.state["stopped"] = stopped
            if end_of_epoch and (eval_dataset is not None or tc.keep_epochs):  # 6. validate, then save last / best
                validation.append(after_epoch(run, eval_dataset, lambda: write_checkpoint(run), log.write))
            elif run.state["step"] % tc.checkpoint_every == 0 or stopped not in ("", "stop_after"):
                write_checkpoint(run)  # 6. a checkpoint every checkpoint_every steps and at the end
            if end_of_epoch and not stopped:
                del batches
                batches = epoch_batches(run, dataset)  # a new epoch: a new sampler order
    finally:
        log.close()
    return PretrainResult(run.model, log.history, run.state["step"], run.out, stopped, run.amp,
                          [v for v in validation if v is not None])


def _already_finished(run: Run, resume: bool) -> bool:
    """True when the run has already used up its budget; rank 0 logs that, or a resume."""
    done = stop_reason(run)
    if run.rank == 0 and done:
        logger.info("%s already reached its limit (%s) at step %d: nothing to do (raise --max-steps, --epochs or "
                    "--max-minutes to train on)", run.ckpt_path, done, run.state["step"])
    elif run.rank == 0 and resume and run.state["step"]:
        logger.info("resumed from %s at step %d", run.ckpt_path, run.state["step"])
    return bool(done)


def _advance_epoch(run: Run) -> bool:
    """After a step: True, and the position moved to the start of the next epoch, when this epoch is done."""
    if run.state["batch"] < run.steps_per_epoch * run.tc.grad_accum:
        return False
    run.state["epoch"] += 1
    run.state["batch"] = 0
    return True


# ---------------------------------------------------------------------------------------------------------
# The named parts of a step: learning rate, the step itself, stopping rule, checkpoint
# ---------------------------------------------------------------------------------------------------------


def _lr_factor(run: Run) -> float:
    """Multiplier of ``tc.lr`` for the coming step: :func:`lr_factor` over the step horizon, or over the time
    budget (its post-warm-up fraction used so far) for a ``max_minutes``-only run."""
    tc, st = run.tc, run.state
    progress = None
    if st["total_steps"] is None and tc.max_minutes is not None:  # time-based cosine horizon
        used, budget = run.wall(), tc.max_minutes * 60
        if st["step"] <= tc.warmup_steps or "warm_end" not in st:
            st["warm_end"] = used
        progress = (used - st["warm_end"]) / max(budget - st["warm_end"], 1e-9)
    return lr_factor(tc, st["step"], st["total_steps"], run.steps_per_epoch, progress)


def _all_finite(flag: bool, device: torch.device, world: int) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(t)
    return t.item() == 0


def _forward_backward(run: Run, batches) -> tuple[dict[str, float], bool]:
    """``grad_accum`` micro-batches forward + backward (gradients synced on the last one only); returns the
    averaged metrics and whether every loss was finite on every rank (no backward after a non-finite one)."""
    tc, device, world = run.tc, run.device, run.world
    parts: dict[str, float] = {}
    finite = True
    for micro in range(tc.grad_accum):
        batch = next(batches)
        audio = batch["audio"].to(device, non_blocking=True)
        video = batch["video"].to(device, non_blocking=True)
        if video.dim() == 5:  # Sync, P pairs per clip: (B, P, L, F), (B, P, 3, H, W) -> B * P pairs
            audio, video = audio.flatten(0, 1), video.flatten(0, 1)
        sync = world == 1 or micro == tc.grad_accum - 1
        with contextlib.nullcontext() if sync else run.ddp_model.no_sync():
            with autocast(run.amp, device):
                o = run.step_fn(audio, video, tc.mask_ratio_a, tc.mask_ratio_v, mask_mode=tc.mask_mode,
                                loss_settings=run.loss_settings, contrast_groups=tc.contrast_groups)
            loss = o.loss.float()
            finite = _all_finite(bool(torch.isfinite(loss)), device, world) and finite
            if finite:
                run.scaler.scale(loss / tc.grad_accum).backward()
        for k in LOGGED:
            parts[k] = parts.get(k, 0.0) + float(getattr(o, k).detach()) / tc.grad_accum
    return parts, finite


def train_step(run: Run, batches) -> dict[str, float]:
    """One optimiser step, guarded against NaN / Inf; returns the step's metrics (micro-batch means, grad_norm,
    and under fp16 ``overflow`` / ``skipped``). A non-finite loss or gradient raises :class:`TrainingDiverged`
    (bf16 / fp32) or skips the step and halves the loss scale (fp16, as GradScaler does; ``tc.max_bad_steps``
    such steps in a row raise)."""
    tc = run.tc
    parts, finite = _forward_backward(run, batches)
    run.state["batch"] += tc.grad_accum
    if finite:
        run.scaler.unscale_(run.optimizer)
        gnorm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), tc.clip_grad or float("inf"))
        finite = bool(torch.isfinite(gnorm)) or run.amp == "fp16"  # fp16: the scaler skips inf grads
        parts["grad_norm"] = float(gnorm)
    if finite:
        scale = run.scaler.get_scale()
        run.scaler.step(run.optimizer)  # fp16: skipped when a gradient is Inf / NaN, as the official loop did
        run.scaler.update()
        if run.amp == "fp16":
            parts["overflow"] = float(run.scaler.get_scale() < scale)  # 1: that skip happened, the scale halved
        run.bad_steps = 0
    run.optimizer.zero_grad(set_to_none=True)
    if not finite:
        _skip_or_raise(run, parts)
    run.state["step"] += 1
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    return parts


def _skip_or_raise(run: Run, parts: dict[str, float]) -> None:
    """A step with a non-finite loss or gradient: TrainingDiverged, or under fp16 a skipped step."""
    detail = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
    s = run.state["step"]
    if run.amp != "fp16":
        raise TrainingDiverged(
            f"non-finite loss or gradient at step {s} ({detail}); stopped without writing a checkpoint for it. "
            f"The last good checkpoint is {run.ckpt_path}. Try a lower --lr, --clip 1.0, or --amp none / bf16.")
    run.bad_steps += 1
    run.scaler.update(run.scaler.get_scale() / 2)
    if run.bad_steps > run.tc.max_bad_steps:
        raise TrainingDiverged(f"{run.bad_steps} consecutive non-finite fp16 losses up to step {s} ({detail})")
    parts["skipped"] = 1.0


def stop_reason(run: Run, steps_this_call: int = 0, stop_after: int | None = None) -> str:
    """Why the run stops now ('' to go on): ``stop_after`` steps taken in this call, else the budget it has
    used up: max_steps, epochs or max_minutes (counted over every call of the run)."""
    tc, st = run.tc, run.state
    if stop_after is not None and steps_this_call >= stop_after:
        return "stop_after"
    if tc.max_steps is not None and st["step"] >= tc.max_steps:
        return "max_steps"
    if tc.epochs is not None and st["epoch"] >= tc.epochs:
        return "epochs"
    if tc.max_minutes is not None and run.wall() >= tc.max_minutes * 60:
        return "max_minutes"
    return ""


def write_checkpoint(run: Run) -> None:
    """Atomic checkpoint of everything exact resume needs (rank 0 writes; every rank's RNG state is kept)."""
    for p in run.model.parameters():
        if not torch.isfinite(p).all():
            raise TrainingDiverged(f"refusing to write a checkpoint with non-finite weights at step {run.state['step']}")
    rngs = [get_rng_state()]
    if run.world > 1:
        rngs = [None] * run.world
        dist.all_gather_object(rngs, get_rng_state())
    run.state["wall"] = run.wall()
    if run.ckpt_path is not None and run.rank == 0:
        tc = run.tc
        save_checkpoint({
            "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "scheduler": {"name": tc.schedule, "steps_per_epoch": run.steps_per_epoch,
                          "total_steps": run.state["total_steps"]},
            "state": dict(run.state), "rng": rngs, "model_config": run.config.to_dict(), "train_config": tc.to_dict(),
        }, run.ckpt_path)


__all__ = ["PretrainResult", "TrainingDiverged", "pretrain", "stop_reason", "train_step", "write_checkpoint"]
