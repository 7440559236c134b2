"""Similarity and retrieval: the audio x video similarity matrix with clips on its axes, temperature."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from torch import Tensor

from .grids import SIM_CMAP, SPEC_CMAP, figure_and_axes, frame_to_rgb, to_numpy

# ---------------------------------------------------------------------------------------------------------
# contrastive
# ---------------------------------------------------------------------------------------------------------


def similarity_matrix(audio_emb: Tensor, video_emb: Tensor) -> Tensor:
    """Cosine similarities (N, M): S[i, j] = <a_i, v_j> / (|a_i| |v_j|); rows audio, columns video."""
    a = torch.nn.functional.normalize(audio_emb.float(), dim=-1)
    v = torch.nn.functional.normalize(video_emb.float(), dim=-1)
    return a @ v.T


def plot_similarity(sim: Tensor, frames: Tensor | None = None, fbanks: Tensor | None = None, ax=None,
                    values: bool | None = None, title: str = "audio-visual cosine similarity",
                    vmin: float | None = None, vmax: float | None = None, label: str = "cosine similarity"):
    """Similarity matrix with video frames above the columns and spectrogram snippets left of the rows.

    sim (N, M): rows = audio clips, columns = video clips; frames (M, 3, H, W); fbanks (N, T, F).
    ``values`` prints each cell (default: when N, M <= 12). The true pairs are on the diagonal.
    """
    S = to_numpy(sim)
    N, M = S.shape
    fig, ax = figure_and_axes(ax, (1.1 + 0.75 * M + (1.4 if fbanks is not None else 0), 1.0 + 0.7 * N
                         + (0.9 if frames is not None else 0)))
    im = ax.imshow(S, cmap=SIM_CMAP, vmin=vmin, vmax=vmax, extent=(-0.5, M - 0.5, N - 0.5, -0.5))
    values = (N <= 12 and M <= 12) if values is None else values
    if values:
        mid = (np.nanmax(S) + np.nanmin(S)) / 2 if vmin is None or vmax is None else (vmin + vmax) / 2
        for i in range(N):
            for j in range(M):
                ax.text(j, i, f"{S[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if S[i, j] > mid else "white")
    for k in range(min(N, M)):  # outline the true pairs
        ax.add_patch(matplotlib.patches.Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, ec="red", lw=1.2))
    top, left = -0.5, -0.5
    if frames is not None:
        for j in range(min(M, frames.shape[0])):
            ax.imshow(frame_to_rgb(frames[j]), extent=(j - 0.45, j + 0.45, -0.6, -1.5))
        top = -1.6
    if fbanks is not None:
        for i in range(min(N, fbanks.shape[0])):
            ax.imshow(to_numpy(fbanks[i]).T, origin="lower", cmap=SPEC_CMAP, aspect="auto",
                      extent=(-2.2, -0.6, i + 0.45, i - 0.45))
        left = -2.3
    ax.set_xlim(left, M - 0.5)
    ax.set_ylim(N - 0.5, top)
    ax.set_xticks(range(M))
    ax.set_yticks(range(N))
    ax.set(xlabel="video clip j (frame)", ylabel="audio clip i (spectrogram)", title=title)
    for s in ax.spines.values():
        s.set_visible(False)
    fig.colorbar(im, ax=ax, label=label, shrink=0.8, pad=0.02)
    return fig


def softmax_with_temperature(sim: Tensor, temperature: float, dim: int = 0) -> Tensor:
    """p = softmax(S / tau) along ``dim``; the official loss normalises over audios (dim 0) for each video."""
    return torch.softmax(sim.float() / temperature, dim=dim)


def plot_temperature(sim: Tensor, column: int = 0, temperatures: Sequence[float] = (1.0, 0.2, 0.05), ax=None):
    """For video ``column``, p(audio i | video j) = softmax_i(S[i, j] / tau) for several temperatures tau."""
    S = sim.float()
    N = S.shape[0]
    fig, ax = figure_and_axes(ax, (7, 3.4))
    width = 0.8 / len(temperatures)
    for k, tau in enumerate(temperatures):
        p = softmax_with_temperature(S, tau, dim=0)[:, column]
        ax.bar(np.arange(N) + (k - (len(temperatures) - 1) / 2) * width, to_numpy(p), width=width,
               label=f"tau = {tau:g} (p_true = {float(p[column]):.2f})")
    ax.axvline(column, color="red", lw=1, ls="--", label=f"true partner (audio {column})")
    ax.axhline(1 / N, color="gray", lw=0.8, ls=":", label=f"uniform 1/N = {1 / N:.2f}")
    ax.set(xlabel="audio clip i", ylabel=f"p(audio i | video {column})", ylim=(0, 1.02), xticks=range(N),
           title=f"softmax over the batch's audios for video {column}")
    ax.legend(fontsize=8, loc="upper right")
    return fig
