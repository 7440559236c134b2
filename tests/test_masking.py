"""Masking invariants (spec §3.6): keep counts, the argsort rule, ids_restore, structured modes, errors."""

from __future__ import annotations

import pytest
import torch

from cavmae_lite import random_masking
from cavmae_lite.masking import num_visible, structured_noise, unshuffle


def tokens(B: int, L: int, D: int = 5) -> torch.Tensor:
    # token l of sample b carries the value l in every channel (plus b * 1000), so gathers are traceable
    return (torch.arange(L, dtype=torch.float32)[None, :, None] + 1000 * torch.arange(B)[:, None, None]).expand(
        B, L, D).clone()


@pytest.mark.parametrize("L", [512, 196, 32, 9, 7, 1])
@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 0.85, 0.9, 0.999])
def test_keep_count_is_floor_of_L_times_one_minus_ratio(L, ratio):
    x = tokens(3, L)
    out = random_masking(x, ratio)
    K = int(L * (1 - ratio))
    assert num_visible(L, ratio) == K
    assert out.visible.shape == (3, K, 5)
    assert out.mask.shape == (3, L) and out.mask.dtype == torch.float32
    assert out.mask.sum(dim=1).tolist() == [float(L - K)] * 3
    assert set(out.mask.unique().tolist()) <= {0.0, 1.0}


def test_base_keep_counts():
    assert num_visible(512, 0.75) == 128
    assert num_visible(196, 0.75) == 49


def test_mask_follows_the_argsort_rule_for_given_noise():
    B, L = 4, 50
    x = tokens(B, L)
    noise = torch.rand(B, L)
    out = random_masking(x, 0.6, noise=noise)
    K = int(L * 0.4)
    for b in range(B):
        order = sorted(range(L), key=lambda i: noise[b, i].item())  # ascending noise (values are distinct)
        kept = order[:K]
        # visible tokens: the K lowest-noise tokens, in ascending-noise order (not positional order)
        assert out.visible[b, :, 0].tolist() == [1000.0 * b + i for i in kept]
        assert out.ids_keep[b].tolist() == kept
        expected_mask = [0.0 if i in kept else 1.0 for i in range(L)]
        assert out.mask[b].tolist() == expected_mask


def test_ids_restore_inverts_the_shuffle():
    B, L = 3, 40
    x = tokens(B, L)
    noise = torch.rand(B, L)
    out = random_masking(x, 0.75, noise=noise)
    ids_shuffle = torch.argsort(noise, dim=1)
    assert torch.equal(torch.gather(ids_shuffle, 1, out.ids_restore), torch.arange(L).expand(B, L))
    assert torch.equal(torch.gather(out.ids_restore, 1, ids_shuffle), torch.arange(L).expand(B, L))
    # un-shuffling [visible, mask tokens] puts every visible token back at its position, mask tokens elsewhere
    mask_token = torch.full((1, 1, 5), -1.0)
    full = unshuffle(out.visible, mask_token, out.ids_restore)
    for b in range(B):
        for i in range(L):
            if out.mask[b, i] == 0:
                assert full[b, i, 0].item() == 1000.0 * b + i
            else:
                assert full[b, i, 0].item() == -1.0


def test_tuple_unpacking_and_determinism():
    x = torch.randn(2, 30, 4)
    noise = torch.rand(2, 30)
    visible, mask, ids_restore = random_masking(x, 0.5, noise=noise)
    again = random_masking(x, 0.5, noise=noise.clone())
    assert torch.equal(visible, again.visible) and torch.equal(mask, again.mask)
    assert torch.equal(ids_restore, again.ids_restore)
    for mode in ("time", "freq", "tf"):
        grid = (5, 6)
        one = random_masking(x, 0.5, noise=noise, mode=mode, grid=grid)
        two = random_masking(x, 0.5, noise=noise.clone(), mode=mode, grid=grid)
        assert torch.equal(one.mask, two.mask) and torch.equal(one.visible, two.visible)


def test_generator_makes_random_masks_reproducible():
    x = torch.randn(2, 30, 4)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(random_masking(x, 0.5, generator=g1).mask, random_masking(x, 0.5, generator=g2).mask)


def test_masks_differ_between_samples_and_noise_is_per_sample():
    x = torch.randn(8, 64, 2)
    out = random_masking(x, 0.5)
    assert len({tuple(m.tolist()) for m in out.mask}) > 1


# ----------------------------------------------------------------------------------------------------
# structured audio masks
# ----------------------------------------------------------------------------------------------------


