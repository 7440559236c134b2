"""Where a training step's time goes: the real loop's step (``train.loop.train_step`` on ``open_run``) under
``torch.profiler``, its CPU time grouped by kind of work, plus the time spent waiting for the next batch.

    python benchmarks/profile_step.py                                   # the ten-minute recipe, 2 threads
    python benchmarks/profile_step.py --train mask_ratio_a=0.75 mask_ratio_v=0.75 --model patch_size=8 decoder_depth=1

Prints one table: milliseconds per step and share for matmuls (linear, bmm, addmm), attention's softmax, layer
norms, GELU, other elementwise work, the optimiser, the data loader, and the rest; then the 12 most expensive
operators. Medians of ``--steps`` profiled steps after ``--warmup`` unprofiled ones. Say when the machine was
busy: the load average at the start is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learning import parse_sets

from cavmae_lite.config import CAVMAEConfig, TrainConfig

KINDS = [("matmul", ("mm", "matmul", "linear", "bmm", "addmm", "baddbmm")), ("softmax", ("softmax",)),
         ("layer norm", ("layer",)), ("gelu", ("gelu",)), ("optimiser", ("adamw", "adam", "foreach")),
         ("copy / cast", ("copy", "to", "contiguous", "clone")),
         ("cat / gather / index", ("cat", "stack", "gather", "index", "scatter", "select", "slice")),
         ("elementwise", ("add", "mul", "sub", "div", "pow", "sum", "mean", "sqrt", "exp", "where", "var", "rsub",
                          "neg", "norm", "clamp", "fill", "zero", "ones", "zeros", "empty", "abs", "max", "min"))]


def kind_of(name: str) -> str:
    """aten::native_layer_norm_backward -> "layer norm": a kind whose key is one of the op name's words."""
    words = set(name.split("::")[-1].lower().strip("_").split("_"))
    for kind, keys in KINDS:
        if words & set(keys):
            return kind
    return "other"


def profile(config: CAVMAEConfig, tc: TrainConfig, data: Path, steps: int, warmup: int) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from cavmae_lite.data import load_dataset
    from cavmae_lite.train.loop import train_step
    from cavmae_lite.train.run import epoch_batches, open_run

    train = load_dataset(data, config=config, split="train", train=True, seed=0)
    run = open_run(config, tc, train, None, resume=False, model=None, start_time=time.time())
    batches = epoch_batches(run, train)
    waits, totals = [], []

    def timed_batches():  # the loader's share: time spent waiting for the next batch
        while True:
            t = time.perf_counter()
            b = next(batches)
            waits.append(time.perf_counter() - t)
            yield b

    it = timed_batches()
    for _ in range(warmup):
        train_step(run, it)
    waits.clear()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            t = time.perf_counter()
            train_step(run, it)
            totals.append(time.perf_counter() - t)
    by_kind: dict[str, float] = {}
    ops = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    for e in ops:
        by_kind[kind_of(e.key)] = by_kind.get(kind_of(e.key), 0.0) + e.self_cpu_time_total / 1e3 / steps
    step_ms = statistics.median(totals) * 1e3
    by_kind["data loader"] = statistics.median(waits) * 1e3
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:12]
    return {"step_ms": step_ms, "amp": run.amp, "by_kind": by_kind,
            "top": [(e.key, e.self_cpu_time_total / 1e3 / steps, e.count // steps) for e in top]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--data", help="dataset folder (default: the default synthetic data)")
    p.add_argument("--model", nargs="*", default=[], metavar="K=V", help="CAVMAEConfig.tiny() overrides")
    p.add_argument("--train", nargs="*", default=[], metavar="K=V", help="TrainConfig.preset('tiny') overrides")
    args = p.parse_args(argv)
    from cavmae_lite.data import ensure_default_dataset

    torch.set_num_threads(args.threads)
    config = CAVMAEConfig.tiny(**parse_sets(args.model))
    tc = TrainConfig.preset("tiny", threads=args.threads, **{"max_steps": 1000, **parse_sets(args.train)})
    load = os.getloadavg()[0]
    r = profile(config, tc, ensure_default_dataset(args.data), args.steps, args.warmup)
    print(f"step {r['step_ms']:.0f} ms (median of {args.steps}), batch {tc.batch_size}, mask {tc.mask_ratio_a} / "
          f"{tc.mask_ratio_v}, {args.threads} threads, {r['amp']}, load average at start {load:.2f}")
    print("| work | ms / step | share of the step |\n|---|---|---|")
    for kind, ms in sorted(r["by_kind"].items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {ms:.0f} | {100 * ms / r['step_ms']:.0f} % |")
    print("\n| operator | ms / step | calls / step |\n|---|---|---|")
    for name, ms, calls in r["top"]:
        print(f"| {name} | {ms:.1f} | {calls} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
