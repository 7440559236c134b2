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
import math
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
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint, strip_module_prefix
from .config import CAVMAEConfig, TrainConfig
from .model import CAVMAE

CHECKPOINT_NAME = "checkpoint.pt"


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) became NaN / Inf; no checkpoint was written for that step."""


# ---------------------------------------------------------------------------------------------------------
# Devices, precision, optimiser, schedule
# ---------------------------------------------------------------------------------------------------------


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def auto_threads() -> int:
    """Idle CPU cores: cpu_count minus the 1-minute load average, at least 1. On a shared machine OpenMP threads
    that compete with other processes spin on barriers and a step gets several times slower than with fewer."""
    n = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        busy = 0.0
    return max(1, min(n, round(n - busy)))


def resolve_amp(amp: str, device: torch.device) -> str:
    """'auto' -> bf16 on a CUDA device that supports it, else none. fp16 on CPU works but is slow."""
    if amp == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    return amp


def autocast(amp: str, device: torch.device):
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def build_optimizer(model: nn.Module, tc: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with decay on weight matrices only (fused on CUDA), or the official Adam with L2 on everything."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fused = {"fused": True} if device.type == "cuda" else {}
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


# ---------------------------------------------------------------------------------------------------------
# Data order and RNG state
# ---------------------------------------------------------------------------------------------------------


class ResumableSampler(DistributedSampler):
    """A ``DistributedSampler`` (shuffled by seed + epoch) that can start part-way into an epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, start: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = start

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


def get_rng_state() -> dict[str, Any]:
    """Every RNG the loop touches, as tensors and plain containers (loadable with ``weights_only``)."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "gauss": float(gauss)},
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed(device_name: str = "auto") -> tuple[int, int, torch.device]:
    """Initialise torch.distributed from torchrun's environment (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world > 1 and not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    rank, world = _dist_info()
    return rank, world, device


# ---------------------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------------------


@dataclass
class PretrainResult:
    model: CAVMAE
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    out_dir: Path | None = None
    stopped: str = ""


def _all_finite(flag: bool, device: torch.device, world: int) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([0.0 if flag else 1.0], device=device)
    dist.all_reduce(t)
    return t.item() == 0


