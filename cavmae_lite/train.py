"""Pretraining loop: mixed precision, gradient accumulation, DDP, atomic checkpoints and exact resume.

    result = pretrain(CAVMAEConfig.tiny(), TrainConfig.preset("tiny", max_steps=500), dataset, "runs/tiny")
    model = load_pretrained("runs/tiny")            # also accepts official CAV-MAE checkpoints

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
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .checkpoints import load_checkpoint, save_checkpoint
from .config import CAVMAEConfig, TrainConfig
from .mae_init import init_from
from .model import CAVMAE
from .optim import build_optimizer, lr_factor
from .pretrained import CHECKPOINT_NAME, load_pretrained  # load_pretrained: re-exported (docs import it from here)
from .runtime import (
    ResumableSampler,
    auto_threads,
    autocast,
    get_rng_state,
    resolve_amp,
    resolve_device,
    set_rng_state,
    setup_distributed,
)
from .validation import after_epoch, eval_batch_size, with_contrast_groups


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) became NaN / Inf; no checkpoint was written for that step."""


# ---------------------------------------------------------------------------------------------------------
# The loop: open a run, then (learning rate -> one optimiser step -> log -> stop? -> checkpoint) until done
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    model: CAVMAE
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    out_dir: Path | None = None
    stopped: str = ""  # max_steps | epochs | max_minutes | stop_after | already_finished
    amp: str = "none"
    validation: list[dict[str, Any]] = field(default_factory=list)  # this call's per-epoch validation lines


@dataclass
class _Run:
    """What one call of :func:`pretrain` works with. ``state`` is what a checkpoint stores of the loop:
    step, epoch, batch (micro-batches into the epoch), total_steps, elapsed (step seconds), wall (seconds of
    every call so far, the ``max_minutes`` clock), warm_end (wall time at the end of warm-up), stopped."""

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

    @property
    def ckpt_path(self) -> Path | None:
        return self.out / CHECKPOINT_NAME if self.out is not None else None

    def wall(self) -> float:
        return self.wall0 + time.time() - self.start_time


def _all_finite(flag: bool, device: torch.device, world: int) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(t)
    return t.item() == 0


def _mean(xs: list[float]) -> float:
    return sum(xs) / max(len(xs), 1)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _open_run(config: CAVMAEConfig, tc: TrainConfig, dataset: Dataset, out_dir: str | Path | None, resume: bool,
              model: CAVMAE | None, start_time: float) -> _Run:
    """Devices and threads, model, optimiser and scaler; then either the checkpoint's state (resume) or a new run
    directory with its config.json."""
    if tc.max_steps is None and tc.epochs is None and tc.max_minutes is None:
        raise ValueError("set at least one of max_steps, epochs, max_minutes")
    rank, world, device = setup_distributed(tc.device)
    amp = resolve_amp(tc.amp, device)
    if device.type == "cpu":
        torch.set_num_threads(auto_threads() if tc.threads < 0 else (tc.threads or os.cpu_count() or 1))
    if tc.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False
    _seed_everything(tc.seed)
    model = (model if model is not None else CAVMAE(config)).to(device)
    model.config = config
    optimizer = build_optimizer(model, tc, device)
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))
    steps_per_epoch = (len(dataset) // world) // tc.batch_size // tc.grad_accum
    if steps_per_epoch == 0:
        raise ValueError(f"dataset of {len(dataset)} clips is too small for batch {tc.batch_size} x grad_accum "
                         f"{tc.grad_accum} x {world} processes")
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "total_steps": None, "elapsed": 0.0, "wall": 0.0,
                             "stopped": ""}
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None
    if resume and ckpt_path is not None and ckpt_path.is_file():  # the checkpoint's weights win over tc.init
        ck = load_checkpoint(ckpt_path)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        state.update(ck["state"])
        set_rng_state(ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0])
    else:
        if ckpt_path is not None and rank == 0 and ckpt_path.is_file():
            raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")
        init = init_from(tc.init, model) if tc.init else None  # weights only, on every rank
        if out is not None and rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps({"model": config.to_dict(), "train": tc.to_dict(),
                                                         "world_size": world, "init": init}, indent=2) + "\n")
    limits = [x for x in (tc.max_steps, tc.epochs and tc.epochs * steps_per_epoch) if x]
    state["total_steps"] = min(limits) if limits else None  # the cosine horizon follows the budget given now
    ddp_model: nn.Module = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    step_fn: nn.Module | Callable = ddp_model
    if tc.compile:
        try:
            step_fn = torch.compile(ddp_model)
        except Exception as e:  # noqa: BLE001 - any backend problem: stay eager
            print(f"torch.compile unavailable ({e}); running eagerly")
    return _Run(config, tc, model, ddp_model, step_fn, optimizer, scaler, device, amp, rank, world, state, out,
                steps_per_epoch, start_time, wall0=float(state.get("wall", 0.0)))


