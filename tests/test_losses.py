"""Losses against hand computations on 2-sample toys (spec §3.10)."""

from __future__ import annotations

import math

import pytest
import torch

from cavmae_lite import info_nce, reconstruction_loss
from cavmae_lite.losses import normalize_patches


def toy():
    # 2 samples x 2 patches x 3 values
    pred = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
                         [[1.0, 1.0, 1.0], [2.0, 0.0, -2.0]]])
    target = torch.tensor([[[1.0, 2.0, 5.0], [1.0, 1.0, 1.0]],
                           [[0.0, 2.0, 4.0], [3.0, 3.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    return pred, target, mask


def test_reconstruction_loss_without_norm_pix_by_hand():
    pred, target, mask = toy()
    # per-patch mean squared errors
    e00 = (0 + 0 + 4) / 3
    e10 = (1 + 1 + 9) / 3
    e11 = (1 + 9 + 4) / 3
    expected = (e00 + e10 + e11) / 3  # patch (0, 1) is visible and ignored
    got = reconstruction_loss(pred, target, mask, norm_pix_loss=False)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_reconstruction_loss_with_norm_pix_by_hand():
    pred, target, mask = toy()

    def standardise(vals):
        m = sum(vals) / 3
        var = sum((v - m) ** 2 for v in vals) / 2  # unbiased (N - 1)
        return [(v - m) / math.sqrt(var + 1e-6) for v in vals]

    def err(p, t):
        return sum((a - b) ** 2 for a, b in zip(p, t)) / 3

    t = target.tolist()
    p = pred.tolist()
    expected = (err(p[0][0], standardise(t[0][0])) + err(p[1][0], standardise(t[1][0]))
                + err(p[1][1], standardise(t[1][1]))) / 3
    got = reconstruction_loss(pred, target, mask, norm_pix_loss=True)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # a constant patch standardises to zeros thanks to eps (no NaN)
    assert torch.equal(normalize_patches(torch.ones(1, 1, 4)), torch.zeros(1, 1, 4))


def test_reconstruction_loss_is_the_default_norm_pix_and_validates_shapes():
    pred, target, mask = toy()
    assert torch.equal(reconstruction_loss(pred, target, mask), reconstruction_loss(pred, target, mask, True))
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_loss(pred, target[:, :1], mask)
    with pytest.raises(ValueError, match="mask"):
        reconstruction_loss(pred, target, mask[:, :1])
    # nothing masked: 0, not NaN
    assert reconstruction_loss(pred, target, torch.zeros(2, 2)).item() == 0.0


def hand_sim():
    """Embeddings whose cosine-similarity matrix is [[1, 0], [0.6, 0.8]] (rows audio, columns video)."""
    audio = torch.tensor([[2.0, 0.0], [0.6, 0.8]])  # first is not unit-norm: normalisation must happen
    video = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    return audio, video, [[1.0, 0.0], [0.6, 0.8]]


def test_info_nce_single_direction_by_hand():
    audio, video, S = hand_sim()
    tau = 0.5
    L = [[s / tau for s in row] for row in S]
    # for each video column j: -log softmax over audio i of L[i][j], at i = j
    col0 = -(L[0][0] - math.log(math.exp(L[0][0]) + math.exp(L[1][0])))
    col1 = -(L[1][1] - math.log(math.exp(L[0][1]) + math.exp(L[1][1])))
    res = info_nce(audio, video, temperature=tau)
    assert res.loss.item() == pytest.approx((col0 + col1) / 2, rel=1e-6)
    torch.testing.assert_close(res.logits, torch.tensor(L))
    assert res.accuracy.item() == 1.0  # column 0: 2.0 > 1.2; column 1: 1.6 > 0.0


def test_info_nce_bidirectional_and_accuracy_by_hand():
    audio, video, S = hand_sim()
    tau = 0.5
    L = [[s / tau for s in row] for row in S]
    # audio -> video direction: for each audio row i, softmax over videos j
    row0 = -(L[0][0] - math.log(math.exp(L[0][0]) + math.exp(L[0][1])))
    row1 = -(L[1][1] - math.log(math.exp(L[1][0]) + math.exp(L[1][1])))
    col0 = -(L[0][0] - math.log(math.exp(L[0][0]) + math.exp(L[1][0])))
    col1 = -(L[1][1] - math.log(math.exp(L[0][1]) + math.exp(L[1][1])))
    res = info_nce(audio, video, temperature=tau, bidirectional=True)
    assert res.loss.item() == pytest.approx(((col0 + col1) / 2 + (row0 + row1) / 2) / 2, rel=1e-6)
    assert res.accuracy.item() == 1.0


def test_c_acc_counts_videos_whose_best_audio_is_their_own():
    # similarities: S = [[1, 0.9], [0, 0.436]] -> video 0 picks audio 0 (ok), video 1 picks audio 0 (wrong)
    audio = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    video = torch.tensor([[1.0, 0.0], [0.9, math.sqrt(1 - 0.81)]])
    res = info_nce(audio, video, temperature=0.05)
    assert res.accuracy.item() == 0.5
    # the audio -> video direction: audio 0 picks video 0 (ok), audio 1 picks video 1 (ok) -> mean 0.75
    assert info_nce(audio, video, temperature=0.05, bidirectional=True).accuracy.item() == 0.75


def test_info_nce_default_temperature_and_shape_errors():
    audio, video, S = hand_sim()
    assert torch.allclose(info_nce(audio, video).logits, torch.tensor(S) / 0.05)
    with pytest.raises(ValueError):
        info_nce(audio, video[:1])
    with pytest.raises(ValueError):
        info_nce(audio[0], video[0])

def test_reconstruction_loss_scores_masked_patches_only_and_matches_the_dense_form():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 10, 12, generator=g, requires_grad=True)
    target = torch.randn(3, 10, 12, generator=g)
    mask = (torch.rand(3, 10, generator=g) < 0.4).float()  # a different count per row
    dense = (((pred - normalize_patches(target)) ** 2).mean(-1) * mask).sum() / mask.sum()
    got = reconstruction_loss(pred, target, mask)
    assert torch.allclose(got, dense, atol=1e-6)
    got.backward()
    assert torch.all(pred.grad[mask == 0] == 0) and torch.any(pred.grad[mask == 1] != 0)
    assert torch.allclose(reconstruction_loss(pred, target, mask.bool()), got)
    with pytest.raises(ValueError, match="only 0 and 1"):
        reconstruction_loss(pred, target, mask * 0.5)
