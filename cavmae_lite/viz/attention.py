"""Attention weights of one block, and per-patch values drawn over a frame (similarity or attention maps).

The blocks compute attention with PyTorch's fused kernel, which never materialises the weights. To look at them,
:func:`capture_attention` puts a forward hook on an :class:`~cavmae_lite.layers.Attention` module that recomputes
``softmax(q k^T / sqrt(d))`` from the module's own ``qkv`` projection of the input it was given (the block's
LayerNormed tokens). The hook returns nothing, so the block's output is untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib.pyplot as plt
import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from .grids import draw_patch_grid, figure_and_axes, frame_to_rgb, to_numpy


def attention_weights(attn, x: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(d)) of ``attn`` (an ``Attention``) for its input ``x`` (B, N, D): (B, heads, N, N).

    Row n of head h is the distribution over keys of query token n (each row sums to 1).
    """
    q, k, _ = rearrange(attn.qkv(x), "b n (three h d) -> three b h n d", three=3, h=attn.num_heads)
    return torch.softmax((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1)


@contextmanager
def capture_attention(attn) -> Iterator[list[Tensor]]:
    """Within the ``with`` block, every call of ``attn`` appends its (B, heads, N, N) weights to the yielded list."""
    records: list[Tensor] = []

    def hook(module, inputs, output):  # returns None: the module's output is not changed
        with torch.no_grad():
            records.append(attention_weights(module, inputs[0]).detach())

    handle = attn.register_forward_hook(hook)
    try:
        yield records
    finally:
        handle.remove()


def plot_frame_map(frame: Tensor, values: Tensor, grid: tuple[int, int], ax=None, title: str = "",
                   label: str = "value", vmin: float | None = None, vmax: float | None = None, cmap: str = "inferno",
                   alpha: float = 0.6, outline: Tensor | None = None):
    """One value per visual patch, (Lv,) in token order (row-major), drawn over the frame (3, H, W).

    The frame is shown in grey underneath; ``outline`` (Lv,) bool marks patches with a cyan border (e.g. the
    patches that hold the object). Returns the figure.
    """
    rows, cols = grid
    img = frame_to_rgb(frame)
    H, W = img.shape[:2]
    fig, ax = figure_and_axes(ax, (4.4, 4.0))
    ax.imshow(img.mean(axis=2), cmap="gray", vmin=0, vmax=1, extent=(0, W, H, 0))
    im = ax.imshow(to_numpy(values).reshape(rows, cols), cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha,
                   extent=(0, W, H, 0), interpolation="nearest")
    draw_patch_grid(ax, rows, cols, W / cols, H / rows, indices=False, color="white")
    if outline is not None:
        ph, pw = H / rows, W / cols
        for k in np.flatnonzero(to_numpy(outline) > 0.5):
            r, c = divmod(int(k), cols)
            ax.add_patch(plt.Rectangle((c * pw, r * ph), pw, ph, fill=False, ec="cyan", lw=1.6))
    ax.set(xlabel="x (pixels)", ylabel="y (pixels)", title=title)
    fig.colorbar(im, ax=ax, label=label, shrink=0.85)
    return fig


__all__ = ["attention_weights", "capture_attention", "plot_frame_map"]