def _limit_reached(run: _Run) -> str:
    """The budget this run has used up ('' if none): max_steps, epochs or max_minutes (counted over all calls)."""
    tc, st = run.tc, run.state
    if tc.max_steps is not None and st["step"] >= tc.max_steps:
        return "max_steps"
    if tc.epochs is not None and st["epoch"] >= tc.epochs:
        return "epochs"
    if tc.max_minutes is not None and run.wall() >= tc.max_minutes * 60:
        return "max_minutes"
    return ""


def _set_lr(run: _Run) -> float:
    """Learning rate of the coming step (cosine over the step horizon, or over the time budget without one)."""
    tc, st = run.tc, run.state
    progress = None
    if st["total_steps"] is None and tc.max_minutes is not None:  # time-based cosine horizon
        used, budget = run.wall(), tc.max_minutes * 60
        if st["step"] <= tc.warmup_steps or "warm_end" not in st:
            st["warm_end"] = used
        progress = (used - st["warm_end"]) / max(budget - st["warm_end"], 1e-9)
    lr = tc.lr * lr_factor(tc, st["step"], st["total_steps"], run.steps_per_epoch, progress)
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    return lr


def _epoch_batches(run: _Run, dataset: Dataset):
    """Batches of the current epoch from the current position; order depends on (seed, epoch) only."""
    tc, st = run.tc, run.state
    sampler = ResumableSampler(dataset, run.world, run.rank, tc.seed, start=st["batch"] * tc.batch_size)
    sampler.set_epoch(st["epoch"])
    gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + st["epoch"] * 7919 + st["batch"])
    return iter(DataLoader(dataset, batch_size=tc.batch_size, sampler=sampler, drop_last=True,
                           num_workers=tc.num_workers, generator=gen, pin_memory=run.device.type == "cuda",
                           persistent_workers=False))


LOGGED = ("loss", "loss_rec", "loss_rec_a", "loss_rec_v", "loss_c", "c_acc")


