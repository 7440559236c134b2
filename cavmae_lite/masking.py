"""Random token masking (MAE style), unstructured or structured along the audio grid (spec §3.6).

Per sample, each token gets a noise value; tokens are sorted by noise and the K = floor(L * (1 - ratio))
lowest are kept. Structured audio modes first push whole time columns and/or frequency rows to the
top of the order so they are removed first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange, repeat
from torch import Tensor

from .config import MASK_MODES


@dataclass
class Masked:
    """Result of :func:`random_masking`.

    visible:     (B, K, D) kept tokens, in shuffled order (ascending noise), not positional order
    mask:        (B, L) float, 1 = masked (removed), 0 = visible, original token order
    ids_restore: (B, L) long, the index that puts [visible, mask tokens] back into original order
    ids_keep:    (B, K) long, original positions of the visible tokens
    """

    visible: Tensor
    mask: Tensor
    ids_restore: Tensor
    ids_keep: Tensor

    def __iter__(self):  # allows `visible, mask, ids_restore = random_masking(...)`
        return iter((self.visible, self.mask, self.ids_restore))


def num_visible(num_tokens: int, ratio: float) -> int:
    """K = floor(L * (1 - ratio)), computed exactly as the official code does."""
    return int(num_tokens * (1 - ratio))


def structured_noise(noise: Tensor, ratio: float, mode: str, grid: tuple[int, int]) -> Tensor:
    """Raise the noise of whole audio time columns / frequency rows above 1 so they are removed first.

    noise: (B, L) uniform [0, 1) with L = rows * cols of ``grid`` = (frequency rows, time columns).
    Which columns / rows are chosen is decided by the noise itself (those with the highest mean noise),
    so the same noise always gives the same mask. Chosen tokens get noise + 1 (in [1, 2)), which keeps a
    deterministic order among them when the removal quota L - K is smaller than their number.
    (The official code picks them with Python's ``random`` and sets them to a tied 1.1.)
    """
    rows, cols = grid
    n = rearrange(noise, "b (f t) -> b f t", f=rows, t=cols)
    chosen = torch.zeros_like(n, dtype=torch.bool)
    scale = 0.7 if mode == "tf" else 1.0
    if mode in ("time", "tf"):
        k = int(cols * ratio * scale)
        top_cols = n.mean(dim=1).topk(k, dim=1).indices  # (B, k)
        col_hit = torch.zeros(n.shape[0], cols, dtype=torch.bool, device=n.device).scatter_(1, top_cols, True)
        chosen |= repeat(col_hit, "b t -> b f t", f=rows)
    if mode in ("freq", "tf"):
        k = int(rows * ratio * scale)
        top_rows = n.mean(dim=2).topk(k, dim=1).indices  # (B, k)
        row_hit = torch.zeros(n.shape[0], rows, dtype=torch.bool, device=n.device).scatter_(1, top_rows, True)
        chosen |= repeat(row_hit, "b f -> b f t", t=cols)
    return rearrange(torch.where(chosen, n + 1.0, n), "b f t -> b (f t)")


def random_masking(
    x: Tensor,
    ratio: float,
    noise: Tensor | None = None,
    mode: str = "unstructured",
    grid: tuple[int, int] | None = None,
    generator: torch.Generator | None = None,
) -> Masked:
    """Keep a random K = floor(L * (1 - ratio)) tokens of each sample.

    Args:
        x: (B, L, D) tokens.
        ratio: fraction to mask, in [0, 1]. 1.0 keeps no token (K = 0, ``visible`` is (B, 0, D)): the whole modality
            reaches the decoder as mask tokens. The encoder's blocks take an empty sequence, but a contrastive
            stream has nothing to mean-pool (NaN), so use it for reconstruction only (``explorers.cross_modal_forward``).
        noise: optional (B, L) noise; the lowest-noise tokens are kept. Without it, ``torch.rand(B, L)`` is drawn
            on ``x.device`` (with ``generator`` if given). With it, the result is fully deterministic.
        mode: "unstructured" or, for audio, "time" / "freq" / "tf" (whole time columns / frequency rows first).
        grid: (frequency rows, time columns) of the audio grid; required for structured modes.
    """
    if x.dim() != 3:
        raise ValueError(f"random_masking expects tokens (B, L, D), got shape {tuple(x.shape)}")
    B, L, D = x.shape
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
    if noise is None:
        noise = torch.rand(B, L, device=x.device, generator=generator)
    elif noise.shape != (B, L):
        raise ValueError(f"noise must have shape (B, L) = {(B, L)}, got {tuple(noise.shape)}")
    noise = noise.to(x.device)
    if mode != "unstructured":
        if grid is None or grid[0] * grid[1] != L:
            raise ValueError(f"structured mode {mode!r} needs grid=(rows, cols) with rows*cols = L = {L}, got {grid}")
        noise = structured_noise(noise, ratio, mode, grid)

    keep = num_visible(L, ratio)
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: lowest noise is kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    visible = torch.gather(x, 1, repeat(ids_keep, "b k -> b k d", d=D))

    mask = torch.ones(B, L, device=x.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # back to original token order
    return Masked(visible, mask, ids_restore, ids_keep)


def unshuffle(visible: Tensor, mask_token: Tensor, ids_restore: Tensor) -> Tensor:
    """(B, K, D) visible tokens + a (1, 1, D) mask token -> (B, L, D) in original order."""
    B, K, D = visible.shape
    L = ids_restore.shape[1]
    filled = torch.cat([visible, mask_token.expand(B, L - K, D)], dim=1)
    return torch.gather(filled, 1, repeat(ids_restore, "b l -> b l d", d=D))
