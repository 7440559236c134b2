"""How much does the tiny preset learn in a given CPU-time budget? Retrieval and reconstruction after 2, 5, 10 minutes.

    python benchmarks/bench_learning.py                         # budgets 2 5 10 min, the tiny preset as shipped
    python benchmarks/bench_learning.py --minutes 3 --repeats 2 --train amp=none --model num_mel_bins=128
    python benchmarks/bench_learning.py --minutes 10 --json runs/bench_learning.json
    python benchmarks/bench_learning.py --steps 400 --threads 1 --train mask_ratio_a=0.3 mask_ratio_v=0.3   # load-independent A/B

For each budget the script pretrains ``TrainConfig.preset("tiny")`` (with ``--train`` / ``--model`` overrides) on the
train split of the default data, then measures on the 600 test pairs:

* retrieval (``evaluate.retrieval``): R@1, R@5 and median rank, audio->video and video->audio;
* the masked-patch reconstruction loss per modality at 75 % masking with fixed noise, on normalised targets (the
  training loss) next to the trivial baseline of predicting 0, and in input units (predictions un-normalised with
  the statistics of the *visible* patches only) next to predicting the mean of the clip's visible patches;
* steps, samples/s, threads and precision used.

With ``--repeats R`` every budget is trained R times (seeds 0..R-1) and the median of each number is printed: the
machine is shared, and a busy other core changes how many steps fit in a budget. The load average at the start of
each run is printed so that a busy machine is visible in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cavmae_lite.config import CAVMAEConfig, TrainConfig
from cavmae_lite.evaluate import reconstruction_report, retrieval


def parse_sets(items: list[str]) -> dict:
    out = {}
    for it in items:
        k, _, v = it.partition("=")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def run_once(minutes: float | None, seed: int, data_dir: Path, model_sets: dict, train_sets: dict,
             steps: int | None = None) -> dict:
    """One training run for a CPU-minute budget, or for a fixed number of steps when ``steps`` is given."""
    from cavmae_lite.data import load_dataset
    from cavmae_lite.train import pretrain

    config = CAVMAEConfig.tiny(**model_sets)
    budget = {"max_steps": steps} if steps else {"max_minutes": minutes}
    tc = TrainConfig.preset("tiny", seed=seed, **budget, **train_sets)
    train = load_dataset(data_dir, config=config, split="train", train=True, seed=seed)
    test = load_dataset(data_dir, config=config, split="test")
    load = os.getloadavg()[0]
    t0 = time.time()
    result = pretrain(config, tc, train, out_dir=None, progress=False)
    wall = time.time() - t0
    model = result.model.eval()
    r = retrieval(model, test, device="cpu")
    rec = reconstruction_report(model, test)
    last = result.history[-1] if result.history else {}
    return {"minutes": round(wall / 60, 2), "seed": seed, "load_avg": round(load, 2), "steps": result.step,
            "steps_per_s": result.step / wall, "samples_per_s": result.step * tc.batch_size / wall,
            "threads": torch.get_num_threads(), "amp": result.amp,
            "a2v_r1": r["a2v"]["r1"], "v2a_r1": r["v2a"]["r1"], "a2v_r5": r["a2v"]["r5"], "v2a_r5": r["v2a"]["r5"],
            "a2v_median": r["a2v"]["median_rank"], "v2a_median": r["v2a"]["median_rank"], "n": r["n"],
            "train_c_acc": last.get("c_acc"), **rec}


COLUMNS = [("minutes", "{:g}"), ("steps", "{:.0f}"), ("samples_per_s", "{:.0f}"), ("threads", "{}"), ("amp", "{}"),
           ("a2v_r1", "{:.3f}"), ("v2a_r1", "{:.3f}"), ("a2v_r5", "{:.3f}"), ("v2a_r5", "{:.3f}"),
           ("a2v_median", "{:.1f}"), ("v2a_median", "{:.1f}"),
           ("rec_a", "{:.3f}"), ("rec_a_zero", "{:.3f}"), ("rec_v", "{:.3f}"), ("rec_v_zero", "{:.3f}"),
           ("mse_a", "{:.3f}"), ("mse_a_mean", "{:.3f}"), ("mse_v", "{:.3f}"), ("mse_v_mean", "{:.3f}"),
           ("load_avg", "{:.2f}")]


def median_row(runs: list[dict]) -> dict:
    row = {}
    for k, _ in COLUMNS:
        vals = [r[k] for r in runs]
        row[k] = statistics.median(vals) if isinstance(vals[0], (int, float)) else vals[0]
    return row


def print_table(rows: list[dict]) -> None:
    print("| " + " | ".join(k for k, _ in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(fmt.format(row[k]) for k, fmt in COLUMNS) + " |")
    print("rec_*: masked-patch MSE on normalised targets (training loss), *_zero: predicting 0; mse_*: input units,"
          " predictions un-normalised with visible-patch statistics, *_mean: predicting the clip's mean visible patch."
          " Medians over repeats.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", default=[2, 5, 10], help="CPU-minute budgets (default 2 5 10)")
    p.add_argument("--steps", type=int, nargs="+", help="fixed step budgets instead of --minutes: a comparison of "
                   "recipes that does not depend on how busy the machine is (minutes then shows the wall time)")
    p.add_argument("--threads", type=int, help="torch threads (default: every core)")
    p.add_argument("--repeats", type=int, default=1, help="runs per budget (seeds 0..R-1); the median is printed")
    p.add_argument("--data", help="dataset folder (default: the default synthetic data, built if missing)")
    p.add_argument("--model", nargs="*", default=[], metavar="K=V", help="CAVMAEConfig.tiny() overrides")
    p.add_argument("--train", nargs="*", default=[], metavar="K=V", help="TrainConfig.preset('tiny') overrides")
    p.add_argument("--json", help="also write every run and the medians to this file")
    args = p.parse_args(argv)
    from cavmae_lite.data import ensure_default_dataset

    data_dir = ensure_default_dataset(args.data)
    model_sets, train_sets = parse_sets(args.model), parse_sets(args.train)
    if args.threads:  # training (TrainConfig.threads) and evaluation
        train_sets["threads"] = args.threads
        torch.set_num_threads(args.threads)
    budgets = [(None, s) for s in args.steps] if args.steps else [(m, None) for m in args.minutes]
    runs, rows = [], []
    for minutes, steps in budgets:
        these = []
        for seed in range(args.repeats):
            r = run_once(minutes, seed, data_dir, model_sets, train_sets, steps)
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}), flush=True)
            these.append(r)
        runs += these
        rows.append(median_row(these))
    print_table(rows)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"model": model_sets, "train": train_sets, "runs": runs,
                                               "medians": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