def _optimizer_step(run: _Run, batches, bad_run: int) -> tuple[dict[str, float], int]:
    """``grad_accum`` micro-batches forward + backward, then one optimiser step, guarded against NaN / Inf.

    Returns the step's averaged metrics and the updated count of consecutive skipped (fp16) steps. A non-finite
    loss or gradient raises :class:`TrainingDiverged` (bf16 / fp32) or skips the step (fp16, as GradScaler does)."""
    tc, device, world = run.tc, run.device, run.world
    parts: dict[str, float] = {}
    finite = True
    for micro in range(tc.grad_accum):
        batch = next(batches)
        audio = batch["audio"].to(device, non_blocking=True)
        video = batch["video"].to(device, non_blocking=True)
        sync = world == 1 or micro == tc.grad_accum - 1
        with contextlib.nullcontext() if sync else run.ddp_model.no_sync():
            with autocast(run.amp, device):
                o = run.step_fn(audio, video, tc.mask_ratio_a, tc.mask_ratio_v, mask_mode=tc.mask_mode)
                o = with_contrast_groups(o, run.config, tc.contrast_groups)
            loss = o.loss.float()
            finite = _all_finite(bool(torch.isfinite(loss)), device, world) and finite
            if finite:
                run.scaler.scale(loss / tc.grad_accum).backward()
        for k in LOGGED:
            parts[k] = parts.get(k, 0.0) + float(getattr(o, k).detach()) / tc.grad_accum
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
        run.optimizer.zero_grad(set_to_none=True)
        bad_run = 0
    else:
        run.optimizer.zero_grad(set_to_none=True)
        detail = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
        s = run.state["step"]
        if run.amp != "fp16":
            raise TrainingDiverged(
                f"non-finite loss or gradient at step {s} ({detail}); stopped without writing a checkpoint for it. "
                f"The last good checkpoint is {run.ckpt_path}. Try a lower --lr, --clip 1.0, or --amp none / bf16.")
        bad_run += 1
        run.scaler.update(run.scaler.get_scale() / 2)
        if bad_run > tc.max_bad_steps:
            raise TrainingDiverged(f"{bad_run} consecutive non-finite fp16 losses up to step {s} ({detail})")
        parts["skipped"] = 1.0
    run.state["step"] += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return parts, bad_run


def _save(run: _Run) -> None:
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
        save_checkpoint({"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
                         "scaler": run.scaler.state_dict(), "scheduler": {"name": tc.schedule,
                         "steps_per_epoch": run.steps_per_epoch, "total_steps": run.state["total_steps"]},
                         "state": dict(run.state), "rng": rngs, "model_config": run.config.to_dict(),
                         "train_config": tc.to_dict()}, run.ckpt_path)


