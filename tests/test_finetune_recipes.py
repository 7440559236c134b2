"""The fine-tuning recipes against the official scripts (spec §5.3): preset values, overrides, the per-epoch
schedule they select (:func:`cavmae_lite.train.step_lr_factor`), the main metric of each."""

from __future__ import annotations

import pytest
import torch

from cavmae_lite.finetune import RECIPES, get_recipe
from cavmae_lite.train import step_lr_factor


def test_recipes_hold_the_official_script_values():
    as20k, as2m, vgg = RECIPES["as20k"], RECIPES["as2m"], RECIPES["vggsound"]
    got = [(r.lr, r.head_lr_mult, r.epochs, r.batch_size, r.lr_start, r.lr_step, r.lr_decay, r.wa_start, r.wa_end,
            r.loss, r.balanced, r.metric) for r in (as20k, as2m, vgg)]
    assert got == [(5e-5, 100, 15, 36, 5, 1, 0.5, 3, 15, "bce", False, "mAP"),
                   (1e-5, 50, 10, 48, 2, 1, 0.5, 1, 10, "bce", True, "mAP"),
                   (1e-4, 10, 10, 48, 2, 1, 0.5, 3, 10, "ce", True, "accuracy")]
    for r in (as20k, as2m, vgg):
        assert (r.freqm, r.timem, r.mixup, r.mixup_alpha, r.label_smoothing, r.schedule) == (48, 192, 0.5, 10.0, 0.1,
                                                                                           "step")
        assert (r.weight_decay, r.betas, r.frame_average, r.freeze_base) == (5e-7, (0.95, 0.999), True, False)
    c = RECIPES["custom"]
    assert (c.schedule, c.freqm, c.timem, c.mixup, c.label_smoothing, c.wa_start, c.head_lr_mult) == (
        "cosine", 0, 0, 0.0, 0.0, None, 10.0)


def test_main_metric_of_each_recipe():
    assert [RECIPES[n].resolved_metric(multilabel=False) for n in ("as20k", "as2m", "vggsound", "custom")] == [
        "mAP", "mAP", "accuracy", "accuracy"]
    assert RECIPES["custom"].resolved_metric(multilabel=True) == "mAP"
    assert RECIPES["custom"].resolved_loss(multilabel=True) == "bce"


def test_get_recipe_overrides_and_rejects_bad_values():
    r = get_recipe("as20k", epochs=2, lr=None, freqm=0)
    assert (r.epochs, r.lr, r.freqm, r.name) == (2, 5e-5, 0, "as20k")
    assert get_recipe(r, lr=1e-3).lr == 1e-3 and get_recipe(r).freqm == 0
    with pytest.raises(ValueError, match="unknown recipe fields"):
        get_recipe("as20k", freq_mask=3)
    with pytest.raises(ValueError, match="unknown recipe"):
        get_recipe("as3m")
    with pytest.raises(ValueError, match="wa_start"):
        get_recipe("custom", wa_start=2)
    with pytest.raises(ValueError, match="mixup"):
        get_recipe("custom", mixup=1.5)


@pytest.mark.parametrize("start,step,decay", [(5, 1, 0.5), (2, 1, 0.5), (2, 3, 0.1), (0, 2, 0.5)])
def test_step_schedule_is_multisteplr_stepped_per_epoch(start, step, decay):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1.0)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(range(start, 1000, step)), gamma=decay)
    for epoch in range(1, 16):
        assert step_lr_factor(epoch, start, step, decay) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
        opt.step()
        sched.step()  # the official loop steps the scheduler once, after each epoch


def test_as20k_lr_by_epoch_by_hand():
    r = RECIPES["as20k"]
    lrs = [r.lr * step_lr_factor(e, r.lr_start, r.lr_step, r.lr_decay) for e in range(1, 9)]
    assert lrs == pytest.approx([5e-5] * 5 + [2.5e-5, 1.25e-5, 6.25e-6])
