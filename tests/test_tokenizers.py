"""Tokenizers: patch layouts (spec §3.2, §3.9), sin-cos tables (§3.3), positional-table resizing."""

from __future__ import annotations

import pytest
import torch
from official_reference import sincos_table

from cavmae_lite.tokenizers import (
    PatchEmbed,
    audio_to_image,
    image_to_audio,
    patchify_audio,
    patchify_video,
    resize_audio_pos,
    sincos_2d,
    unpatchify_audio,
    unpatchify_video,
)


def test_audio_to_image_transposes_time_and_frequency():
    audio = torch.randn(2, 64, 32)  # (B, T, F)
    img = audio_to_image(audio)
    assert img.shape == (2, 1, 32, 64)
    assert img[1, 0, 5, 7] == audio[1, 7, 5]
    assert torch.equal(image_to_audio(img), audio)


def test_patchify_audio_value_layout():
    """Token k = f * (T/p) + t; within a patch, (frequency offset, time offset) row-major."""
    B, T, F, p = 2, 48, 32, 16
    audio = torch.randn(B, T, F)
    patches = patchify_audio(audio, p)
    cols = T // p
    assert patches.shape == (B, (F // p) * cols, p * p)
    for f in range(F // p):
        for t in range(cols):
            k = f * cols + t
            for df, dt in [(0, 0), (0, 1), (1, 0), (3, 15), (15, 2)]:
                assert patches[1, k, df * p + dt] == audio[1, t * p + dt, f * p + df]
    assert torch.equal(unpatchify_audio(patches, p, (F // p, cols)), audio)


def test_patchify_video_value_layout_channel_fastest():
    B, C, H, p = 2, 3, 32, 16
    video = torch.randn(B, C, H, H)
    patches = patchify_video(video, p)
    assert patches.shape == (B, 4, p * p * C)
    for r in range(2):
        for c in range(2):
            k = r * 2 + c
            for dr, dc, ch in [(0, 0, 0), (0, 0, 2), (0, 1, 0), (5, 7, 1), (15, 15, 2)]:
                assert patches[0, k, (dr * p + dc) * C + ch] == video[0, ch, r * p + dr, c * p + dc]
    assert torch.equal(unpatchify_video(patches, p, (2, 2)), video)


def test_patch_embed_token_order_matches_patchify():
    """The conv patch embedding's tokens are in the same order as the patchify targets."""
    p, D = 16, 8
    emb = PatchEmbed(1, D, p)
    audio = torch.randn(2, 64, 32)
    tokens = emb(audio_to_image(audio))
    assert tokens.shape == (2, (32 // p) * (64 // p), D)
    w = emb.proj.weight.reshape(D, -1)  # (D, 1*p*p) in (c, row, col) order = patchify order for one channel
    torch.testing.assert_close(tokens, patchify_audio(audio, p) @ w.T + emb.proj.bias, atol=1e-5, rtol=1e-5)
    emb_v = PatchEmbed(3, D, p)
    video = torch.randn(2, 3, 32, 32)
    w_v = emb_v.proj.weight.permute(0, 2, 3, 1).reshape(D, -1)  # (D, row, col, channel)
    torch.testing.assert_close(emb_v(video), patchify_video(video, p) @ w_v.T + emb_v.proj.bias, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dim,grid", [(768, (8, 64)), (768, (14, 14)), (512, (8, 64)), (512, (14, 14)),
                                      (64, (8, 4)), (192, (8, 16)), (128, (6, 6))])
def test_sincos_2d_matches_the_spec_construction(dim, grid):
    table = sincos_2d(dim, grid)
    assert table.shape == (grid[0] * grid[1], dim) and table.dtype == torch.float32
    torch.testing.assert_close(table, sincos_table(dim, *grid), atol=1e-6, rtol=0)


def test_sincos_2d_first_half_is_time_second_half_is_frequency():
    t = sincos_2d(16, (3, 5))  # 3 rows (frequency) x 5 columns (time)
    # token (r=1, c=2) vs (r=2, c=2): same column -> same first half
    assert torch.equal(t[1 * 5 + 2, :8], t[2 * 5 + 2, :8])
    assert not torch.equal(t[1 * 5 + 2, 8:], t[2 * 5 + 2, 8:])
    # column 0, row 0: sin(0) = 0 then cos(0) = 1
    assert t[0].tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4
    with pytest.raises(ValueError):
        sincos_2d(10, (2, 2))


def test_resize_trim_of_sincos_table_is_the_smaller_grids_table():
    D = 64
    full = sincos_2d(D, (8, 64)).unsqueeze(0)
    for cols in (16, 32, 63):
        trimmed = resize_audio_pos(full, 8, cols, mode="trim")
        assert torch.equal(trimmed, sincos_2d(D, (8, cols)).unsqueeze(0))
    assert resize_audio_pos(full, 8, 64) is full


def test_resize_interpolate_and_extension():
    D = 16
    full = sincos_2d(D, (8, 4)).unsqueeze(0)
    longer = resize_audio_pos(full, 8, 7, mode="trim")  # longer than the table: interpolated
    assert longer.shape == (1, 8 * 7, D)
    # align_corners=True keeps the end columns
    grid_old = full.reshape(1, 8, 4, D)
    grid_new = longer.reshape(1, 8, 7, D)
    torch.testing.assert_close(grid_new[:, :, 0], grid_old[:, :, 0])
    torch.testing.assert_close(grid_new[:, :, -1], grid_old[:, :, -1])
    shorter = resize_audio_pos(full, 8, 2, mode="interpolate")
    assert shorter.shape == (1, 16, D)
    with pytest.raises(ValueError, match="trim"):
        resize_audio_pos(full, 8, 2, mode="nearest")