def _mean(xs: list[float]) -> float:
    return sum(xs) / max(len(xs), 1)


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
) -> PretrainResult:
    """Pretrain a CAV-MAE on ``dataset`` (items: dicts with ``audio`` (T, F) and ``video`` (3, H, W)).

    out_dir: run directory for config.json, checkpoint.pt and metrics.jsonl (None: keep everything in memory).
    resume: continue from ``out_dir/checkpoint.pt`` when it exists.
    on_step(step, metrics): called every ``log_every`` steps with the averaged metrics (for live plots).
    model: start from these weights instead of a fresh init. start_time: ``time.time()`` the
    ``max_minutes`` budget counts from (default: now). stop_after: end this call after that many optimiser
    steps without a final checkpoint (simulates a kill; for tests).
    """
    tc = train_config
    start_time = time.time() if start_time is None else start_time
    overrides = {k: getattr(tc, k) for k in ("mae_weight", "contrast_weight", "contrast_negatives", "bidirectional_contrast")
                 if getattr(tc, k) is not None}
    config = config.replace(**overrides)
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
    out = Path(out_dir) if out_dir is not None else None
    ckpt_path = out / CHECKPOINT_NAME if out is not None else None

    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed % 2**32)
    random.seed(tc.seed)
    model = (model if model is not None else CAVMAE(config)).to(device)
    model.config = config
    optimizer = build_optimizer(model, tc, device)
    scaler = torch.amp.GradScaler(device.type, enabled=(amp == "fp16"))
    state = {"step": 0, "epoch": 0, "batch": 0, "total_steps": None, "elapsed": 0.0}

    if resume and ckpt_path is not None and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        state.update(ck["state"])
        state.pop("warm_end", None)  # a time-budget run restarts its cosine over the new budget
        set_rng_state(ck["rng"][rank] if rank < len(ck["rng"]) else ck["rng"][0])
        if rank == 0 and progress:
            print(f"resumed from {ckpt_path} at step {state['step']}")
    elif out is not None and rank == 0:
        if ckpt_path.is_file():
            raise FileExistsError(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps({"model": config.to_dict(), "train": tc.to_dict(),
                                                     "world_size": world}, indent=2) + "\n")

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

    samples_per_epoch = len(dataset) // world
    micro_per_epoch = samples_per_epoch // tc.batch_size
    steps_per_epoch = micro_per_epoch // tc.grad_accum
    if steps_per_epoch == 0:
        raise ValueError(f"dataset of {len(dataset)} clips is too small for batch {tc.batch_size} x grad_accum "
                         f"{tc.grad_accum} x {world} processes")
    limits = [x for x in (tc.max_steps, tc.epochs and tc.epochs * steps_per_epoch) if x]
    if state["total_steps"] is None and limits:
        state["total_steps"] = min(limits)
    budget_s = tc.max_minutes * 60 if tc.max_minutes is not None else None

    metrics_file = out / "metrics.jsonl" if out is not None and rank == 0 else None
    if metrics_file is not None and metrics_file.exists():  # drop lines past the resume point
        keep = [ln for ln in metrics_file.read_text().splitlines() if ln and json.loads(ln).get("step", 0)
                <= state["step"]]
        metrics_file.write_text("".join(ln + "\n" for ln in keep))

    history: list[dict[str, Any]] = []
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=state["total_steps"], initial=state["step"], desc="pretrain", dynamic_ncols=True)

    def save() -> None:
        for p in model.parameters():
            if not torch.isfinite(p).all():
                raise TrainingDiverged(f"refusing to write a checkpoint with non-finite weights at step {state['step']}")
        rngs = [get_rng_state()]
        if world > 1:
            rngs = [None] * world
            dist.all_gather_object(rngs, get_rng_state())
        if ckpt_path is not None and rank == 0:
            save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scaler": scaler.state_dict(), "scheduler": {"name": tc.schedule,
                             "steps_per_epoch": steps_per_epoch, "total_steps": state["total_steps"]},
                             "state": dict(state), "rng": rngs, "model_config": config.to_dict(),
                             "train_config": tc.to_dict()}, ckpt_path)

    model.train()
    window: dict[str, list[float]] = {}
    t_window, n_window, bad_run, stopped, steps_this_call = time.time(), 0, 0, "", 0
    while not stopped:
        if tc.epochs is not None and state["epoch"] >= tc.epochs:
            stopped = "epochs"
            break
        sampler = ResumableSampler(dataset, world, rank, tc.seed, start=state["batch"] * tc.batch_size)
        sampler.set_epoch(state["epoch"])
        gen = torch.Generator().manual_seed(tc.seed * 1_000_003 + state["epoch"] * 7919 + state["batch"])
        loader = DataLoader(dataset, batch_size=tc.batch_size, sampler=sampler, drop_last=True,
                            num_workers=tc.num_workers, generator=gen, pin_memory=device.type == "cuda",
                            persistent_workers=False)
        it = iter(loader)
        while state["batch"] + tc.grad_accum <= steps_per_epoch * tc.grad_accum:
            s = state["step"]
            progress = None
            if state["total_steps"] is None and budget_s is not None:  # time-based cosine horizon
                used = time.time() - start_time
                if s == tc.warmup_steps or "warm_end" not in state:
                    state["warm_end"] = used
                progress = (used - state["warm_end"]) / max(budget_s - state["warm_end"], 1e-9)
            lr = tc.lr * lr_factor(tc, s, state["total_steps"], steps_per_epoch, progress)
            for g in optimizer.param_groups:
                g["lr"] = lr
            t0 = time.time()
            parts: dict[str, float] = {}
            finite = True
            for micro in range(tc.grad_accum):
                batch = next(it)
                audio = batch["audio"].to(device, non_blocking=True)
                video = batch["video"].to(device, non_blocking=True)
                sync = world == 1 or micro == tc.grad_accum - 1
                ctx = contextlib.nullcontext() if sync else ddp_model.no_sync()
                with ctx:
                    with autocast(amp, device):
                        o = step_fn(audio, video, tc.mask_ratio_a, tc.mask_ratio_v, mask_mode=tc.mask_mode)
                    loss = o.loss.float()
                    finite = _all_finite(bool(torch.isfinite(loss)), device, world) and finite
                    if finite:
                        scaler.scale(loss / tc.grad_accum).backward()
                for k in ("loss", "loss_rec", "loss_rec_a", "loss_rec_v", "loss_c", "c_acc"):
                    parts[k] = parts.get(k, 0.0) + float(getattr(o, k).detach()) / tc.grad_accum
            state["batch"] += tc.grad_accum
            if finite:
                scaler.unscale_(optimizer)
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_grad or float("inf"))
                finite = bool(torch.isfinite(gnorm)) or amp == "fp16"  # fp16: the scaler skips inf grads
                parts["grad_norm"] = float(gnorm)
            if not finite:
                optimizer.zero_grad(set_to_none=True)
                detail = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
                if amp != "fp16":
                    raise TrainingDiverged(
                        f"non-finite loss or gradient at step {s} ({detail}); stopped without writing a checkpoint"
                        f" for it. The last good checkpoint is {ckpt_path}. Try a lower --lr, --clip 1.0, or "
                        f"--amp none / bf16.")
                bad_run += 1
                scaler.update(scaler.get_scale() / 2)
                if bad_run > tc.max_bad_steps:
                    raise TrainingDiverged(f"{bad_run} consecutive non-finite fp16 losses up to step {s} ({detail})")
                parts["skipped"] = 1.0
            else:
                bad_run = 0
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            state["step"] = s + 1
            steps_this_call += 1
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.time() - t0
            for k, v in parts.items():
                window.setdefault(k, []).append(v)
            n_window += tc.batch_size * tc.grad_accum * world
            state["elapsed"] += dt

            now = time.time()
            if state["step"] % tc.log_every == 0 or state["step"] == 1:
                m = {k: _mean(v) for k, v in window.items()}
                m.update(step=state["step"], epoch=state["epoch"], lr=lr,
                         samples_per_s=n_window / max(now - t_window, 1e-9), time=round(now - start_time, 2))
                if amp == "fp16":
                    m["scale"] = scaler.get_scale()
                history.append(m)
                if metrics_file is not None:
                    with open(metrics_file, "a") as f:
                        f.write(json.dumps(m) + "\n")
                if bar is not None:
                    bar.set_postfix(loss=f"{m['loss']:.3f}", rec_a=f"{m['loss_rec_a']:.3f}",
                                    rec_v=f"{m['loss_rec_v']:.3f}", c_acc=f"{m['c_acc']:.2f}",
                                    sps=f"{m['samples_per_s']:.0f}", refresh=False)
                if on_step is not None and rank == 0:
                    on_step(state["step"], m)
                window, t_window, n_window = {}, now, 0
            if bar is not None:
                bar.update(1)
            if state["batch"] >= steps_per_epoch * tc.grad_accum:
                state["epoch"] += 1
                state["batch"] = 0
            if stop_after is not None and steps_this_call >= stop_after:
                stopped = "stop_after"
            elif tc.max_steps is not None and state["step"] >= tc.max_steps:
                stopped = "max_steps"
            elif budget_s is not None and now - start_time >= budget_s:
                stopped = "max_minutes"
            if state["step"] % tc.checkpoint_every == 0 or (stopped and stopped != "stop_after"):
                save()
            if stopped or state["batch"] == 0:
                break
        del it, loader
    if bar is not None:
        bar.close()
    if stopped == "epochs":
        save()
    return PretrainResult(model, history, state["step"], out, stopped)


