"""The fine-tuning augmentations against their definitions (spec §2.4, §5.3): SpecAugment (torchaudio's draws on
the raw log-mel), label smoothing and mixup targets, waveform and mel-energy mixing."""

from __future__ import annotations

import math

import pytest
import torch
import torchaudio

from cavmae_lite.data.audio import AUDIOSET_MEAN, AUDIOSET_STD, wav_to_fbank
from cavmae_lite.finetune.augment import (
    masked_value,
    mix_logmel_power,
    mix_waveforms,
    mixup_targets,
    smooth_targets,
    spec_augment,
)

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


# ----- labels, mixing --------------------------------------------------------------------------------------


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
