"""Where a run executes: device, CPU threads, mixed precision, torch.distributed, and the RNG / data-order state
that exact resume needs. Nothing here knows about the model.

The one home of the device and precision choice for every caller (training, fine-tuning, evaluation, the CLI):

    device = resolve_device(None)            # "auto" / None -> cuda if available else cpu; "cuda:1", torch.device
    amp = resolve_amp("auto", device)        # -> "bf16" | "fp16" | "none" (auto: bf16 where it is native)
    with autocast(amp, device): ...          # torch.autocast for bf16 / fp16, nothing for none
"""

from __future__ import annotations

import contextlib
import os
import random
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from .config import AMP_MODES

# ---------------------------------------------------------------------------------------------------------
# Devices, threads, precision
# ---------------------------------------------------------------------------------------------------------


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The device to run on: ``None`` or ``"auto"`` -> CUDA when available, else CPU; anything else as
    :class:`torch.device` reads it (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``).

    ValueError for a CUDA device that this machine does not have (no CUDA, or an index past the last GPU)."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(name)!r} requested but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(name)!r} requested but this machine has {torch.cuda.device_count()} GPU(s)")
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


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 natively (AVX512-BF16 or AMX). Without it bf16 is emulated and slower
    than fp32, so ``amp="auto"`` stays in fp32 there."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # private helpers: absent in some builds
        return False


def resolve_amp(amp: str | None, device: torch.device | str) -> str:
    """The precision to run in: ``"bf16"``, ``"fp16"`` or ``"none"`` (``None`` is ``"none"``).

    'auto' -> bf16 on a CUDA device that supports it and on a CPU with native bf16 (measured on the 2-core
    AVX512-BF16 machine: a tiny-config step in 0.19 s instead of 0.42 s), else none. fp16 on CPU works but is slow.
    ValueError for anything that is not one of ``AMP_MODES``."""
    amp = "none" if amp is None else amp
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if amp == "auto":
        device = torch.device(device)
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "none"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "none"
    return amp


def autocast(amp: str | None, device: torch.device | str):
    """Context manager for a forward pass in precision ``amp`` (any of ``AMP_MODES``, resolved as
    :func:`resolve_amp` does) on ``device``: ``torch.autocast`` to bf16 / fp16, or no autocast at all for none."""
    device = torch.device(device)
    amp = resolve_amp(amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


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


__all__ = ["ResumableSampler", "auto_threads", "autocast", "cpu_has_native_bf16", "get_rng_state", "resolve_amp",
           "resolve_device", "set_rng_state", "setup_distributed"]