class _Logger:
    """Averages step metrics over ``log_every`` steps; writes metrics.jsonl, the tqdm bar and ``on_step``."""

    def __init__(self, run: _Run, on_step: Callable[[int, dict[str, Any]], None] | None, progress: bool):
        self.run, self.on_step, self.history = run, on_step, []
        self.window: dict[str, list[float]] = {}
        self.t_window, self.n_window = time.time(), 0
        self.file = run.out / "metrics.jsonl" if run.out is not None and run.rank == 0 else None
        if self.file is not None and self.file.exists():  # drop lines past the resume point
            keep = [ln for ln in self.file.read_text().splitlines()
                    if ln and json.loads(ln).get("step", 0) <= run.state["step"]]
            self.file.write_text("".join(ln + "\n" for ln in keep))
        self.bar = None
        if progress and run.rank == 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=run.state["total_steps"], initial=run.state["step"], desc="pretrain",
                            dynamic_ncols=True)

    def record(self, parts: dict[str, float], lr: float, dt: float) -> None:
        run, st = self.run, self.run.state
        for k, v in parts.items():
            self.window.setdefault(k, []).append(v)
        self.n_window += run.tc.batch_size * run.tc.grad_accum * run.world
        st["elapsed"] += dt
        if st["step"] % run.tc.log_every == 0 or st["step"] == 1:
            now = time.time()
            m = {k: _mean(v) for k, v in self.window.items()}
            m.update(step=st["step"], epoch=st["epoch"], lr=lr, samples_per_s=self.n_window / max(now - self.t_window,
                     1e-9), time=round(run.wall(), 2))
            if run.amp == "fp16":
                m["scale"] = run.scaler.get_scale()
            self.history.append(m)
            self.write(m)
            if self.bar is not None:
                self.bar.set_postfix(loss=f"{m['loss']:.3f}", rec_a=f"{m['loss_rec_a']:.3f}",
                                     rec_v=f"{m['loss_rec_v']:.3f}", c_acc=f"{m['c_acc']:.2f}",
                                     sps=f"{m['samples_per_s']:.0f}", refresh=False)
            if self.on_step is not None and run.rank == 0:
                self.on_step(st["step"], m)
            self.window, self.t_window, self.n_window = {}, now, 0
        if self.bar is not None:
            self.bar.update(1)

    def write(self, m: dict[str, Any]) -> None:
        if self.file is not None:
            with open(self.file, "a") as f:
                f.write(json.dumps(m) + "\n")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def pretrain(
    config: CAVMAEConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    out_dir: str | Path | None = None,
    resume: bool = False,
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
    progress: bool = True,
    model: CAVMAE | None = None,
    start_time: float | None = None,
    stop_after: int | None = None,
    eval_dataset: Dataset | None = None,
) -> PretrainResult:
    """Pretrain a CAV-MAE on ``dataset`` (items: dicts with ``audio`` (T, F) and ``video`` (3, H, W)).

    out_dir: run directory for config.json, checkpoint.pt and metrics.jsonl (None: keep everything in memory).
    resume: continue from ``out_dir/checkpoint.pt`` when it exists; a run that has already reached its limit
    (steps, epochs or minutes, counted over every call) is left unchanged and ``stopped="already_finished"``.
    on_step(step, metrics): called every ``log_every`` steps with the averaged metrics (for live plots).
    model: start from these weights instead of a fresh init. start_time: ``time.time()`` the
    ``max_minutes`` budget counts from (default: now). stop_after: end this call after that many optimiser
    steps without a final checkpoint (simulates a kill; for tests). eval_dataset: validate at every epoch end
    (:func:`cavmae_lite.validation.after_epoch`: metrics.jsonl line, best.pt; ``tc.keep_epochs``: epoch_<E>.pt).
    """
    tc = train_config
    start_time = time.time() if start_time is None else start_time
    overrides = {k: getattr(tc, k) for k in ("mae_weight", "contrast_weight", "contrast_temperature",
                                             "contrast_negatives", "bidirectional_contrast") if getattr(tc, k) is not None}
    run = _open_run(config.replace(**overrides), tc, dataset, out_dir, resume, model, start_time)
    if eval_dataset is not None:
        eval_batch_size(len(eval_dataset), run.config, tc, run.world)  # too small a set fails now, not at epoch end
    done = _limit_reached(run)
    if done:
        if run.rank == 0 and progress:
            print(f"{run.ckpt_path} already reached its limit ({done}) at step {run.state['step']}: nothing to do "
                  f"(raise --max-steps, --epochs or --max-minutes to train on)")
        return PretrainResult(run.model, [], run.state["step"], run.out, "already_finished", run.amp)
    if resume and run.rank == 0 and progress and run.state["step"]:
        print(f"resumed from {run.ckpt_path} at step {run.state['step']}")
    log = _Logger(run, on_step, progress)
    run.model.train()
    stopped, steps_this_call, bad_run, validation = "", 0, 0, []
    while not stopped:
        batches = _epoch_batches(run, dataset)
        while not stopped:
            lr = _set_lr(run)
            t0 = time.time()
            parts, bad_run = _optimizer_step(run, batches, bad_run)
            steps_this_call += 1
            log.record(parts, lr, time.time() - t0)
            end_of_epoch = run.state["batch"] >= run.steps_per_epoch * tc.grad_accum
            if end_of_epoch:
                run.state["epoch"] += 1
                run.state["batch"] = 0
            stopped = "stop_after" if stop_after is not None and steps_this_call >= stop_after else _limit_reached(run)
            if stopped and stopped != "stop_after":
                run.state["stopped"] = stopped
            if end_of_epoch and (eval_dataset is not None or tc.keep_epochs):  # validate, then save last / best
                validation.append(after_epoch(run, eval_dataset, lambda: _save(run), log.write))
            elif run.state["step"] % tc.checkpoint_every == 0 or stopped not in ("", "stop_after"):
                _save(run)
            if end_of_epoch:
                break  # a new epoch: new sampler order
        del batches
    log.close()
    return PretrainResult(run.model, log.history, run.state["step"], run.out, stopped, run.amp,
                          [v for v in validation if v is not None])


__all__ = ["CHECKPOINT_NAME", "PretrainResult", "TrainingDiverged", "auto_threads", "build_optimizer", "load_pretrained", "lr_factor",
           "pretrain", "resolve_device", "setup_distributed"]
