"""Opening a pretraining run: devices and threads, model, optimiser and grad scaler, then either the checkpoint's
state (resume) or a new run directory with its config.json; and the batches of an epoch from any position.

``Run.state`` is what a checkpoint stores of the loop: step, epoch, batch (micro-batches into the epoch),
total_steps, elapsed (step seconds), wall (seconds of every call so far, the ``max_minutes`` clock), warm_end
(wall time at the end of warm-up, time-based schedules only), stopped (the limit the run last reached).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..checkpoints import CHECKPOINT_NAME, init_from, load_checkpoint
from ..config import CAVMAEConfig, TrainConfig
from ..model import CAVMAE
from ..runtime import ResumableSampler, auto_threads, resolve_amp, set_rng_state, setup_distributed
from .objective import loss_settings
from .optim import build_optimizer

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """What one call of :func:`cavmae_lite.train.pretrain` works with (see the module docstring for ``state``).

    ``model`` is the model trained (the caller's, which keeps its config: ``loss_settings`` are the run's loss
    fields that differ from it, passed to every forward);
    ``ddp_model`` wraps it for DistributedDataParallel (itself on one process); ``step_fn`` is what a step calls
    (``ddp_model``, compiled with ``tc.compile``)."""

    config: CAVMAEConfig
    tc: TrainConfig
    model: CAVMAE
    ddp_model: nn.Module
    step_fn: nn.Module | Callable
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    amp: str
    rank: int
    world: int
    state: dict[str, Any]
    out: Path | None
    steps_per_epoch: int
    start_time: float
    wall0: float = 0.0  # state["wall"] when this call began
    bad_steps: int = 0  # consecutive skipped (non-finite, fp16) steps
    loss_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def ckpt_path(self) -> Path | None:
        return self.out / CHECKPOINT_NAME if self.out is not None else None

    def wall(self) -> float:
        """Seconds of wall time over every call of this run (the ``max_minutes`` clock)."""
        return self.wall0 + time.time() - self.start_time


def _setup_torch(tc: TrainConfig, device: torch.device) -> None:
    """CPU threads, deterministic algorithms and every seed, before the model is built."""
    if device.type == "cpu":
        torch.set_num_threads(auto_threads() if tc.threads < 0 else (tc.threads or os.cpu_count() or 1))
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed % 2**32)
    random.seed(tc.seed)


def _steps_per_epoch(dataset: Dataset, tc: TrainConfig, world: int) -> int:
    steps = (len(dataset) // world) // tc.batch_size // tc.grad_accum
    if steps == 0:
        raise ValueError(f"dataset of {len(dataset)} clips is too small for batch {tc.batch_size} x grad_accum "
                         f"{tc.grad_accum} x {world} processes")
    return steps


def _restore_or_create(run: Run, resume: bool) -> None:
    """Resume: the checkpoint's weights, optimiser, scaler, loop state and RNG (they win over ``tc.init``).
    Otherwise: ``tc.init``'s weights and, on rank 0, the run directory with config.json."""
    ckpt = run.ckpt_path
    if resume and ckpt is not None and ckpt.is_file():
        ck = load_checkpoint(ckpt)
        run.model.load_state_dict(ck["model"])
        run.optimizer.load_state_dict(ck["optimizer"])
        run.scaler.load_state_dict(ck["scaler"])
        run.state.update(ck["state"])
        set_rng_state(ck["rng"][run.rank] if run.rank < len(ck["rng"]) else ck["rng"][0])
        return
    if ckpt is not None and run.rank == 0 and ckpt.is_file():
        raise FileExistsError(f"{ckpt} exists: pass --resume to continue it, or choose another --out")
    init = init_from(run.tc.init, run.model) if run.tc.init else None  # weights only, on every rank
    if run.out is not None and run.rank == 0:
        run.out.mkdir(parents=True, exist_ok=True)
        saved = {"model": run.config.to_dict(), "train": run.tc.to_dict(), "world_size": run.world, "init": init}
        (run.out / "config.json").write_text(json.dumps(saved, indent=2) + "\n")


def _wrap(model: nn.Module, tc: TrainConfig, device: torch.device, world: int) -> tuple[nn.Module, nn.Module | Callable]:
    """(DistributedDataParallel wrapper or the model itself, what a step calls: that, compiled with tc.compile)."""
    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    if tc.compile:
        try:
            return ddp_model, torch.compile(ddp_model)
        except Exception as e:  # noqa: BLE001 - any backend problem: stay eager
            logger.warning("torch.compile unavailable (%s); running eagerly", e)
    return ddp_model, ddp_model


def open_run(config: CAVMAEConfig, tc: TrainConfig, dataset: Dataset, out_dir: str | Path | None, resume: bool,
             model: CAVMAE | None, start_time: float) -> Run:
    """Everything :func:`cavmae_lite.train.pretrain` needs before its first step (``config``: the run's model
    config, loss overrides applied). ``model`` is moved to the device and trained; it keeps its own config."""
    if tc.max_steps is None and tc.epochs is None and tc.max_minutes is None:
        raise ValueError("set at least one of max_steps, epochs, max_minutes")
    rank, world, device = setup_distributed(tc.device)
    amp = resolve_amp(tc.amp, device)
    _setup_torch(tc, device)
    model = (model if model is not None else CAVMAE(config)).to(device)
    overrides = loss_settings(model.config, config)  # the run's loss fields where they differ from the model's
    optimizer = build_optimizer(model, tc, device)
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))
    steps_per_epoch = _steps_per_epoch(dataset, tc, world)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "total_steps": None, "elapsed": 0.0, "wall": 0.0,
                             "stopped": ""}
    out = Path(out_dir) if out_dir is not None else None
    run = Run(config, tc, model, model, model, optimizer, scaler, device, amp, rank, world, state, out,
              steps_per_epoch, start_time, loss_settings=overrides)
    _restore_or_create(run, resume)
    run.wall0 = float(state.get("wall", 0.0))
    limits = [x for x in (tc.max_steps, tc.epochs and tc.epochs * steps_per_epoch) if x]
    state["total_steps"] = min(limits) if limits else None  # the cosine horizon follows the budget given now
    run.ddp_model, run.step_fn = _wrap(model, tc, device, world)
    return run


def epoch_batches(run: Run, dataset: Dataset):
    """Batches of the current epoch from the current position; order depends on (seed, epoch) only."""
    tc, st = run.tc, run.state
    sampler = ResumableSampler(dataset, run.world, run.rank, tc.seed, start=st["batch"] * tc.batch_size)
    sampler.set_epoch(st["epoch"])
    gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + st["epoch"] * 7919 + st["batch"])
    return iter(DataLoader(dataset, batch_size=tc.batch_size, sampler=sampler, drop_last=True,
                           num_workers=tc.num_workers, generator=gen, pin_memory=run.device.type == "cuda",
                           persistent_workers=False))


__all__ = ["Run", "epoch_batches", "open_run"]
