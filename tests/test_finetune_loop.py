"""The fine-tuning loop (spec §4, §5.3): one entry point ``finetune(recipe=..., **overrides)``, the schedule
per epoch with the head at its own learning rate, weight averaging, the frozen encoder, and the metrics of the
model a run is compared by."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch.utils.data import Subset

from cavmae_lite.finetune import finetune, get_recipe, predict_classifier, prediction_report
from cavmae_lite.finetune.averaging import WeightAverager, average_state_dicts
from cavmae_lite.model import CAVMAE
from tests.helpers import PairedDataset, micro_config


@pytest.fixture(scope="module")
def micro():
    c = micro_config()
    return CAVMAE(c), PairedDataset(c, n=16)


def test_finetune_uses_the_schedule_per_epoch_and_the_head_lr(micro):
    model, ds = micro
    seen = []
    hook = register_optimizer_step_pre_hook(lambda opt, args, kw: seen.append([g["lr"] for g in opt.param_groups]))
    try:
        r = finetune(model, ds, None, num_classes=4, schedule="step", lr_start=1, lr_decay=0.5, epochs=3,
                     batch_size=8, lr=1e-3, head_lr_mult=100)
    finally:
        hook.remove()
    by_epoch = {}
    for h in r.history:
        by_epoch.setdefault(h["epoch"], set()).add((h["lr"], h["head_lr"]))
    assert by_epoch == {1: {(1e-3, 0.1)}, 2: {(5e-4, 0.05)}, 3: {(2.5e-4, 0.025)}}
    # what the optimisers held at each step: the backbone, then the head (two steps per epoch)
    expect = [g for lr in (1e-3, 5e-4, 2.5e-4) for g in [[lr], [lr * 100]] * 2]
    assert len(seen) == len(expect) and all(a == pytest.approx(b) for a, b in zip(seen, expect))
    with pytest.raises(ValueError, match="unknown recipe fields"):
        finetune(model, ds, None, num_classes=4, max_steps=1, warmup=3)


def test_one_entry_point_for_every_recipe(micro):
    model, ds = micro
    by_name = finetune(model, ds, None, "vggsound", num_classes=4, max_steps=1, batch_size=8, mixup=0.0)
    by_object = finetune(model, ds, None, recipe=get_recipe("vggsound", mixup=0.0), num_classes=4, max_steps=1,
                         batch_size=8)
    assert by_name.recipe == by_object.recipe and by_name.recipe.name == "vggsound"
    assert by_name.report["loss"] == "ce" and by_name.history == [dict(h, time=by_name.history[0]["time"])
                                                                  for h in by_object.history]
    default = finetune(model, ds, None, num_classes=4, max_steps=1)
    assert default.recipe == get_recipe("custom") and default.report["loss"] == "ce"


def test_cosine_schedule_per_step(micro):
    model, ds = micro
    r = finetune(model, ds, None, num_classes=4, batch_size=4, max_steps=4, lr=1e-3)
    assert [h["lr"] for h in r.history] == pytest.approx([1e-3, 1e-3 * (2 + 2 ** 0.5) / 4, 5e-4,
                                                          1e-3 * (2 - 2 ** 0.5) / 4])


# ----- weight averaging ------------------------------------------------------------------------------------


def test_weight_average_is_the_mean_of_the_state_dicts():
    g = torch.Generator().manual_seed(0)
    sds = [{"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g).half(),
            "n": torch.tensor(k)} for k in range(3)]
    avg = average_state_dicts(sds)
    torch.testing.assert_close(avg["w"], (sds[0]["w"] + sds[1]["w"] + sds[2]["w"]) / 3)
    assert avg["b"].dtype == torch.float16 and int(avg["n"]) == 2
    with pytest.raises(ValueError, match="nothing to average"):
        WeightAverager().average()


def test_finetune_weight_averaging_equals_the_mean_of_the_chosen_epochs(micro):
    model, ds = micro
    kw = dict(num_classes=4, batch_size=8, freqm=4, timem=4, mixup=0.5, lr=1e-3)
    nowa = get_recipe("as20k").replace(wa_start=None, wa_end=None)
    with pytest.warns(UserWarning):
        ends = [finetune(model, ds, None, nowa, epochs=e, **kw).classifier.state_dict() for e in (2, 3)]
    with pytest.warns(UserWarning):
        r = finetune(model, ds, ds, "as20k", epochs=3, wa_start=2, wa_end=3, **kw)
    assert r.report["wa_epochs"] == [2, 3]
    torch.testing.assert_close(r.classifier.state_dict(), ends[1])  # same seed: the runs agree
    wa = r.averaged.state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], (ends[0][k] + ends[1][k]) / 2)
    assert set(r.report["wa"]) >= {"mAP", "accuracy", "AUC", "d_prime"}


# ----- what a run reports ----------------------------------------------------------------------------------


def test_metrics_are_the_averaged_model_and_the_recipe_metric(micro):
    model, ds = micro
    train, test = Subset(ds, range(12)), Subset(ds, range(12, 16))
    with pytest.warns(UserWarning):
        r = finetune(model, train, test, "as20k", num_classes=4, batch_size=4, epochs=2, wa_start=1, wa_end=2,
                     freqm=4, timem=4)
    assert r.metrics["model"] == "wa" and r.metrics["metric"] == "mAP"
    wa_row = prediction_report(predict_classifier(r.averaged, test, sigmoid=True))
    assert r.metrics == {**wa_row, "metric": "mAP", "model": "wa"} == {**r.report["wa"], "metric": "mAP",
                                                                         "model": "wa"}
    assert r.score == wa_row["mAP"]


@pytest.mark.parametrize("recipe,multilabel,metric", [("vggsound", False, "accuracy"), ("custom", False, "accuracy"),
                                                      ("custom", True, "mAP")])
def test_metrics_without_averaging_are_the_last_model(micro, recipe, multilabel, metric):
    model, ds = micro
    train, test = Subset(ds, range(12)), Subset(ds, range(12, 16))
    r = finetune(model, train, test, recipe, num_classes=4, multilabel=multilabel, batch_size=4, max_steps=2,
                 mixup=0.0, wa_start=None, wa_end=None)
    assert r.averaged is None and r.report["wa"] is None
    assert r.metrics == {**r.report["last"], "metric": metric, "model": "last"} and r.score == r.metrics[metric]
    assert {"middle_frame_accuracy", "middle_frame_mAP", "AUC", "d_prime", "n"} <= set(r.metrics)
    assert finetune(model, train, None, recipe, num_classes=4, max_steps=1, mixup=0.0).score is None


def test_freeze_base_trains_only_the_head(micro):
    model, ds = micro
    r = finetune(model, ds, None, "vggsound", num_classes=4, freeze_base=True, max_steps=3, batch_size=8, mixup=0.0)
    enc = r.classifier.encoder.state_dict()
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in enc.items())
    assert r.report["loss"] == "ce" and len(r.history) == 3
    head0 = finetune(model, ds, None, num_classes=4, max_steps=1, lr=1e-12).classifier.head.fc.weight
    assert not torch.allclose(r.classifier.head.fc.weight, head0)
