"""Tokenizers: inputs -> patch tokens, the fixed 2-D sin-cos tables, and patchify / unpatchify.

Token layouts (spec §3.2, §3.9):
  audio  (B, T, F) is turned to (B, 1, F, T): frequency is the image height, time the width, so the
         grid is F/p frequency rows x T/p time columns and token k = f * (T/p) + t.
  video  (B, C, H, W), grid H/p x W/p, token k = row * (W/p) + column.
Within a patch, values are ordered (row offset, column offset, channel) with the channel fastest.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn


def audio_to_image(audio: Tensor) -> Tensor:
    """(B, T, F) fbank -> (B, 1, F, T) 'image' with frequency as height and time as width."""
    return rearrange(audio, "b t f -> b 1 f t")


def image_to_audio(image: Tensor) -> Tensor:
    """(B, 1, F, T) -> (B, T, F); inverse of :func:`audio_to_image`."""
    return rearrange(image, "b 1 f t -> b t f")


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) -> (B, L, p*p*C) patches in row-major grid order, channel fastest within a patch."""
    return rearrange(images, "b c (h p) (w q) -> b (h w) (p q c)", p=patch_size, q=patch_size)


def unpatchify(patches: Tensor, patch_size: int, grid: tuple[int, int], channels: int) -> Tensor:
    """(B, L, p*p*C) -> (B, C, H, W); inverse of :func:`patchify` for a (rows, columns) grid."""
    return rearrange(
        patches, "b (h w) (p q c) -> b c (h p) (w q)", h=grid[0], w=grid[1], p=patch_size, q=patch_size, c=channels
    )


def patchify_audio(audio: Tensor, patch_size: int) -> Tensor:
    """(B, T, F) fbank -> (B, (F/p)*(T/p), p*p) patches, frequency-major token order (as the official code)."""
    return patchify(audio_to_image(audio), patch_size)


def unpatchify_audio(patches: Tensor, patch_size: int, grid: tuple[int, int]) -> Tensor:
    """(B, L, p*p) -> (B, T, F) for an audio grid of (frequency rows, time columns)."""
    return image_to_audio(unpatchify(patches, patch_size, grid, channels=1))


def patchify_video(video: Tensor, patch_size: int) -> Tensor:
    """(B, C, H, W) frames -> (B, (H/p)*(W/p), p*p*C) patches."""
    return patchify(video, patch_size)


def unpatchify_video(patches: Tensor, patch_size: int, grid: tuple[int, int], channels: int = 3) -> Tensor:
    """(B, L, p*p*C) -> (B, C, H, W)."""
    return unpatchify(patches, patch_size, grid, channels)


def sincos_1d(positions: Tensor, dim: int) -> Tensor:
    """(N,) float64 positions -> (N, dim) codes [sin(p w_0..w_{q-1}), cos(p w_0..w_{q-1})], w_i = 10000^(-i/q), q = dim/2."""
    q = dim // 2
    omega = 1.0 / 10000 ** (torch.arange(q, dtype=torch.float64) / q)
    angles = positions[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(dim: int, grid: tuple[int, int]) -> Tensor:
    """Fixed 2-D sin-cos table (rows*cols, dim), float32, row-major tokens (MAE's table, as the official code).

    The first dim/2 channels encode the column index (time, for audio), the last dim/2 the row index
    (frequency, for audio). Computed in float64, stored as float32.
    """
    if dim % 4:
        raise ValueError(f"sin-cos table width must be a multiple of 4, got {dim}")
    rows, cols = grid
    r = torch.arange(rows, dtype=torch.float64).repeat_interleave(cols)  # row index of each token
    c = torch.arange(cols, dtype=torch.float64).repeat(rows)  # column index of each token
    return torch.cat([sincos_1d(c, dim // 2), sincos_1d(r, dim // 2)], dim=1).float()


def resize_audio_pos(table: Tensor, freq_rows: int, new_time_cols: int, mode: str = "trim") -> Tensor:
    """Resize the time axis of an audio positional table (1, rows*cols, D) to ``new_time_cols`` columns.

    ``mode="trim"`` keeps the first columns (shorter clips) and, for longer clips, extends by linear
    interpolation; ``mode="interpolate"`` always resamples the time axis linearly. For the fixed sin-cos
    tables of pretraining, trimming is exact (the table of a shorter grid is a prefix in time).
    """
    if mode not in ("trim", "interpolate"):
        raise ValueError(f"resize mode must be 'trim' or 'interpolate', got {mode!r}")
    grid = rearrange(table, "1 (f t) d -> 1 d f t", f=freq_rows)
    old = grid.shape[-1]
    if new_time_cols == old:
        return table
    if mode == "trim" and new_time_cols < old:
        grid = grid[..., :new_time_cols]
    else:
        grid = nn.functional.interpolate(grid, size=(freq_rows, new_time_cols), mode="bilinear", align_corners=True)
    return rearrange(grid, "1 d f t -> 1 (f t) d").contiguous()


class PatchEmbed(nn.Module):
    """Non-overlapping p x p patches -> D-dim tokens: (B, C, H, W) -> (B, (H/p)*(W/p), D)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return rearrange(self.proj(x), "b d h w -> b (h w) d")
