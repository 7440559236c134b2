"""The fine-tuning training data (spec §5.3): mixup of both modalities with one lambda, wave mixup from the wavs,
the balanced sampler of src/gen_weight_file.py, and randomness drawn afresh for every draw of a clip."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset, WeightedRandomSampler

from cavmae_lite.data.audio import AUDIOSET_MEAN, AUDIOSET_STD
from cavmae_lite.finetune.augment import mix_logmel_power, mix_waveforms, mixup_targets, smooth_targets
from cavmae_lite.finetune.dataset import (
    DrawSampler,
    FinetuneTrainSet,
    balanced_sampler,
    balanced_weights,
    label_lists,
    train_loader,
)
from tests.helpers import PairedDataset, micro_config


@pytest.fixture(scope="module")
def synthetic_micro(tmp_path_factory):
    from cavmae_lite.data import make_synthetic

    out = tmp_path_factory.mktemp("data") / "syn"
    make_synthetic(out, seed=0, num_train=12, num_val=0, num_test=4, mp4=0, workers=1, progress=False)
    return out


def _augmenting(n: int = 16, **kw) -> tuple[PairedDataset, FinetuneTrainSet]:
    base = PairedDataset(micro_config(), n=n)
    with pytest.warns(UserWarning, match="mel energies"):
        return base, FinetuneTrainSet(base, 4, **{"mixup": 1.0, "freqm": 8, "timem": 8, "seed": 0, **kw})


# ----- mixup -----------------------------------------------------------------------------------------------


def test_mixup_mixes_audio_video_and_labels_with_one_lambda():
    base, ds = _augmenting(12, label_smoothing=0.1, freqm=0, timem=0, seed=3)
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
    assert ds[5]["mix_lambda"] == lams[5]  # a plain index is seeded per (seed, epoch, index): reproducible
    ds.set_epoch(1)
    assert ds[5]["mix_lambda"] != lams[5]


def test_mixup_rate_and_no_mixup_targets():
    base, ds = _augmenting(200, mixup=0.5, freqm=0, timem=0)
    mixed = [ds[i]["mix_lambda"] != 1.0 for i in range(len(ds))]
    assert 0.4 < sum(mixed) / len(mixed) < 0.6
    plain = FinetuneTrainSet(base, 4, label_smoothing=0.1)
    it = plain[7]
    assert it["mix_index"] == 7 and it["mix_lambda"] == 1.0
    torch.testing.assert_close(it["target"], smooth_targets(base[7]["labels"], 0.1))
    torch.testing.assert_close(it["audio"], base.audio[7])


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


# ----- randomness per draw ---------------------------------------------------------------------------------


def test_every_draw_of_a_clip_gets_its_own_augmentation():
    _, ds = _augmenting()
    only_clip_3 = torch.zeros(16, dtype=torch.float64)
    only_clip_3[3] = 1.0
    keys = list(DrawSampler(WeightedRandomSampler(only_clip_3, 16, generator=torch.Generator().manual_seed(0))))
    assert keys == [(3, d) for d in range(16)]
    items = [ds[k] for k in keys]
    assert len({it["mix_lambda"] for it in items}) == 16 and len({it["mix_index"] for it in items}) > 1
    assert all(not torch.equal(items[0]["audio"], it["audio"]) for it in items[1:])  # other partner, masks
    assert ds[keys[5]]["mix_lambda"] == items[5]["mix_lambda"]  # a draw's augmentation is a function of its key


def _epoch(loader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    batches = list(loader)
    return tuple(torch.cat([b[k] for b in batches]) for k in ("index", "mix_lambda", "audio"))


def test_balanced_loader_draws_afresh_and_the_seed_repeats_the_run():
    _, ds = _augmenting(mixup=0.5)
    loader = train_loader(ds, 4, True, 0, 4)
    index, lam, audio = _epoch(loader)
    twice = [i for i in index.unique() if (index == i).sum() >= 2]
    assert twice, "a balanced epoch of 16 draws with replacement repeats some clip"
    for clip in twice:
        pos = (index == clip).nonzero().flatten()
        assert not torch.equal(audio[pos[0]], audio[pos[1]])  # the official loader draws afresh each time
    again = _epoch(train_loader(ds, 4, True, 0, 4))  # same seed: the same epoch, draw for draw
    assert all(torch.equal(a, b) for a, b in zip((index, lam, audio), again))
    second = _epoch(loader)  # the next epoch of the run: new draws
    assert not torch.equal(second[2], audio)
    workers = _epoch(train_loader(ds, 4, True, 0, 4, num_workers=2))  # keys come from the main process
    assert all(torch.equal(a, b) for a, b in zip((index, lam, audio), workers))


def test_shuffled_loader_changes_augmentation_across_epochs():
    _, ds = _augmenting()
    loader = train_loader(ds, 8, False, 0, 4)
    first, second = _epoch(loader), _epoch(loader)
    assert sorted(first[0].tolist()) == list(range(16)) == sorted(second[0].tolist())  # each clip once per epoch
    by_clip = [{int(i): lam for i, lam in zip(e[0], e[1].tolist())} for e in (first, second)]
    assert all(by_clip[0][i] != by_clip[1][i] for i in range(16))


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