def grid_mask(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    return mask.reshape(mask.shape[0], grid[0], grid[1])  # (B, freq rows, time columns), token = f * cols + t


@pytest.mark.parametrize("grid", [(8, 64), (8, 16), (4, 10), (6, 5)])
@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_time_mode_removes_whole_time_columns(grid, ratio):
    rows, cols = grid
    B = 3
    out = random_masking(torch.randn(B, rows * cols, 2), ratio, noise=torch.rand(B, rows * cols), mode="time",
                         grid=grid)
    m = grid_mask(out.mask, grid)
    n_cols = int(cols * ratio)
    K = int(rows * cols * (1 - ratio))
    full_cols = (m.sum(dim=1) == rows).sum(dim=1)  # time columns masked over every frequency row
    assert (full_cols >= n_cols).all()
    assert out.mask.sum(dim=1).eq(rows * cols - K).all()
    if n_cols * rows == rows * cols - K:  # exact quota: the mask is exactly n_cols whole columns
        assert ((m.sum(dim=1) == rows) | (m.sum(dim=1) == 0)).all()


@pytest.mark.parametrize("grid", [(8, 64), (8, 16), (4, 10), (6, 5)])
@pytest.mark.parametrize("ratio", [0.5, 0.75])
def test_freq_mode_removes_whole_frequency_rows(grid, ratio):
    rows, cols = grid
    B = 3
    out = random_masking(torch.randn(B, rows * cols, 2), ratio, noise=torch.rand(B, rows * cols), mode="freq",
                         grid=grid)
    m = grid_mask(out.mask, grid)
    n_rows = int(rows * ratio)
    K = int(rows * cols * (1 - ratio))
    full_rows = (m.sum(dim=2) == cols).sum(dim=1)
    assert (full_rows >= n_rows).all()
    assert out.mask.sum(dim=1).eq(rows * cols - K).all()
    if n_rows * cols == rows * cols - K:
        assert ((m.sum(dim=2) == cols) | (m.sum(dim=2) == 0)).all()


def test_base_grid_time_and_freq_at_075_are_exactly_structured():
    grid = (8, 64)
    noise = torch.rand(2, 512)
    m = grid_mask(random_masking(torch.randn(2, 512, 3), 0.75, noise=noise, mode="time", grid=grid).mask, grid)
    assert ((m.sum(dim=1) == 8).sum(dim=1) == 48).all() and ((m.sum(dim=1) == 0).sum(dim=1) == 16).all()
    m = grid_mask(random_masking(torch.randn(2, 512, 3), 0.75, noise=noise, mode="freq", grid=grid).mask, grid)
    assert ((m.sum(dim=2) == 64).sum(dim=1) == 6).all() and ((m.sum(dim=2) == 0).sum(dim=1) == 2).all()


def test_freq_mode_with_more_quota_than_rows_fills_randomly():
    """freq at 0.85 on 8 x 64: 6 whole rows (384 tokens) but 436 must go; 52 more come from the other rows."""
    grid = (8, 64)
    out = random_masking(torch.randn(2, 512, 3), 0.85, noise=torch.rand(2, 512), mode="freq", grid=grid)
    m = grid_mask(out.mask, grid)
    assert out.mask.sum(dim=1).eq(512 - int(512 * 0.15)).all()
    assert ((m.sum(dim=2) == 64).sum(dim=1) >= 6).all()


@pytest.mark.parametrize("grid", [(8, 64), (8, 16), (6, 20)])
def test_tf_mode_marks_whole_columns_and_rows_and_removes_inside_the_mark_first(grid):
    """tf at ratio r: floor(cols*r*0.7) time columns and floor(rows*r*0.7) frequency rows are marked first
    (spec §3.6); the removal count is always exact (L - K), so the marked set is removed first and any remaining
    quota is filled randomly, or, when the marks exceed the quota, the removed set lies inside the marks."""
    rows, cols = grid
    ratio, L, B = 0.75, grid[0] * grid[1], 3
    noise = torch.rand(B, L)
    marked = grid_mask((structured_noise(noise, ratio, "tf", grid) >= 1).float(), grid)
    n_cols, n_rows = int(cols * ratio * 0.7), int(rows * ratio * 0.7)
    assert ((marked.sum(dim=1) == rows).sum(dim=1) >= n_cols).all()  # whole columns
    assert ((marked.sum(dim=2) == cols).sum(dim=1) >= n_rows).all()  # whole rows
    n_marked = n_cols * rows + n_rows * cols - n_cols * n_rows
    assert marked.sum(dim=(1, 2)).eq(n_marked).all()
    out = random_masking(torch.randn(B, L, 3), ratio, noise=noise, mode="tf", grid=grid)
    m = grid_mask(out.mask, grid)
    K = int(L * (1 - ratio))
    assert out.mask.sum(dim=1).eq(L - K).all()
    if n_marked <= L - K:
        assert (m >= marked).all()  # every marked token is removed
    else:
        assert (m <= marked).all()  # only marked tokens are removed


def test_base_tf_at_075_marks_388_and_removes_384_of_them():
    grid = (8, 64)
    noise = torch.rand(3, 512)
    marked = (structured_noise(noise, 0.75, "tf", grid) >= 1).float()
    assert marked.sum(dim=1).eq(388).all()  # 33 columns x 8 + 4 rows x 64 - 33 x 4
    out = random_masking(torch.randn(3, 512, 3), 0.75, noise=noise, mode="tf", grid=grid)
    assert out.mask.sum(dim=1).eq(384).all()
    assert (out.mask <= marked).all()


# ----------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------


def test_bad_inputs_raise_value_errors():
    x = torch.randn(2, 32, 4)
    with pytest.raises(ValueError, match="tokens"):
        random_masking(torch.randn(2, 32), 0.5)
    for bad in (-0.1, 1.01, 1.5):  # 1.0 is allowed: every token masked
        with pytest.raises(ValueError, match="ratio"):
            random_masking(x, bad)
    with pytest.raises(ValueError, match="mode"):
        random_masking(x, 0.5, mode="random")
    with pytest.raises(ValueError, match="noise"):
        random_masking(x, 0.5, noise=torch.rand(2, 31))
    with pytest.raises(ValueError, match="noise"):
        random_masking(x, 0.5, noise=torch.rand(32))
    with pytest.raises(ValueError, match="grid"):
        random_masking(x, 0.5, mode="time")
    with pytest.raises(ValueError, match="grid"):
        random_masking(x, 0.5, mode="freq", grid=(8, 5))
