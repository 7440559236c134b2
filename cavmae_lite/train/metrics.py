"""Where the training curves go: metrics.jsonl (always, with a run directory), the tqdm bar, ``on_step`` and,
with ``tensorboard=True``, RUN_DIR/tensorboard: the same scalars against the optimiser step, ``train/<name>``
for step lines (``train/loss``, ``train/lr``, ...) and ``val/<name>`` for validation lines (``val/loss`` is
metrics.jsonl's ``val_loss``, ``val/epoch`` its ``epoch``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .run import Run

TENSORBOARD_DIR = "tensorboard"
TENSORBOARD_HINT = "pip install tensorboard  (or: pip install cavmae-lite[tensorboard])"


def require_tensorboard() -> type:
    """torch's ``SummaryWriter`` class; ImportError naming the fix when the tensorboard package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ImportError(f"TensorBoard logging needs the tensorboard package: {TENSORBOARD_HINT} ({e})") from e
    return SummaryWriter


def _mean(xs: list[float]) -> float:
    return sum(xs) / max(len(xs), 1)


class MetricsLog:
    """Averages step metrics over ``log_every`` steps; writes metrics.jsonl, TensorBoard, the bar and ``on_step``.

    On resume the lines of metrics.jsonl past the checkpoint's step are dropped (and TensorBoard events past it
    are purged), so the files read as if the run had never been interrupted."""

    def __init__(self, run: Run, on_step: Callable[[int, dict[str, Any]], None] | None, progress: bool,
                 tensorboard: bool = False):
        self.run, self.on_step, self.history = run, on_step, []
        self.window: dict[str, list[float]] = {}
        self.t_window, self.n_window = time.time(), 0
        main = run.out is not None and run.rank == 0
        self.file = run.out / "metrics.jsonl" if main else None
        if self.file is not None and self.file.exists():  # drop lines past the resume point
            keep = [ln for ln in self.file.read_text().splitlines()
                    if ln and json.loads(ln).get("step", 0) <= run.state["step"]]
            self.file.write_text("".join(ln + "\n" for ln in keep))
        self.writer = None
        if tensorboard and main:
            step = run.state["step"]
            self.writer = require_tensorboard()(str(Path(run.out) / TENSORBOARD_DIR),
                                                purge_step=step + 1 if step else None)
        self.bar = None
        if progress and run.rank == 0:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=run.state["total_steps"], initial=run.state["step"], desc="pretrain",
                            dynamic_ncols=True)

    def record(self, parts: dict[str, float], lr: float, dt: float) -> None:
        """One optimiser step's metrics (``dt``: its seconds); every ``log_every`` steps, the averaged line."""
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
        """One line of metrics (a step line, or a validation line with ``val_*`` keys) to every sink."""
        if self.file is not None:
            with open(self.file, "a") as f:
                f.write(json.dumps(m) + "\n")
        if self.writer is not None:
            section = "val" if any(k.startswith("val_") for k in m) else "train"
            for k, v in m.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.writer.add_scalar(f"{section}/{k.removeprefix('val_')}", v, m["step"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


__all__ = ["TENSORBOARD_DIR", "MetricsLog", "require_tensorboard"]
