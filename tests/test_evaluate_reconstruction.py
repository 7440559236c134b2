"""cavmae_lite.evaluate.reconstruction: un-normalising norm_pix predictions and the masked-patch report."""

from __future__ import annotations

import pytest
import torch

from cavmae_lite.evaluate import STATS, reconstruction_report, unnormalize_patches
from cavmae_lite.model import CAVMAE
from tests.helpers import PairedDataset, micro_config


def test_unnormalize_patches_modes():
    torch.manual_seed(0)
    target = torch.randn(2, 12, 16) * 3 + 5
    mask = torch.zeros(2, 12)
    mask[:, [0, 7]] = 1
    mu, sd = target.mean(-1, keepdim=True), (target.var(-1, keepdim=True) + 1e-6).sqrt()
    pred = (target - mu) / sd  # a perfect norm_pix prediction
    assert torch.allclose(unnormalize_patches(pred, target, mask, (3, 4), "target"), target, atol=1e-4)
    assert torch.equal(unnormalize_patches(pred, target, mask, (3, 4), "none"), pred)
    vis = unnormalize_patches(pred, target, mask, (3, 4), "visible")
    keep = mask[0] == 0
    assert torch.allclose(vis[:, keep], target[:, keep], atol=1e-4)  # visible patches: their own statistics
    # a removed patch's mean is a convex combination of the visible patches' means
    m = vis[0, 0].mean()
    assert mu[0, keep].min() - 1e-4 <= m <= mu[0, keep].max() + 1e-4
    assert STATS == ("visible", "target", "none")
    with pytest.raises(ValueError, match="stats"):
        unnormalize_patches(pred, target, mask, (3, 4), "oracle")


def test_visible_statistics_come_from_the_nearest_visible_patches():
    """Only the removed patch's neighbours differ from the rest: its borrowed mean leans towards theirs."""
    target = torch.zeros(1, 9, 4)
    target[0, :, :2], target[0, :, 2:] = -1.0, 1.0  # every patch: mean 0, std ~1.15
    target[0, [1, 3]] += 10.0  # the two 4-neighbours of patch 0 on a 3 x 3 grid: mean 10
    mask = torch.zeros(1, 9)
    mask[0, 0] = 1
    out = unnormalize_patches(torch.zeros(1, 9, 4), target, mask, (3, 3), "visible")
    assert 5.0 < float(out[0, 0].mean()) < 10.0  # weights 1 / d^2: the near patches dominate
    assert torch.allclose(out[0, 1:].mean(-1), target[0, 1:].mean(-1))


def test_reconstruction_report_keys_baselines_and_determinism():
    c = micro_config()
    torch.manual_seed(0)
    model = CAVMAE(c)
    ds = PairedDataset(c, n=12)
    r = reconstruction_report(model, ds, batch_size=5, seed=1)
    assert set(r) == {k.format(m) for m in "av" for k in ("rec_{}", "rec_{}_zero", "mse_{}", "mse_{}_mean")}
    P = c.patch_size ** 2  # audio patch: P values standardised with the unbiased variance
    assert r["rec_a_zero"] == pytest.approx((P - 1) / P, rel=1e-3)
    assert r == reconstruction_report(model, ds, batch_size=5, seed=1)
    assert r != reconstruction_report(model, ds, batch_size=5, seed=2)
    assert reconstruction_report(model, ds, batch_size=4, seed=1, max_clips=6).keys() == r.keys()
    assert model.training  # the report restores the mode it found
