"""Retrieval time for N x N (default 10,000 x 10,000): cosine similarity + every R@k / rank statistic.

    python benchmarks/bench_retrieval.py [--n 10000] [--dim 768] [--device cpu|cuda] [--repeats 5]
                                         [--dtype float32|float16|bfloat16] [--threads T]

Prints the median time of (a) the similarity matmul, (b) ``retrieval_metrics`` on the (N, N) matrix (in
``--dtype``), (c) both, and the 1-minute load average before and after: on a shared machine a busy neighbour
shows there, not in the median. ``--threads`` calls ``torch.set_num_threads`` first (default: torch's own).
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
from cavmae_lite.evaluate import retrieval_metrics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"])
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(args.n, args.dim, generator=g), dim=1).to(dev)
    v = torch.nn.functional.normalize(a + 0.5 * torch.randn(args.n, args.dim, generator=g).to(dev), dim=1)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    t_sim, t_met = [], []
    for _ in range(args.repeats):
        sync()
        t0 = time.perf_counter()
        sim = a @ v.T
        sync()
        t1 = time.perf_counter()
        sim = sim.to(getattr(torch, args.dtype))  # (a no-op for float32): not timed
        sync()
        t_cast = time.perf_counter() - t1
        m = retrieval_metrics(sim)
        sync()
        t2 = time.perf_counter()
        t_sim.append(t1 - t0)
        t_met.append(t2 - t1 - t_cast)
    ms, mm = statistics.median(t_sim), statistics.median(t_met)
    print(f"device {dev}, threads {torch.get_num_threads()}, N={args.n}, D={args.dim}, metrics on {args.dtype}")
    print(f"similarity matmul {ms:.2f} s, retrieval_metrics {mm:.3f} s (min {min(t_met):.3f}), total {ms + mm:.2f} s "
          f"(median of {args.repeats})")
    print(f"load average (1 min) {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs")
    print(f"sanity: a2v R@1 {m['a2v']['r1']:.3f}, v2a R@1 {m['v2a']['r1']:.3f}")


if __name__ == "__main__":
    main()