# ---------------------------------------------------------------------------------------------------------
# Loading a trained model
# ---------------------------------------------------------------------------------------------------------


def _is_official(sd: dict[str, Any]) -> bool:
    return any(k.startswith(("module.blocks_a.", "blocks_a.", "module.patch_embed_a", "patch_embed_a")) for k in sd)


def load_pretrained(path: str | Path, config: CAVMAEConfig | None = None, map_location: str = "cpu") -> CAVMAE:
    """A CAVMAE from a run directory, one of our checkpoints, or an official CAV-MAE pretraining checkpoint."""
    from .checkpoints import load_strict

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {CHECKPOINT_NAME} in run directory {path.parent}")
    obj = load_checkpoint(path, map_location=map_location)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} does not hold a checkpoint dictionary")
    sd = obj.get("model", obj)
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: 'model' is not a state dict")
    if _is_official(sd):
        return CAVMAE.from_official(sd)
    if config is None:
        if "model_config" not in obj:
            raise CheckpointError(f"{path} holds a bare state dict without its config: pass config=CAVMAEConfig...")
        config = CAVMAEConfig.from_dict(obj["model_config"])
    model = CAVMAE(config)
    load_strict(model, strip_module_prefix(sd), str(path))
    return model.eval()


__all__ = ["PretrainResult", "TrainingDiverged", "build_optimizer", "load_pretrained",
           "lr_factor", "pretrain", "setup_distributed"]
