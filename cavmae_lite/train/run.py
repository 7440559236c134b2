"""Opening a pretraining run: devices and threads, model, optimiser and grad scaler, then either the checkpoint's
state (resume) or a new run directory with its config.json; and the batches of an epoch from any position.

``Run.state`` is what a checkpoint stores of the loop: step, epoch, batch (micro-batches into the epoch),
total_steps, elapsed (step seconds), wall (seconds of every call so far, the ``max_minutes`` clock), warm_end
(wall time at the end of warm-up, time-based schedules only), stopped (the limit the run last reached).

Resuming keeps the run's settings: ``resume=True`` on a folder whose config.json records another model config or
other training settings raises ``ValueError`` naming the fields (:func:`check_resume_config`); only the budget and
bookkeeping fields :data:`RESUME_MAY_CHANGE` may differ. :func:`run_key` hashes exactly what must stay the same,
so ``out / f"name-{run_key(config, tc)}"`` gives each configuration a folder of its own (notebook 06 does this).
"""

from __future__ import annotations

import hashlib
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
from ..config import CAVMAEConfig, TrainConfig, config_from_dict
from ..model import CAVMAE
from ..runtime import ResumableSampler, auto_threads, resolve_amp, set_rng_state, setup_distributed
from ..sync import model_for
from .objective import LOSS_FIELDS, loss_settings, run_config
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


# TrainConfig fields a resumed run may change: the budget (the cosine horizon follows the budget given now) and
# bookkeeping that does not change what is trained; ``init`` is ignored on resume (the checkpoint's weights win)
RESUME_MAY_CHANGE = ("max_steps", "epochs", "max_minutes", "checkpoint_every", "log_every", "num_workers", "device",
                     "threads", "compile", "keep_epochs", "eval_retrieval", "max_bad_steps", "init")


def _resume_identity(config: CAVMAEConfig, tc: TrainConfig) -> dict[str, Any]:
    """What a resume must keep (JSON values): the run's model config and the training settings outside
    :data:`RESUME_MAY_CHANGE`. ``config`` is the run's (loss overrides applied, :func:`run_config`), so the loss
    fields count once, in the model part, whether the TrainConfig or the model config set them."""
    train = {k: v for k, v in tc.to_dict().items() if k not in RESUME_MAY_CHANGE and k not in LOSS_FIELDS}
    return json.loads(json.dumps({"model": config.to_dict(), "train": train}))


def run_key(config: CAVMAEConfig, tc: TrainConfig) -> str:
    """12 hex digits identifying a run's configuration up to :data:`RESUME_MAY_CHANGE`: two (config, tc) pairs
    with the same key can resume each other's run; a changed model config, loss, mask ratio, schedule, seed, ...
    gives another key. ``config`` is the model config as passed to ``pretrain`` (``tc``'s loss overrides are
    applied here)."""
    ident = _resume_identity(run_config(config, tc), tc)
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]


def check_resume_config(out: Path, config: CAVMAEConfig, tc: TrainConfig) -> None:
    """ValueError when ``out/config.json`` was written for another configuration than (``config``, ``tc``), up to
    :data:`RESUME_MAY_CHANGE` (``config``: the run's, loss overrides applied). No config.json: nothing to check."""
    saved_path = Path(out) / "config.json"
    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text())
    # through from_dict, so that a field added to the configs since the run was written reads as its default
    then = _resume_identity(config_from_dict(saved["model"]), TrainConfig.from_dict(saved["train"]))
    now = _resume_identity(config, tc)
    diff = [f"{part}.{k}: {then[part].get(k)!r} then, {now[part].get(k)!r} now" for part in ("model", "train")
            for k in sorted(set(then[part]) | set(now[part])) if then[part].get(k) != now[part].get(k)]
    if diff:
        raise ValueError(f"{out}: resume=True, but this run was started with another configuration ("
                         f"{'; '.join(diff)}). Resuming would load the old run's weights under the new settings. "
                         "Train the new configuration in a folder of its own (e.g. one named with "
                         "cavmae_lite.train.run_key(config, tc)), or delete the old folder; on resume only "
                         f"{', '.join(RESUME_MAY_CHANGE)} may change.")


def _restore_or_create(run: Run, resume: bool) -> None:
    """Resume: the checkpoint's weights, optimiser, scaler, loop state and RNG (they win over ``tc.init``).
    Otherwise: ``tc.init``'s weights and, on rank 0, the run directory with config.json."""
    ckpt = run.ckpt_path
    if resume and ckpt is not None and ckpt.is_file():
        check_resume_config(run.out, run.config, run.tc)  # a changed configuration never resumes the old run
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
    model = (model if model is not None else model_for(config)).to(device)  # CAVMAE, or CAVMAESync for its config
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


__all__ = ["RESUME_MAY_CHANGE", "Run", "check_resume_config", "epoch_batches", "open_run", "run_key"]
