"""The official fine-tuning pieces against their definitions (spec §2.4, §5.3): recipe values, the per-epoch
schedule, SpecAugment, mixup, label smoothing, weight averaging, the balanced sampler, the official metrics."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio
from torch.utils.data import Subset

from cavmae_lite.augment import (
    masked_value,
    mix_logmel_power,
    mix_waveforms,
    mixup_targets,
    smooth_targets,
    spec_augment,
)
from cavmae_lite.averaging import WeightAverager, average_state_dicts
from cavmae_lite.classification import classification_metrics, d_prime, roc_auc
from cavmae_lite.data.audio import AUDIOSET_MEAN, AUDIOSET_STD, wav_to_fbank
from cavmae_lite.finetune import finetune, finetune_recipe
from cavmae_lite.ft_data import FinetuneTrainSet, balanced_sampler, balanced_weights, label_lists
from cavmae_lite.model import CAVMAE
from cavmae_lite.recipes import RECIPES, get_recipe, step_lr_factor
from tests.test_train_helpers import PairedDataset, micro_config


@pytest.fixture(scope="module")
def synthetic_micro(tmp_path_factory):
    from cavmae_lite.data import make_synthetic

    out = tmp_path_factory.mktemp("data") / "syn"
    make_synthetic(out, seed=0, num_train=12, num_val=0, num_test=4, mp4=0, workers=1, progress=False)
    return out


# ----- recipes and schedule --------------------------------------------------------------------------------


def test_recipes_hold_the_official_script_values():
    as20k, as2m, vgg = RECIPES["as20k"], RECIPES["as2m"], RECIPES["vggsound"]
    got = [(r.lr, r.head_lr_mult, r.epochs, r.batch_size, r.lr_start, r.lr_step, r.lr_decay, r.wa_start, r.wa_end,
            r.loss, r.balanced) for r in (as20k, as2m, vgg)]
    assert got == [(5e-5, 100, 15, 36, 5, 1, 0.5, 3, 15, "bce", False),
                   (1e-5, 50, 10, 48, 2, 1, 0.5, 1, 10, "bce", True),
                   (1e-4, 10, 10, 48, 2, 1, 0.5, 3, 10, "ce", True)]
    for r in (as20k, as2m, vgg):
        assert (r.freqm, r.timem, r.mixup, r.mixup_alpha, r.label_smoothing, r.schedule) == (48, 192, 0.5, 10.0, 0.1,
                                                                                           "step")
        assert (r.weight_decay, r.betas) == (5e-7, (0.95, 0.999))
    c = RECIPES["custom"]
    assert (c.schedule, c.freqm, c.timem, c.mixup, c.label_smoothing, c.wa_start, c.head_lr_mult) == (
        "cosine", 0, 0, 0.0, 0.0, None, 10.0)


def test_get_recipe_overrides_and_rejects_bad_values():
    r = get_recipe("as20k", epochs=2, lr=None, freqm=0)
    assert (r.epochs, r.lr, r.freqm, r.name) == (2, 5e-5, 0, "as20k")
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


def test_finetune_uses_the_schedule_per_epoch():
    c = micro_config()
    ds = PairedDataset(c, n=16)
    r = finetune(CAVMAE(c), ds, None, num_classes=4, schedule="step", lr_start=1, lr_decay=0.5, epochs=3,
                 batch_size=8, lr=1e-3, head_lr_mult=100)
    by_epoch = {}
    for h in r.history:
        by_epoch.setdefault(h["epoch"], set()).add((h["lr"], h["head_lr"]))
    assert by_epoch == {1: {(1e-3, 0.1)}, 2: {(5e-4, 0.05)}, 3: {(2.5e-4, 0.025)}}
    with pytest.raises(ValueError, match="unknown recipe fields"):
        finetune(CAVMAE(c), ds, None, num_classes=4, max_steps=1, warmup=3)


# ----- SpecAugment -----------------------------------------------------------------------------------------


def test_spec_augment_matches_torchaudio_masks_on_the_raw_logmel():
    raw = torch.randn(64, 32) * 3 - 5  # a raw log-mel (T, F)
    for seed in range(5):
        torch.manual_seed(seed)  # torchaudio draws from the global generator: same stream as Generator(seed)
        spec = raw.T[None]
        spec = torchaudio.transforms.FrequencyMasking(20)(spec)
        spec = torchaudio.transforms.TimeMasking(30)(spec)
        official = (spec[0].T - AUDIOSET_MEAN) / AUDIOSET_STD  # masks first, then normalisation
        ours = spec_augment((raw - AUDIOSET_MEAN) / AUDIOSET_STD, 20, 30, masked_value(AUDIOSET_MEAN, AUDIOSET_STD),
                            torch.Generator().manual_seed(seed))
        torch.testing.assert_close(ours, official)


def test_spec_augment_widths_and_fill_value():
    x = torch.randn(1024, 128)
    fill = masked_value(AUDIOSET_MEAN, AUDIOSET_STD)
    assert fill == pytest.approx(1.1329, abs=1e-4)
    g = torch.Generator().manual_seed(0)
    fw, tw = [], []
    for _ in range(400):
        y = spec_augment(x, 48, 192, fill, g)
        hit = y != x
        assert torch.all(y[hit] == fill)
        cols = hit.all(dim=0).nonzero().flatten()  # frequency bins masked over all time
        rows = hit.all(dim=1).nonzero().flatten()  # time frames masked over all bins
        for idx in (cols, rows):  # one contiguous mask each
            assert len(idx) == 0 or int(idx[-1] - idx[0]) + 1 == len(idx)
        # every changed cell lies in a masked row or column
        assert torch.equal(hit, hit.all(0, keepdim=True) | hit.all(1, keepdim=True))
        fw.append(len(cols))
        tw.append(len(rows))
    assert 0 <= min(fw) and max(fw) <= 47 and max(fw) >= 44  # floor(U * 48): 0 .. 47
    assert 0 <= min(tw) and max(tw) <= 191 and max(tw) >= 180
    assert abs(sum(fw) / len(fw) - 23.5) < 2.5 and abs(sum(tw) / len(tw) - 95.5) < 10


def test_spec_augment_rejects_bad_input():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"\(T, F\)"):
        spec_augment(torch.zeros(2, 8, 8), 4, 4, 0.0, g)
    with pytest.raises(ValueError, match=">= 0"):
        spec_augment(torch.zeros(8, 8), -1, 4, 0.0, g)


# ----- labels, mixup ---------------------------------------------------------------------------------------


def test_label_smoothing_values():
    y = torch.tensor([0.0, 1.0, 0.0, 1.0])
    assert smooth_targets(y, 0.1).tolist() == pytest.approx([0.025, 0.9, 0.025, 0.9])
    assert smooth_targets(y, 0.0).tolist() == y.tolist()
    t = mixup_targets(torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 0, 1.0, 0]), 0.7, 0.1)
    assert t.tolist() == pytest.approx([0.025 + 0.63, 0.025, 0.025 + 0.27, 0.025])
    same = mixup_targets(y, y, 0.3, 0.0)  # mixing a clip with itself keeps its labels
    assert same.tolist() == pytest.approx(y.tolist())
    with pytest.raises(ValueError, match="smoothing"):
        smooth_targets(y, 1.0)


def test_mixup_mixes_audio_video_and_labels_with_one_lambda():
    c = micro_config()
    base = PairedDataset(c, n=12)
    with pytest.warns(UserWarning, match="mel energies"):
        ds = FinetuneTrainSet(base, 4, mixup=1.0, label_smoothing=0.1, seed=3)
    lams = []
    for i in range(len(ds)):
        it = ds[i]
        j, lam = it["mix_index"], it["mix_lambda"]
        assert 0 < lam < 1
        lams.append(lam)
        torch.testing.assert_close(it["video"], lam * base.video[i] + (1 - lam) * base.video[j])
        torch.testing.assert_close(it["target"], mixup_targets(base[i]["labels"], base[j]["labels"], lam, 0.1))
        raw = [base.audio[k].double() * AUDIOSET_STD + AUDIOSET_MEAN for k in (i, j)]
        expect = (mix_logmel_power(raw[0], raw[1], lam) - AUDIOSET_MEAN) / AUDIOSET_STD
        torch.testing.assert_close(it["audio"], expect.float())
    m = sum(lams) / len(lams)
    assert 0.35 < m < 0.65 and min(lams) > 0.1  # Beta(10, 10): mean 0.5, rarely near 0 or 1
    assert ds[5]["mix_lambda"] == lams[5]  # seeded per (seed, epoch, index): reproducible
    ds.set_epoch(1)
    assert ds[5]["mix_lambda"] != lams[5]


def test_mixup_rate_and_no_mixup_targets():
    c = micro_config()
    base = PairedDataset(c, n=200)
    with pytest.warns(UserWarning):
        ds = FinetuneTrainSet(base, 4, mixup=0.5, seed=0)
    mixed = [ds[i]["mix_lambda"] != 1.0 for i in range(len(ds))]
    assert 0.4 < sum(mixed) / len(mixed) < 0.6
    plain = FinetuneTrainSet(base, 4, label_smoothing=0.1)
    it = plain[7]
    assert it["mix_index"] == 7 and it["mix_lambda"] == 1.0
    torch.testing.assert_close(it["target"], smooth_targets(base[7]["labels"], 0.1))
    torch.testing.assert_close(it["audio"], base.audio[7])


def test_mix_waveforms_pads_or_cuts_and_removes_the_mean():
    w1, w2 = torch.randn(1000) + 0.3, torch.randn(600) - 0.2
    m = mix_waveforms(w1, w2, 0.6)
    assert m.shape == (1000,) and abs(float(m.mean())) < 1e-6
    a, b = w1 - w1.mean(), w2 - w2.mean()
    expect = 0.6 * a + 0.4 * torch.cat([b, torch.zeros(400)])
    torch.testing.assert_close(m, expect - expect.mean())
    assert mix_waveforms(w2, w1, 0.5).shape == (600,)  # the partner is cut to the first clip's length


def test_power_mixing_approximates_waveform_mixing_better_than_logmel_averaging():
    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    w1 = 0.3 * torch.sin(2 * math.pi * 440 * t) + 0.01 * torch.randn(16000, generator=g)
    w2 = 0.1 * torch.randn(16000, generator=g)
    lam = 0.6
    x1, x2 = wav_to_fbank(w1, num_mel_bins=32), wav_to_fbank(w2, num_mel_bins=32)
    truth = wav_to_fbank(mix_waveforms(w1, w2, lam), num_mel_bins=32)
    power = mix_logmel_power(x1, x2, lam)
    linear = lam * x1 + (1 - lam) * x2
    assert float((power - truth).abs().mean()) < 0.5 * float((linear - truth).abs().mean())
    assert float((power - truth).abs().mean()) < 0.3  # nats of mel energy


def test_power_mixing_keeps_padding_rows():
    x1, x2 = torch.randn(10, 4), torch.randn(10, 4)
    pad1 = torch.zeros(10, dtype=torch.bool)
    pad1[8:] = True
    pad2 = torch.zeros(10, dtype=torch.bool)
    pad2[5:] = True
    out = mix_logmel_power(x1, x2, 0.5, pad1, pad2)
    assert torch.all(out[8:] == 0)  # past the first clip's end: still zero padding
    torch.testing.assert_close(out[5:8], x1[5:8] + 2 * math.log(0.5))  # the partner's padding adds no energy


def test_wave_mixup_reads_the_wavs(synthetic_micro):
    from cavmae_lite.data import load_dataset
    from cavmae_lite.data.audio import audio_to_input, load_audio

    c = micro_config()
    base = load_dataset(synthetic_micro, c, "train", train=True)
    ds = FinetuneTrainSet(base, base.num_classes, mixup=1.0, freqm=4, timem=4, seed=0)
    assert ds.mixup_audio == "wave" and ds.noise and base.noise  # noise moved after masking; caller's set untouched
    plain = FinetuneTrainSet(base, base.num_classes, mixup=1.0, seed=0)
    plain.noise = False
    it = plain[2]
    m = base.manifest
    w = [load_audio(m.wav_path(m.entries[base.rows[k]])) for k in (2, it["mix_index"])]
    expect = audio_to_input(mix_waveforms(w[0], w[1], it["mix_lambda"]), c.audio_length, c.num_mel_bins)
    torch.testing.assert_close(it["audio"], expect)


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


def test_finetune_weight_averaging_equals_the_mean_of_the_chosen_epochs():
    c = micro_config()
    model, ds = CAVMAE(c), PairedDataset(c, n=16)
    kw = dict(num_classes=4, batch_size=8, freqm=4, timem=4, mixup=0.5, lr=1e-3)
    nowa = get_recipe("as20k").replace(wa_start=None, wa_end=None)
    with pytest.warns(UserWarning):
        ends = [finetune_recipe(model, ds, None, nowa, epochs=e, **kw).classifier.state_dict() for e in (2, 3)]
    with pytest.warns(UserWarning):
        r = finetune_recipe(model, ds, ds, "as20k", epochs=3, wa_start=2, wa_end=3, **kw)
    assert r.report["wa_epochs"] == [2, 3]
    torch.testing.assert_close(r.classifier.state_dict(), ends[1])  # same seed: the runs agree
    wa = r.averaged.state_dict()
    for k in wa:
        torch.testing.assert_close(wa[k], (ends[0][k] + ends[1][k]) / 2)
    assert set(r.report["wa"]) >= {"mAP", "accuracy", "AUC", "d_prime"}


# ----- balanced sampler ------------------------------------------------------------------------------------


def test_balanced_weights_follow_gen_weight_file():
    w = balanced_weights([[0], [0], [1], [0, 2], []], 3)
    w0, w1, w2 = 1000 / 3.01, 1000 / 1.01, 1000 / 1.01
    assert w.tolist() == pytest.approx([w0, w0, w1, w0 + w2, 0.0])
    with pytest.raises(ValueError, match="labelled"):
        balanced_weights([[], []], 2)
    with pytest.raises(ValueError, match="out of range"):
        balanced_weights([[3]], 2)


def test_balanced_sampler_draws_by_weight_reproducibly():
    w = balanced_weights([[0]] * 9 + [[1]], 2)  # class 1 has one clip: it should come up about half the time
    draws = list(balanced_sampler(w, torch.Generator().manual_seed(0)))
    assert len(draws) == 10
    many = [i for s in range(200) for i in balanced_sampler(w, torch.Generator().manual_seed(s))]
    assert 0.45 < many.count(9) / len(many) < 0.55
    assert draws == list(balanced_sampler(w, torch.Generator().manual_seed(0)))


def test_label_lists_of_datasets(synthetic_micro):
    from cavmae_lite.data import load_dataset

    av = load_dataset(synthetic_micro, micro_config(), "train")
    lists = label_lists(av)
    assert len(lists) == len(av) and all(ls == av.label_indices(i) for i, ls in enumerate(lists))
    assert label_lists(Subset(av, [3, 1])) == [lists[3], lists[1]]
    paired = PairedDataset(micro_config(), n=6)
    assert label_lists(paired) == [[int(y)] for y in paired.labels]


# ----- freeze base, metrics --------------------------------------------------------------------------------


def test_freeze_base_trains_only_the_head():
    c = micro_config()
    model, ds = CAVMAE(c), PairedDataset(c, n=16)
    r = finetune_recipe(model, ds, None, "vggsound", num_classes=4, freeze_base=True, max_steps=3, batch_size=8,
                        mixup=0.0)
    enc = r.classifier.encoder.state_dict()
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in enc.items())
    assert r.report["loss"] == "ce" and len(r.history) == 3
    head0 = finetune(model, ds, None, num_classes=4, max_steps=1, lr=1e-12).classifier.head.fc.weight
    assert not torch.allclose(r.classifier.head.fc.weight, head0)


def test_auc_and_d_prime_against_definitions():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 4, (40,), generator=g).float()  # many ties
    t = (torch.rand(40, generator=g) < 0.4).float()
    pos, neg = s[t > 0], s[t == 0]
    brute = float(((pos[:, None] > neg[None]).float() + 0.5 * (pos[:, None] == neg[None]).float()).mean())
    assert roc_auc(s, t) == pytest.approx(brute)
    assert d_prime(0.5) == pytest.approx(0.0, abs=1e-12)
    assert d_prime(0.7602499389065233) == pytest.approx(1.0, rel=1e-9)  # Phi(1 / sqrt 2)
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    y = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]])  # last clip unlabelled; class 2 no positive
    m = classification_metrics(scores, y)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["AUC"] == pytest.approx((1.0 + 1.0) / 2)  # classes 0 and 1 separate perfectly; class 2 skipped
