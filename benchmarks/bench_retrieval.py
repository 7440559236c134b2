"""Retrieval time for N x N (default 10,000 x 10,000): cosine similarity + every R@k / rank statistic.

    python benchmarks/bench_retrieval.py [--n 10000] [--dim 768] [--device cpu|cuda] [--repeats 3]

Prints the median time of (a) the similarity matmul, (b) ``retrieval_metrics`` on the (N, N) matrix, (c) both.
"""

from __future__ import annotations

import argparse
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
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
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
        m = retrieval_metrics(sim)
        sync()
        t2 = time.perf_counter()
        t_sim.append(t1 - t0)
        t_met.append(t2 - t1)
    ms, mm = statistics.median(t_sim), statistics.median(t_met)
    print(f"device {dev}, threads {torch.get_num_threads()}, N={args.n}, D={args.dim}")
    print(f"similarity matmul {ms:.2f} s, retrieval_metrics {mm:.2f} s, total {ms + mm:.2f} s "
          f"(median of {args.repeats})")
    print(f"sanity: a2v R@1 {m['a2v']['r1']:.3f}, v2a R@1 {m['v2a']['r1']:.3f}")


if __name__ == "__main__":
    main()
