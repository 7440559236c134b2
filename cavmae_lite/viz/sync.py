"""CAV-MAE Sync's pictures: a clip's moments, the segment cut over its spectrogram, per-frame similarities.

Conventions as in the rest of :mod:`cavmae_lite.viz`: a clip's fbank is (S, F) normalised log-mel at 10 ms per
frame, frames are ImageNet-normalised (T, 3, H, W). ``events`` (T,) ints say what each moment shows (the events
variant of the synthetic data: which object is lit, -1 for none; :func:`cavmae_lite.data.synthetic.frame_events`).
Every function checks its shapes (``ValueError``) and returns the matplotlib Figure it drew.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from .grids import HOP_S, SIM_CMAP, SPEC_CMAP, frame_to_rgb, to_numpy

EVENT_COLORS = plt.get_cmap("tab10").colors  # object b's colour: EVENT_COLORS[b % 10]


def _events(events, T: int) -> np.ndarray | None:
    if events is None:
        return None
    ev = np.asarray(to_numpy(events) if isinstance(events, Tensor) else events).astype(int).reshape(-1)
    if ev.shape != (T,):
        raise ValueError(f"events must have one entry per moment, shape ({T},), got {np.shape(events)}")
    return ev


def _check_fbank(fbank) -> np.ndarray:
    fb = to_numpy(fbank)
    if fb.ndim != 2:
        raise ValueError(f"expected one clip's fbank (S, F), got shape {fb.shape}")
    return fb


def _draw_fbank(ax, fb: np.ndarray, hop_s: float):
    S, F = fb.shape
    im = ax.imshow(fb.T, origin="lower", aspect="auto", cmap=SPEC_CMAP, extent=(0, S * hop_s, 0, F),
                   interpolation="nearest")
    ax.set(xlabel="time in clip (s)", ylabel="mel bin")
    return im


def plot_clip_moments(frames: Tensor, fbank: Tensor, frame_times: Sequence[float], events=None,
                      hop_s: float = HOP_S, title: str | None = None):
    """One clip's T frames above its spectrogram, each frame's moment drawn as a vertical line.

    frames (T, 3, H, W); fbank (S, F); frame_times (T,) seconds; events (T,) (a lit moment is outlined and its line
    coloured by the lit object)."""
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W), got {tuple(frames.shape)}")
    T, fb = frames.shape[0], _check_fbank(fbank)
    times = np.asarray(frame_times, dtype=float).reshape(-1)
    if times.shape != (T,):
        raise ValueError(f"frame_times must have one time per frame ({T},), got {np.shape(frame_times)}")
    ev = _events(events, T)
    fig = plt.figure(figsize=(max(10.0, 0.8 * T), 4.6), layout="constrained")
    grid = fig.add_gridspec(2, T, height_ratios=[1, 2.2])
    for i in range(T):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(frame_to_rgb(frames[i]))
        ax.set_xticks([])
        ax.set_yticks([])
        lit = ev is not None and ev[i] >= 0
        ax.set_xlabel(f"{times[i]:.1f} s" + (f"\nobj {ev[i]}" if lit else ""), fontsize=7)
        for s in ax.spines.values():
            s.set(color=EVENT_COLORS[ev[i] % 10] if lit else "0.7", lw=2.5 if lit else 0.5)
    ax = fig.add_subplot(grid[1, :])
    im = _draw_fbank(ax, fb, hop_s)
    for i, t in enumerate(times):
        lit = ev is not None and ev[i] >= 0
        ax.axvline(t, color=EVENT_COLORS[ev[i] % 10] if lit else "white", lw=1.6 if lit else 0.6,
                   ls="-" if lit else ":")
    fig.colorbar(im, ax=ax, label="normalised log-mel (a.u.)", pad=0.01)
    fig.suptitle(title or f"{T} frames at their moments (lines), coloured where an object is lit")
    return fig


def plot_segment_cut(fbank: Tensor, windows: Sequence[tuple[int, int]], frame_times: Sequence[float],
                     hop_s: float = HOP_S, title: str | None = None):
    """The audio segment of each of T frames drawn under the clip's spectrogram.

    fbank (S, F); windows T (start, end) fbank frames (e.g. :func:`~cavmae_lite.data.segments.segment_windows`);
    frame_times (T,) seconds. Row i: frame i's window as a bar (repeated windows share a colour), its moment as a
    black dot and the window's centre as a white bar."""
    fb = _check_fbank(fbank)
    S, T = fb.shape[0], len(windows)
    times = np.asarray(frame_times, dtype=float).reshape(-1)
    if T == 0 or times.shape != (T,):
        raise ValueError(f"need one window per frame time, got {T} windows and {np.shape(frame_times)} times")
    if any(len(w) != 2 or not 0 <= w[0] < w[1] <= S for w in windows):
        raise ValueError(f"every window must be (start, end) with 0 <= start < end <= S = {S}, got {list(windows)}")
    fig, (ax0, ax1) = plt.subplots(2, 1, figsize=(10, 6.2), sharex=True, layout="constrained",
                                   height_ratios=[1, 1.6])
    im = _draw_fbank(ax0, fb, hop_s)
    fig.colorbar(im, ax=ax0, label="normalised log-mel (a.u.)", pad=0.01)
    distinct = list(dict.fromkeys(tuple(w) for w in windows))
    cmap = plt.get_cmap("viridis", max(len(distinct), 2))
    for i, (start, end) in enumerate(windows):
        ax1.barh(i, (end - start) * hop_s, left=start * hop_s, height=0.7,
                 color=cmap(distinct.index((start, end))), alpha=0.8)
        ax1.plot([(start + end) / 2 * hop_s] * 2, [i - 0.35, i + 0.35], color="white", lw=2)
    ax1.plot(times, np.arange(T), "o", color="black", ms=4, label="the frame's moment")
    ax1.set(xlabel="time in clip (s)", ylabel="frame i", ylim=(T - 0.5, -0.5), xlim=(0, S * hop_s))
    ax1.legend(loc="upper right", fontsize=8)
    fig.colorbar(plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(-0.5, len(distinct) - 0.5)), ax=ax1,
                 label="distinct window", pad=0.01)
    fig.suptitle(title or f"{T} segments of {windows[0][1] - windows[0][0]} fbank frames, {len(distinct)} distinct")
    return fig


