"""Training curves: the loss terms and c_acc over steps."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np

# ---------------------------------------------------------------------------------------------------------
# training curves
# ---------------------------------------------------------------------------------------------------------


def _history_columns(history) -> dict[str, np.ndarray]:
    if isinstance(history, dict):
        return {k: np.asarray(v, dtype=float) for k, v in history.items()}
    rows = list(history)
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if all(
        isinstance(r.get(k, 0.0), (int, float)) for r in rows)]
    return {k: np.asarray([float(r.get(k, np.nan)) for r in rows]) for k in keys}


def plot_loss_curves(history: Iterable[dict] | dict[str, Sequence[float]], axes=None, x: str = "step",
                     chance: float | None = None, title: str = "pretraining"):
    """Loss terms (left, log scale) and accuracy-like metrics (right, e.g. c_acc) against the training step.

    ``history``: a list of per-step dicts (as a metrics JSON-lines file) or a dict of columns.
    ``chance``: draw the chance level of c_acc (1 / batch size).
    """
    cols = _history_columns(history)
    xs = cols.pop(x, None)
    skip = {"epoch", "lr", "time", "samples_per_s", "seconds", "wall", "samples", "batch_size"}
    losses = [k for k in cols if "loss" in k and k not in skip]
    accs = [k for k in cols if ("acc" in k or k.startswith("r")) and k not in losses and k not in skip
            and np.nanmax(np.abs(cols[k])) <= 1.0 + 1e-6]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.4), layout="constrained")
    ax_l, ax_r = axes
    xs = np.arange(len(next(iter(cols.values())))) if xs is None else xs
    for k in losses:
        ax_l.plot(xs, cols[k], label=k, lw=1.2)
    ax_l.set(xlabel=x, ylabel="loss (log scale)", title=f"{title}: losses")
    if losses and np.nanmin([np.nanmin(cols[k]) for k in losses]) > 0:
        ax_l.set_yscale("log")
    if losses:
        ax_l.legend(fontsize=8)
    for k in accs:
        ax_r.plot(xs, cols[k], label=k, lw=1.2)
    if chance is not None:
        ax_r.axhline(chance, color="gray", ls=":", label=f"chance = {chance:.2f}")
    ax_r.set(xlabel=x, ylabel="accuracy (fraction)", ylim=(0, 1.02), title=f"{title}: contrastive accuracy")
    if accs or chance is not None:
        ax_r.legend(fontsize=8)
    return ax_l.figure


# ---------------------------------------------------------------------------------------------------------
# the masking trade-off (benchmarks/bench_masking.py)
# ---------------------------------------------------------------------------------------------------------


def _variant_name(model: str, sweep: str) -> str:
    """A star's legend name: "today's tiny preset", or its settings beyond the sweep's (e.g. "norm_pix_loss=False")."""
    if model == "preset":
        return "today's tiny preset"
    extra = sorted(set(model.split(", ")) - set(sweep.split(", ")))
    return ", ".join(extra) or model


def plot_masking_tradeoff(rows: Sequence[dict], pool: int = 600, path: str | None = None):
    """Training mask ratio against retrieval R@1 (left) and the 75 % reconstruction error over its baseline (right).

    rows: ``bench_masking.py`` rows (mask_ratio, model, steps, minutes, a2v_r1, v2a_r1, mse_ratio_a, mse_ratio_v);
    the sweep (the model with the most rows) is joined by lines, other models are stars named in the legend."""
    if not rows:
        raise ValueError("no trade-off rows to plot: run benchmarks/bench_masking.py first")
    sweep = Counter(r["model"] for r in rows).most_common(1)[0][0]
    preset = sorted((r for r in rows if r["model"] == sweep), key=lambda r: r["mask_ratio"])
    others = [r for r in rows if r["model"] != sweep]
    x = [r["mask_ratio"] for r in preset]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    ax1.plot(x, [r["a2v_r1"] for r in preset], "o-", label="audio → video")
    ax1.plot(x, [r["v2a_r1"] for r in preset], "s-", label="video → audio")
    ax2.plot(x, [r["mse_ratio_a"] for r in preset], "o-", label="audio")
    ax2.plot(x, [r["mse_ratio_v"] for r in preset], "s-", label="video")
    for r in others:
        name = _variant_name(r["model"], sweep)
        ax1.plot([r["mask_ratio"]] * 2, [r["a2v_r1"], r["v2a_r1"]], "*", ms=9, label=f"{name} (both ways)")
        ax2.plot([r["mask_ratio"]], [r["mse_ratio_a"]], "C0*", ms=11, label=f"audio, {name}")
        ax2.plot([r["mask_ratio"]], [r["mse_ratio_v"]], "C1*", ms=11, label=f"video, {name}")
    ax1.axhline(1 / pool, color="grey", ls=":", label=f"chance (1/{pool})")
    ax1.set(xlabel="training mask ratio (both modalities)", ylabel=f"R@1 on {pool} test pairs",
            title="retrieval after equal CPU minutes", ylim=(0, None))
    ax2.axhline(1.0, color="grey", ls=":", label="mean visible patch (1.0)")
    ax2.set(xlabel="training mask ratio (both modalities)", ylabel="masked-patch MSE / baseline (input units)",
            title="reconstruction at 75 % masking (lower is better)", ylim=(0, 1.1))
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    minutes = sorted({round(r["minutes"]) for r in rows})
    steps = ", ".join(str(r["steps"]) for r in preset + others)
    fig.suptitle(f"lines: {'the tiny preset' if sweep == 'preset' else 'tiny with ' + sweep}; stars: the variants. "
                 f"{', '.join(map(str, minutes))} CPU minutes per run\n(steps: {steps})", fontsize=9)
    if path:
        fig.savefig(path, dpi=110)
    return fig
