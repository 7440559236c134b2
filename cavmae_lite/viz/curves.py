"""Training curves: the loss terms and c_acc over steps."""

from __future__ import annotations

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