def _square(sim, name: str) -> np.ndarray:
    s = to_numpy(sim)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"{name} must be a (T, T) similarity matrix, got shape {s.shape}")
    return s


def _mark_events(ax, ev: np.ndarray | None, T: int) -> None:
    if ev is None:
        return
    for i in np.flatnonzero(ev >= 0):
        c = EVENT_COLORS[ev[i] % 10]
        ax.add_patch(plt.Rectangle((i - 0.5, -1.3), 1, 0.7, color=c, clip_on=False))  # above the columns
        ax.add_patch(plt.Rectangle((-1.3, i - 0.5), 0.7, 1, color=c, clip_on=False))  # left of the rows
    ax.set(xlim=(-0.5, T - 0.5), ylim=(T - 0.5, -0.5))


def _curve_panel(ax, mats: dict[str, np.ndarray], ev: np.ndarray | None, lo: float, hi: float) -> None:
    T = next(iter(mats.values())).shape[0]
    if ev is not None:
        for i in np.flatnonzero(ev >= 0):
            ax.axvspan(i - 0.5, i + 0.5, color=EVENT_COLORS[ev[i] % 10], alpha=0.25, lw=0)
    for (name, s), style in zip(mats.items(), ("o-", "s--")):
        ax.plot(np.arange(T), s.diagonal(), style, ms=4, label=f"{name}: frame k vs its own audio")
    ax.plot([], [], "o", color="white", mec="black", ms=5, label="(matrices) best frame of each segment")
    ax.plot([], [], color="red", lw=0.8, ls=":", label="(matrices) own moment, k = l")
    if ev is not None:
        ax.fill_between([], [], color=EVENT_COLORS[0], alpha=0.4, label="lit moment (colour: which object)")
    ax.set(xlabel="moment k (index)", ylabel="cosine similarity", ylim=(lo, hi), xlim=(-0.5, T - 0.5),
           title="the curve (the diagonal)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)


def plot_frame_similarity(sim_sync: Tensor, sim_cavmae: Tensor | None = None, events=None,
                          titles: tuple[str, str] = ("CAV-MAE Sync", "CAV-MAE (whole-clip audio)")):
    """One clip's (T, T) audio-segment x frame similarities, each row's best frame dotted, and the per-frame curve.

    sim_sync (T, T): segment k (rows) against frame l (columns). sim_cavmae: CAV-MAE's on the same frames, (T,)
    (one whole-clip audio vector against the T frames, drawn as that row repeated) or (T, T); None draws Sync alone.
    Both matrices share one colour scale. events (T,): lit moments drawn as coloured squares beside the axes and
    shaded in the curve panel."""
    mats = {titles[0]: _square(sim_sync, "sim_sync")}
    T = mats[titles[0]].shape[0]
    if sim_cavmae is not None:
        c = to_numpy(sim_cavmae)
        c = np.broadcast_to(c, (T, T)) if c.shape == (T,) else c
        if c.shape != (T, T):
            raise ValueError(f"sim_cavmae must be ({T},) or ({T}, {T}) like sim_sync, got {to_numpy(sim_cavmae).shape}")
        mats[titles[1]] = c
    ev = _events(events, T)
    lo, hi = min(float(m.min()) for m in mats.values()), max(float(m.max()) for m in mats.values())
    fig, axes = plt.subplots(1, len(mats) + 1, figsize=(4.6 * (len(mats) + 1), 5.0), layout="constrained")
    for ax, (name, s) in zip(axes, mats.items()):
        im = ax.imshow(s, cmap=SIM_CMAP, vmin=lo, vmax=hi)
        best = s.argmax(axis=1)
        ax.plot(best, np.arange(T), "o", color="white", mec="black", ms=5)
        ax.plot(np.arange(T), np.arange(T), color="red", lw=0.8, ls=":")
        _mark_events(ax, ev, T)
        ax.set(xlabel="video frame l (index)", ylabel="audio segment k (index)")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(name, pad=14)  # above the lit-moment squares
    fig.colorbar(im, ax=list(axes[: len(mats)]), label="cosine similarity" + (" (both matrices)" if len(mats) > 1 else ""), location="bottom",
                 shrink=0.6, aspect=30)
    _curve_panel(axes[-1], mats, ev, lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
    return fig


__all__ = ["EVENT_COLORS", "plot_clip_moments", "plot_frame_similarity", "plot_segment_cut"]
