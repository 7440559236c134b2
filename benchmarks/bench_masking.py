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


def row_of(run: dict, ratio: float) -> dict:
    """The numbers the trade-off shows, from one ``bench_learning.run_once`` result."""
    return {"mask_ratio": ratio, "minutes": run["minutes"], "steps": run["steps"], "load_avg": run["load_avg"],
            "a2v_r1": run["a2v_r1"], "v2a_r1": run["v2a_r1"],
            "mse_ratio_a": run["mse_a"] / run["mse_a_mean"], "mse_ratio_v": run["mse_v"] / run["mse_v_mean"]}


def measure(ratios: list[float], minutes: float, data: str | None) -> list[dict]:
    from bench_learning import run_once

    from cavmae_lite.data import ensure_default_dataset

    data_dir = ensure_default_dataset(data)
    rows = []
    for r in ratios:
        run = run_once(minutes, 0, data_dir, {}, {"mask_ratio_a": r, "mask_ratio_v": r})
        rows.append(row_of(run, r))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def from_json(paths: list[str]) -> list[dict]:
    """Rows from ``bench_learning.py --json`` files whose ``--train`` set one mask ratio for both modalities."""
    rows = []
    for path in paths:
        d = json.loads(Path(path).read_text())
        ra, rv = d["train"].get("mask_ratio_a"), d["train"].get("mask_ratio_v")
        if ra is None or ra != rv:
            raise ValueError(f"{path}: expected one --train mask_ratio_a = mask_ratio_v, got {ra} / {rv}")
        rows += [row_of(run, ra) for run in d["runs"]]
    return sorted(rows, key=lambda r: r["mask_ratio"])


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r["mask_ratio"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.plot(x, [r["a2v_r1"] for r in rows], "o-", label="audio → video")
    ax1.plot(x, [r["v2a_r1"] for r in rows], "s-", label="video → audio")
    ax1.axhline(1 / 600, color="grey", ls=":", label="chance (1/600)")
    ax1.set(xlabel="training mask ratio (both modalities)", ylabel="R@1 on 600 test pairs",
            title="retrieval after equal CPU minutes", ylim=(0, None))
    ax1.legend()
    ax2.plot(x, [r["mse_ratio_a"] for r in rows], "o-", label="audio")
    ax2.plot(x, [r["mse_ratio_v"] for r in rows], "s-", label="video")
    ax2.axhline(1.0, color="grey", ls=":", label="mean visible patch (1.0)")
    ax2.set(xlabel="training mask ratio (both modalities)", ylabel="masked-patch MSE / baseline",
            title="reconstruction at 75 % masking (lower is better)", ylim=(0, 1.1))
    ax2.legend()
    minutes = sorted({round(r["minutes"]) for r in rows})
    fig.suptitle(f"tiny preset, {', '.join(map(str, minutes))} CPU minutes per ratio (steps: "
                 f"{', '.join(str(r['steps']) for r in rows)})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.15, 0.3, 0.5, 0.75])
    p.add_argument("--minutes", type=float, default=10.0, help="CPU minutes per ratio (default 10)")
    p.add_argument("--data", help="dataset folder (default: the default synthetic data)")
    p.add_argument("--from-json", nargs="+", help="bench_learning.py --json files to plot instead of training")
    p.add_argument("--out", default="runs/masking", help="folder for masking.json and masking.png")
    args = p.parse_args(argv)
    rows = from_json(args.from_json) if args.from_json else measure(args.ratios, args.minutes, args.data)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "masking.json").write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, out / "masking.png")
    print("| mask ratio | minutes | steps | load | R@1 a2v | R@1 v2a | MSE / baseline audio | MSE / baseline video |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mask_ratio']:g} | {r['minutes']:g} | {r['steps']} | {r['load_avg']:.2f} | {r['a2v_r1']:.3f} | "
              f"{r['v2a_r1']:.3f} | {r['mse_ratio_a']:.2f} | {r['mse_ratio_v']:.2f} |")
    print(f"wrote {out / 'masking.json'} and {out / 'masking.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
