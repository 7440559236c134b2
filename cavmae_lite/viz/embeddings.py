"""Embeddings: a shared 2-D PCA map of audio and video embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from .grids import figure_and_axes, to_numpy


def pca_2d(x: Tensor) -> tuple[Tensor, Tensor]:
    """(M, D) -> (M, 2) projection on the first two principal components, and their explained-variance ratios."""
    x = x.float() - x.float().mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    var = s**2
    return x @ vh[:2].T, var[:2] / var.sum().clamp(min=1e-12)


def plot_embedding_map(audio_emb: Tensor, video_emb: Tensor, labels: Sequence | Tensor | None = None, ax=None,
                       connect: bool = True, title: str = "PCA of audio and video embeddings",
                       label_names: Sequence[str] | None = None, max_lines: int = 80):
    """Both modalities' (N, D) embeddings in one 2-D PCA map: circles audio, triangles video, grey lines pairs.

    Embeddings are L2-normalised first (as for retrieval). Colour = ``labels`` if given. Only the first
    ``max_lines`` pairs are joined by a line (more would hide the points).
    """
    a = torch.nn.functional.normalize(audio_emb.float(), dim=-1)
    v = torch.nn.functional.normalize(video_emb.float(), dim=-1)
    N = a.shape[0]
    xy, ratio = pca_2d(torch.cat([a, v]))
    xy = to_numpy(xy)
    fig, ax = figure_and_axes(ax, (6.2, 5.2))
    lab = np.zeros(N, dtype=int) if labels is None else np.asarray(
        labels.cpu().tolist() if isinstance(labels, Tensor) else list(labels))
    if connect:
        for i in range(min(N, max_lines)):
            ax.plot([xy[i, 0], xy[N + i, 0]], [xy[i, 1], xy[N + i, 1]], color="gray", lw=0.4, alpha=0.5, zorder=1)
    cmap = plt.get_cmap("tab10")
    uniq = list(dict.fromkeys(lab.tolist()))
    for k, u in enumerate(uniq):
        sel = lab == u
        name = (label_names[int(u)] if label_names is not None else f"class {u}") if labels is not None else None
        ax.scatter(xy[:N][sel, 0], xy[:N][sel, 1], marker="o", s=28, color=cmap(k % 10), edgecolor="k", lw=0.3,
                   label=f"audio, {name}" if name else "audio", zorder=2)
        ax.scatter(xy[N:][sel, 0], xy[N:][sel, 1], marker="^", s=34, color=cmap(k % 10), alpha=0.6,
                   label=f"video, {name}" if name else "video", zorder=2)
    ax.set(xlabel=f"PC 1 ({100 * float(ratio[0]):.0f} % of variance)",
           ylabel=f"PC 2 ({100 * float(ratio[1]):.0f} % of variance)", title=title)
    ax.legend(fontsize=7, ncol=2 if len(uniq) > 3 else 1, loc="best")
    return fig
