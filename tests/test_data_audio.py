"""Audio preprocessing (spec §2.2): reading any PCM width / rate / channel count, fbank, pad/crop, normalisation."""

import numpy as np
import pytest
import soundfile as sf
import torch

from cavmae_lite.data import (
    AUDIOSET_MEAN,
    AUDIOSET_STD,
    MediaError,
    add_noise_and_roll,
    audio_to_input,
    denormalize_fbank,
    load_audio,
    normalize_fbank,
    pad_or_crop,
    wav_to_fbank,
    write_wav,
)
from tests.media import tone


def _peak_bin(wave, rate=16000):
    return int(wav_to_fbank(wave, rate).mean(0).argmax())


def test_fbank_frame_count_and_shape():
    assert wav_to_fbank(torch.zeros(160000) + 0.01 * torch.randn(160000)).shape == (998, 128)
    assert wav_to_fbank(torch.randn(41600)).shape == (258, 128)  # the synthetic clips: >= 256 for tiny
    assert wav_to_fbank(torch.randn(400)).shape == (1, 128)
    assert wav_to_fbank(torch.randn(16000), num_mel_bins=64).shape == (98, 64)
    with pytest.raises(ValueError, match="shorter than one 25 ms"):
        wav_to_fbank(torch.randn(399))


def test_fbank_removes_dc_and_locates_pitch():
    w = torch.from_numpy(tone(1.0, freq=1000.0))
    a, b = wav_to_fbank(w), wav_to_fbank(w + 0.3)
    assert torch.allclose(a, b, atol=1e-3)
    assert _peak_bin(torch.from_numpy(tone(1.0, freq=500.0))) < _peak_bin(w) < _peak_bin(torch.from_numpy(tone(1.0, freq=3000.0)))


def test_pad_or_crop_before_normalisation():
    fb = torch.randn(100, 128)
    padded = pad_or_crop(fb, 256)
    assert padded.shape == (256, 128) and torch.equal(padded[:100], fb) and padded[100:].abs().sum() == 0
    assert torch.equal(pad_or_crop(fb, 40), fb[:40])
    x = audio_to_input(torch.from_numpy(tone(1.0)), target_length=256)
    assert x.shape == (256, 128)
    # padded rows sit at (0 - mean) / std ~ +1.133 (the official quirk)
    assert torch.allclose(x[200:], torch.full((56, 128), -AUDIOSET_MEAN / AUDIOSET_STD))
    assert abs(float(x[200, 0]) - 1.1329) < 1e-3


def test_normalize_roundtrip():
    fb = torch.randn(10, 128) * 4 - 5
    assert torch.allclose(denormalize_fbank(normalize_fbank(fb)), fb, atol=1e-5)
    assert torch.allclose(normalize_fbank(fb, 1.0, 2.0), (fb - 1) / 2)


def test_noise_and_roll_is_a_small_rolled_perturbation():
    fb = torch.arange(256, dtype=torch.float32)[:, None].repeat(1, 128)
    g = torch.Generator().manual_seed(0)
    out = add_noise_and_roll(fb, g)
    assert out.shape == fb.shape
    shift = int(out[0, 0].floor())  # row 0 now holds original row `shift` (+ noise in [0, 0.1))
    diff = out - torch.roll(fb, -shift, 0)
    assert (diff >= 0).all() and (diff < 0.1).all()


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_pcm_widths(tmp_path, subtype):
    w = tone(0.5, 16000, 440.0, 0.5)
    p = tmp_path / "x.wav"
    sf.write(p, w, 16000, subtype=subtype)
    got = load_audio(p)
    tol = 0.02 if subtype == "PCM_U8" else 1e-3
    assert got.shape == (8000,) and got.dtype == torch.float32
    assert float((got - torch.from_numpy(w)).abs().max()) < tol


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampled_to_16k(tmp_path, rate):
    p = tmp_path / "x.wav"
    sf.write(p, tone(1.0, rate, 1000.0), rate)
    got = load_audio(p)
    assert abs(got.numel() - 16000) <= 1
    assert _peak_bin(got) == _peak_bin(torch.from_numpy(tone(1.0, 16000, 1000.0)))


def test_channels_first_or_mean(tmp_path):
    w = tone(0.5)
    p = tmp_path / "st.wav"
    sf.write(p, np.stack([w, np.zeros_like(w), np.zeros_like(w), w], 1), 16000, subtype="FLOAT")
    assert torch.allclose(load_audio(p), torch.from_numpy(w))
    assert torch.allclose(load_audio(p, channel="mean"), torch.from_numpy(w) / 2)
    assert load_audio(p, channel=1).abs().max() == 0
    with pytest.raises(MediaError, match="channel 7 does not exist"):
        load_audio(p, channel=7)


def test_bad_audio_files_name_file_and_problem(tmp_path):
    nan = tone(0.5)
    nan[100] = np.nan
    nan[200] = np.inf
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    with pytest.raises(MediaError, match=r"nan\.wav: audio contains 2 non-finite"):
        load_audio(tmp_path / "nan.wav")
    sf.write(tmp_path / "short.wav", tone(0.01), 16000)
    with pytest.raises(MediaError, match=r"short\.wav: audio is 10\.0 ms long, shorter than one 25 ms"):
        load_audio(tmp_path / "short.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(MediaError, match=r"empty\.wav: file is empty"):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "junk.wav").write_bytes(b"RIFF" + bytes(range(256)) * 4)
    with pytest.raises(MediaError, match=r"junk\.wav: cannot open as a media file"):
        load_audio(tmp_path / "junk.wav")
    with pytest.raises(MediaError, match="file not found"):
        load_audio(tmp_path / "missing.wav")


def test_silence_is_kept(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    fb = wav_to_fbank(load_audio(tmp_path / "silent.wav"))
    assert torch.isfinite(fb).all()  # log of the float eps floor, not NaN


def test_write_wav_roundtrip(tmp_path):
    w = tone(0.3, amp=0.9)
    write_wav(tmp_path / "w.wav", np.concatenate([w, [1.5, -1.5]]))
    back, rate = sf.read(tmp_path / "w.wav", dtype="float32")
    assert rate == 16000 and back.shape == (w.size + 2,)
    assert np.abs(back[:-2] - w).max() < 1e-4 and back[-2] == pytest.approx(32767 / 32768, abs=1e-6)
