"""Training-step time of the ten-minute recipe alone and beside another 2-thread job, per OpenMP wait policy.

    python benchmarks/bench_contention.py                    # 25 steps each: quiet and loaded x default and PASSIVE
    python benchmarks/bench_contention.py --steps 40 --threads 2 1
    python benchmarks/bench_contention.py --rival train --policies default PASSIVE GOMP_SPINCOUNT=10000

PyTorch's CPU threads come from libgomp, whose idle threads spin (``OMP_WAIT_POLICY`` ACTIVE-like by default) for a
while before they sleep. On a 2-core machine shared with another 2-thread job, spinning threads take the cores the
others need. Each configuration runs in a fresh Python process (the policy is read when torch loads), after 5
warm-up steps; the competitor (``--rival``) runs in its own process with libgomp's default policy: a 2-thread fp32
matmul loop (``matmul``) or another 2-thread training run of the same recipe (``train``). A policy is ``default``
(libgomp's own), ``PASSIVE`` / ``ACTIVE`` (``OMP_WAIT_POLICY``) or ``GOMP_SPINCOUNT=N``.
Prints seconds per step (median of the logged intervals) and the load average at the start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEP = r"""
import sys, time, torch
sys.path.insert(0, {repo!r})
from cavmae_lite.config import CAVMAEConfig, TrainConfig
from cavmae_lite.data import load_dataset
from cavmae_lite.train import pretrain
cfg = CAVMAEConfig.tiny()
tc = TrainConfig.preset("tiny", max_steps={steps}, threads={threads}, log_every=1, warmup_steps=5)
ds = load_dataset({data!r}, config=cfg, split="train", train=True, seed=0)
h = pretrain(cfg, tc, ds, progress=False).history
t = [b["time"] - a["time"] for a, b in zip(h[5:], h[6:])]
print(sorted(t)[len(t) // 2])
"""
MATMUL = "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"


def policy_env(policy: str) -> dict[str, str]:
    """The environment of a child process running under ``policy`` (see the module doc)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env["CAVMAE_OMP_WAIT_POLICY"] = "default"  # cavmae_lite then leaves libgomp's settings alone
    if policy.startswith("GOMP_SPINCOUNT="):
        env["GOMP_SPINCOUNT"] = policy.split("=", 1)[1]
    elif policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    return env


def one(steps: int, threads: int, policy: str, data: str) -> float:
    env = policy_env(policy)
    code = STEP.format(repo=str(REPO), steps=steps, threads=threads, data=data)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--data", default=str(REPO / "data" / "synthetic"))
    p.add_argument("--rival", choices=["matmul", "train"], default="matmul")
    p.add_argument("--policies", nargs="+", default=["default", "PASSIVE"])
    p.add_argument("--only", choices=["quiet", "loaded"], help="run only the quiet or only the loaded rows")
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print("| machine | threads | libgomp policy | s / step |\n|---|---|---|---|")
    for loaded in [x for x in (False, True) if args.only != ("loaded" if x else "quiet")]:
        rival_code = MATMUL if args.rival == "matmul" else STEP.format(repo=str(REPO), steps=10**6, threads=2,
                                                                        data=args.data)
        rival = subprocess.Popen([sys.executable, "-c", rival_code], env=policy_env("default")) if loaded else None
        try:
            if rival:
                time.sleep(2 if args.rival == "matmul" else 15)  # a training rival loads its data first
            for threads in args.threads:
                for policy in args.policies:
                    s = one(args.steps, threads, policy, args.data)
                    where = f"beside a 2-thread {args.rival} job" if loaded else "quiet"
                    print(f"| {where} | {threads} | {policy} "
                          f"| {s:.3f} |", flush=True)
        finally:
            if rival:
                rival.kill()
                rival.wait()


if __name__ == "__main__":
    main()
