"""Learning-rate schedules (train/optim.py, the package's one home for them): cosine, step (official), set_lr,
and pretraining's lr_factor built from them."""

from __future__ import annotations

import math

import pytest
import torch

from cavmae_lite.config import TrainConfig
from cavmae_lite.train import cosine_lr_factor, lr_factor, pretrain, set_lr, step_lr_factor
from tests.helpers import PairedDataset, micro_config, micro_train


def test_cosine_lr_factor_by_hand():
    assert cosine_lr_factor(0, 100) == 1.0
    assert cosine_lr_factor(50, 100) == pytest.approx(0.5)
    assert cosine_lr_factor(25, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine_lr_factor(100, 100) == pytest.approx(0.0)
    assert cosine_lr_factor(150, 100) == cosine_lr_factor(100, 100)  # stays at the end past the horizon
    assert cosine_lr_factor(0, 0) == 1.0  # no division by zero
    assert cosine_lr_factor(0.5, 1) == pytest.approx(0.5)  # a fraction of a unit horizon


def test_step_lr_factor_is_multisteplr_stepped_per_epoch():
    for start, step, decay in ((2, 1, 0.5), (3, 2, 0.85), (0, 3, 0.1)):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(range(start, 1000, step)), gamma=decay)
        for epoch in range(1, 12):
            assert step_lr_factor(epoch, start, step, decay) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
            opt.step()
            sched.step()
    assert step_lr_factor(7, start=5, step=1, decay=0.5) == 0.25
    with pytest.raises(ValueError, match="1-based"):
        step_lr_factor(0, 5)


def test_set_lr_sets_every_group_and_returns_the_lr():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([{"params": [a], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}], lr=1.0)
    assert set_lr(opt, 0.25) == 0.25
    assert [g["lr"] for g in opt.param_groups] == [0.25, 0.25]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]  # nothing else touched


def test_lr_factor_is_built_from_the_two_schedules():
    tc = TrainConfig(warmup_steps=10, min_lr_ratio=0.1, max_steps=110)
    assert [lr_factor(tc, s, 110, 5) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])  # linear warm-up
    for s in (10, 35, 60, 109, 110, 200):
        assert lr_factor(tc, s, 110, 5) == pytest.approx(0.1 + 0.9 * cosine_lr_factor(s - 10, 100), abs=1e-15)
    for p in (0.0, 0.3, 1.0):  # a time budget: progress instead of a step horizon
        assert lr_factor(tc, 20, None, 5, progress=p) == pytest.approx(0.1 + 0.9 * cosine_lr_factor(p, 1))
    assert lr_factor(tc, 20, None, 5, progress=-0.2) == pytest.approx(1.0)  # clamped to the start
    assert lr_factor(tc, 20, None, 5) == 1.0  # neither: flat
    assert lr_factor(tc.replace(schedule="constant"), 60, 110, 5) == 1.0
    off = TrainConfig.preset("base")  # official: epoch e (0-based) of 100 steps -> step_lr_factor(e + 1)
    for step in range(0, 2500, 50):
        e = step // 100
        assert lr_factor(off, step, None, 100) == step_lr_factor(e + 1, off.decay_start, off.decay_every, 0.5)


def test_the_loop_uses_lr_factor(tmp_path):
    c = micro_config()
    tc = micro_train(max_steps=6, warmup_steps=2, min_lr_ratio=0.0)
    r = pretrain(c, tc, PairedDataset(c, n=16), None, progress=False)
    assert [h["lr"] for h in r.history] == pytest.approx([tc.lr * lr_factor(tc, s, 6, 2) for s in range(6)])


def test_warmup_fraction_scales_with_the_run_and_sync_base_preset():
    """Sync's development recipe: warm-up over 10 % of the steps, then cosine to 0.1 x lr."""
    from cavmae_lite.config import TrainConfig
    from cavmae_lite.train.optim import lr_factor, warmup_steps

    tc = TrainConfig.preset("sync-base", epochs=None, max_steps=1000)
    assert (tc.optimizer, tc.lr, tc.betas, tc.weight_decay, tc.contrast_weight) == ("adam", 2e-4, (0.95, 0.999), 5e-7, 0.1)
    assert warmup_steps(tc, 1000) == 100 and warmup_steps(tc, 50) == 5
    assert lr_factor(tc, 49, 1000, 10) == pytest.approx(0.5) and lr_factor(tc, 99, 1000, 10) == 1.0
    assert lr_factor(tc, 999, 1000, 10) == pytest.approx(0.1, abs=1e-4)
    assert warmup_steps(TrainConfig(max_steps=10), 10) == 100  # no fraction: the step count as before
    with pytest.raises(ValueError, match="warmup_fraction"):
        TrainConfig(max_steps=1, warmup_fraction=1.0)
