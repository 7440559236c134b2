"""The masking trade-off at this scale: training mask ratio against retrieval and against reconstruction at 75 %,
every ratio trained for the same CPU minutes (``bench_learning.run_once``: the tiny preset, its ratio overridden).

    python benchmarks/bench_masking.py --ratios 0.15 0.3 0.5 0.75 --minutes 10 --out runs/masking
    python benchmarks/bench_masking.py --from-json runs/tradeoff_*.json --out runs/masking   # plot finished runs

For each ratio: R@1 both ways on the 600 test pairs, and the masked-patch MSE at 75 % masking in input units
(predictions un-normalised with the visible patches' statistics) over the mean-visible-patch baseline, audio and
video (1.0 = no better than copying the clip's mean visible patch). Writes OUT/masking.json, OUT/masking.png and
prints a markdown table. One run per ratio: the steps that fit in the minutes depend on the machine's load
(printed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def variant_name(model_sets: dict) -> str:
    """"preset" for the tiny preset's model, else its overrides (e.g. "norm_pix_loss=False")."""
    from cavmae_lite.tutorial.recipes import variant_label

    return variant_label(model_sets)


def row_of(run: dict, ratio: float, model_sets: dict | None = None) -> dict:
    """The numbers the trade-off shows, from one ``bench_learning.run_once`` result."""
    return {"mask_ratio": ratio, "model": variant_name(model_sets or {}), "minutes": run["minutes"],
            "steps": run["steps"], "load_avg": run["load_avg"],
            "a2v_r1": run["a2v_r1"], "v2a_r1": run["v2a_r1"],
            "mse_ratio_a": run["mse_a"] / run["mse_a_mean"], "mse_ratio_v": run["mse_v"] / run["mse_v_mean"]}


def measure(ratios: list[float], minutes: float, data: str | None, model_sets: dict) -> list[dict]:
    from bench_learning import run_once

    from cavmae_lite.data import ensure_default_dataset

    data_dir = ensure_default_dataset(data)
    rows = []
    for r in ratios:
        run = run_once(minutes, 0, data_dir, model_sets, {"mask_ratio_a": r, "mask_ratio_v": r})
        rows.append(row_of(run, r, model_sets))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def from_json(paths: list[str], minutes: float = 10.0) -> list[dict]:
    """Rows from ``bench_learning.py --json`` files whose ``--train`` set one mask ratio for both modalities: their
    runs of a ``minutes`` budget (a file may hold several budgets, e.g. ``--minutes 2 5 10``)."""
    rows = []
    for path in paths:
        d = json.loads(Path(path).read_text())
        ra, rv = d["train"].get("mask_ratio_a"), d["train"].get("mask_ratio_v")
        if ra is None or ra != rv:
            raise ValueError(f"{path}: expected one --train mask_ratio_a = mask_ratio_v, got {ra} / {rv}")
        rows += [row_of(run, ra, d.get("model")) for run in d["runs"] if round(run["minutes"]) == round(minutes)]
    return sorted(rows, key=lambda r: (r["model"] != "preset", r["model"], r["mask_ratio"]))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from cavmae_lite.viz import plot_masking_tradeoff

    plot_masking_tradeoff(rows, path=str(path))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.15, 0.3, 0.5, 0.75])
    p.add_argument("--minutes", type=float, default=10.0, help="CPU minutes per ratio (default 10; with --from-json: "
                   "the budget whose runs are taken)")
    p.add_argument("--data", help="dataset folder (default: the default synthetic data)")
    p.add_argument("--model", nargs="*", default=[], metavar="K=V",
                   help="CAVMAEConfig.tiny() overrides for every ratio (e.g. norm_pix_loss=false)")
    p.add_argument("--from-json", nargs="+", help="bench_learning.py --json files to plot instead of training")
    p.add_argument("--out", default="runs/masking", help="folder for masking.json and masking.png")
    args = p.parse_args(argv)
    from bench_learning import parse_sets

    rows = (from_json(args.from_json, args.minutes) if args.from_json
            else measure(args.ratios, args.minutes, args.data, parse_sets(args.model)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "masking.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, out / "masking.png")
    print("| training mask ratio | model | minutes | steps | load | R@1 a2v | R@1 v2a | MSE / baseline audio | "
          "MSE / baseline video |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mask_ratio']:g} | {r['model']} | {r['minutes']:g} | {r['steps']} | {r['load_avg']:.2f} | {r['a2v_r1']:.3f} | "
              f"{r['v2a_r1']:.3f} | {r['mse_ratio_a']:.2f} | {r['mse_ratio_v']:.2f} |")
    print(f"wrote {out / 'masking.json'} and {out / 'masking.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
