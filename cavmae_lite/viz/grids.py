"""Shared figure helpers and the frame pictures: colours, the patch grid with token indices, frames."""

from __future__ import annotations

import math
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FBANK_MEAN, FBANK_STD = -5.081, 4.4849  # AudioSet statistics used by every official script (spec §2.2)
HOP_S = 0.01  # fbank frame shift: 10 ms
SPEC_CMAP, SIM_CMAP = "magma", "viridis"
MASK_COLOR = "#c8c8c8"  # light grey for removed patches


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def to_numpy(x: Any) -> np.ndarray:
    """A tensor (any device, dtype or autograd state) or array-like as a float32 numpy array, ready to plot."""
    if isinstance(x, Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def figure_and_axes(ax=None, figsize=(6, 4)):
    """``(figure, ax)`` to draw on: the given ``ax`` and its figure, or a new ``figsize`` figure with one axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def frame_to_rgb(frame: Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """ImageNet-normalised (3, H, W) -> displayable (H, W, 3) array in [0, 1]. NaNs (masked pixels) stay NaN."""
    f = frame.detach().float().cpu()
    f = f * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return f.permute(1, 2, 0).clamp(0, 1).numpy()


def _fill_nan(img: np.ndarray, color: str = MASK_COLOR) -> np.ndarray:
    rgb = np.asarray(matplotlib.colors.to_rgb(color), dtype=img.dtype)
    return np.where(np.isnan(img), rgb, img)


def _fontsize_for(n_tokens: int) -> float:
    return float(np.clip(80 / math.sqrt(max(n_tokens, 1)), 4.0, 9.0))


def draw_patch_grid(ax, rows: int, cols: int, cell_w: float, cell_h: float, indices: bool = True,
                    origin: str = "upper", color: str = "white", fontsize: float | None = None,
                    x0: float = 0.0, y0: float = 0.0) -> None:
    """Draw a rows x cols patch grid in data coordinates and (optionally) each token's index k = r * cols + c.

    ``origin="upper"``: row 0 at the top (images); ``"lower"``: row 0 at the bottom (spectrograms, low bins).
    """
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    for c in range(cols + 1):
        ax.axvline(x0 + c * cell_w, color=color, lw=0.4, alpha=0.6)
    for r in range(rows + 1):
        ax.axhline(y0 + r * cell_h, color=color, lw=0.4, alpha=0.6)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    if not indices:
        return
    fs = fontsize or _fontsize_for(rows * cols)
    for r in range(rows):
        yc = y0 + (r + 0.5) * cell_h
        for c in range(cols):
            ax.text(x0 + (c + 0.5) * cell_w, yc, str(r * cols + c), ha="center", va="center", fontsize=fs,
                    color=color, alpha=0.9, clip_on=True)
    del origin  # the caller's extent already puts row 0 where it belongs


# ---------------------------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------------------------


def plot_frame(frame: Tensor, ax=None, patch_size: int | None = 16, indices: bool = True, title: str | None = None,
               normalized: bool = True, grid_color: str = "white"):
    """Frame (3, H, W) (ImageNet-normalised unless ``normalized=False``) with its patch grid and token indices."""
    img = frame_to_rgb(frame) if normalized else frame.detach().float().permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    H, W = img.shape[:2]
    fig, ax = figure_and_axes(ax, (4.2, 4.2))
    ax.imshow(_fill_nan(img), extent=(0, W, H, 0), interpolation="nearest")
    if patch_size:
        draw_patch_grid(ax, H // patch_size, W // patch_size, patch_size, patch_size, indices, color=grid_color)
    ax.set(xlabel="x (pixels)", ylabel="y (pixels)", title=title or f"frame 3x{H}x{W}")
    return fig


def plot_frames(frames: Tensor, fps: float = 1.0, axes=None, title: str | None = None, highlight: int | None = None):
    """A row of (N, 3, H, W) frames labelled with their time stamps; ``highlight`` frames one in red."""
    n = frames.shape[0]
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(1.5 * n, 1.9), layout="constrained")
    axes = np.atleast_1d(axes)
    for i, ax in enumerate(axes):
        ax.imshow(frame_to_rgb(frames[i]))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"t = {i / fps:.1f} s", fontsize=8)
        if highlight == i:
            for s in ax.spines.values():
                s.set(color="red", lw=2.5)
    fig = axes[0].figure
    if title:
        fig.suptitle(title)
    return fig
