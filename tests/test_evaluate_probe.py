"""cavmae_lite.evaluate.probe: the linear probe on frozen features (single- and multi-label)."""

from __future__ import annotations

import torch

from cavmae_lite.evaluate import linear_probe


def _clusters(n: int = 200, classes: int = 4, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = 3 * torch.randn(classes, dim, generator=g)
    y = torch.arange(n) % classes
    return centers[y] + 0.5 * torch.randn(n, dim, generator=g), y


def test_linear_probe_single_and_multilabel():
    x, y = _clusters()
    r = linear_probe(x[:120], y[:120], x[120:], y[120:])
    assert r["accuracy"] == 1.0 and r["train_accuracy"] == 1.0
    multi = torch.nn.functional.one_hot(y, 4).float()
    multi[::3, 0] = 1.0
    r = linear_probe(x[:120], multi[:120], x[120:], multi[120:], multilabel=True)
    assert set(r) == {"mAP", "train_mAP"} and r["mAP"] > 0.8


def test_linear_probe_leaves_out_unlabelled_clips_and_is_deterministic():
    x, y = _clusters(seed=1)
    y_missing = y.clone()
    y_missing[::5] = -1  # unlabelled: left out of training and of the score
    keep = y_missing[120:] >= 0
    r = linear_probe(x[:120], y_missing[:120], x[120:], y_missing[120:])
    assert r == linear_probe(x[:120], y_missing[:120], x[120:], y_missing[120:])
    assert r["accuracy"] == linear_probe(x[:120][y_missing[:120] >= 0], y[:120][y_missing[:120] >= 0],
                                         x[120:][keep], y[120:][keep])["accuracy"]


def test_linear_probe_is_invariant_to_feature_scale():
    """Features are standardised with the training statistics: scaling and shifting them changes nothing."""
    x, y = _clusters(seed=2)
    a = linear_probe(x[:120], y[:120], x[120:], y[120:])
    b = linear_probe(10 * x[:120] + 3, y[:120], 10 * x[120:] + 3, y[120:])
    assert a["accuracy"] == b["accuracy"]
