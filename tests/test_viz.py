"""Figures and the helpers behind them (cavmae_lite.viz), and the `cavmae-lite reconstruct` command."""

import math

import pytest
import torch

from cavmae_lite import CAVMAE, save_checkpoint, viz
from cavmae_lite.tokenizers import patchify_audio, patchify_video

pytestmark = pytest.mark.usefixtures("close_figures")  # fixtures `close_figures` and `tiny`: tests/conftest.py


@pytest.fixture(scope="module")
def model(tiny):
    torch.manual_seed(0)
    return CAVMAE(tiny).eval()


def _clip(config, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(config.audio_length, config.num_mel_bins, generator=g), torch.randn(
        3, config.img_size, config.img_size, generator=g)


def _labelled(fig):
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes
    for ax in axes:
        if ax.axison:
            assert ax.get_xlabel() or ax.get_title(), "every axis needs a label or a title"


def test_frame_to_rgb_inverts_imagenet_normalisation():
    img = torch.rand(3, 8, 8)
    normed = (img - torch.tensor(viz.IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(viz.IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(torch.from_numpy(viz.frame_to_rgb(normed)), img.permute(1, 2, 0), atol=1e-6)


def test_masked_fbank_and_frame_blank_exactly_the_masked_patches(tiny):
    audio, video = _clip(tiny)
    mask_a = torch.zeros(tiny.num_audio_tokens)
    mask_a[[0, 5, 60]] = 1
    mask_v = torch.zeros(tiny.num_video_tokens)
    mask_v[[1, 35]] = 1
    fa, fv = viz.masked_fbank(audio, mask_a, 16), viz.masked_frame(video, mask_v, 16)
    assert int(torch.isnan(fa).sum()) == 3 * 256 and int(torch.isnan(fv).sum()) == 2 * 768
    pa = patchify_audio(fa[None], 16)[0]
    assert torch.isnan(pa[5]).all() and not torch.isnan(pa[6]).any()
    assert torch.equal(torch.nan_to_num(fa, 0.0)[~torch.isnan(fa)], audio[~torch.isnan(fa)])


def test_unnormalize_patches_is_evaluate_s():
    """The math lives in cavmae_lite.evaluate.reconstruction (tests/test_evaluate_reconstruction.py); viz
    re-exports it for the figures."""
    from cavmae_lite import evaluate

    assert viz.unnormalize_patches is evaluate.unnormalize_patches and viz.STATS == evaluate.STATS


def test_to_numpy_and_figure_and_axes():
    import matplotlib.pyplot as plt
    import numpy as np

    t = torch.arange(6, dtype=torch.bfloat16, requires_grad=True).view(2, 3)
    a = viz.to_numpy(t)  # any dtype, autograd state or device -> float32 numpy
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert viz.to_numpy([1, 2]).dtype == np.float32
    fig, ax = viz.figure_and_axes(figsize=(3, 2))  # a new figure with one axes of that size
    assert ax.figure is fig and list(fig.get_size_inches()) == [3, 2]
    other = plt.figure()
    given = other.add_subplot()
    assert viz.figure_and_axes(given) == (other, given)  # the given axes and its own figure
    assert viz.plot_fbank(torch.zeros(32, 16), ax=given, patch_size=8) is other


def test_reconstruct_panels_are_consistent_and_deterministic(model, tiny):
    audio, video = _clip(tiny)
    rec = viz.reconstruct(model, audio, video, 0.75, 0.75, seed=3)
    again = viz.reconstruct(model, audio, video, 0.75, 0.75, seed=3)
    other = viz.reconstruct(model, audio, video, 0.75, 0.75, seed=4)
    assert rec.stats == "visible"
    assert rec.audio_recon.shape == audio.shape and rec.video_recon.shape == video.shape
    assert torch.equal(rec.mask_a, again.mask_a) and torch.equal(rec.audio_recon, again.audio_recon)
    assert not torch.equal(rec.mask_a, other.mask_a)
    assert int((rec.mask_a == 0).sum()) == 16 and int((rec.mask_v == 0).sum()) == 9
    vis_a = rec.mask_a == 0
    pa, pmix = patchify_audio(audio[None], 16)[0], patchify_audio(rec.audio_recon_visible[None], 16)[0]
    assert torch.equal(pa[vis_a], pmix[vis_a])  # visible patches pasted back unchanged
    pv, pvmix = patchify_video(video[None], 16)[0], patchify_video(rec.video_recon_visible[None], 16)[0]
    assert torch.equal(pv[rec.mask_v == 0], pvmix[rec.mask_v == 0])
    assert set(rec.errors()) == {"audio", "video"} and all(math.isfinite(v) for v in rec.errors().values())
    _labelled(viz.plot_reconstruction(rec))


def test_reconstruct_refuses_a_model_without_decoder(tiny):
    audio, video = _clip(tiny)
    with pytest.raises(ValueError, match="no decoder"):
        viz.reconstruct(CAVMAE(tiny.replace(mae_weight=0.0)), audio, video)


def test_input_figures_are_labelled(tiny):
    audio, video = _clip(tiny)
    fig = viz.plot_fbank(audio)
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    assert fig.axes[0].get_xlabel() == "time (s)" and fig.axes[0].get_ylabel() == "mel bin"
    assert len(fig.axes[0].texts) == tiny.num_audio_tokens  # token indices drawn (128 <= 256)
    _labelled(fig)
    fig = viz.plot_frame(video)
    assert len(fig.axes[0].texts) == tiny.num_video_tokens
    _labelled(fig)
    _labelled(viz.plot_frames(torch.randn(4, 3, 16, 16)))
    _labelled(viz.plot_waveform(torch.randn(1600)))
    mask = torch.zeros(tiny.num_audio_tokens)
    mask[:96] = 1
    _labelled(viz.plot_mask(mask, tiny.audio_grid))
    _labelled(viz.plot_masking(audio, video, mask, torch.ones(tiny.num_video_tokens)))
    assert len(viz.plot_fbank(torch.randn(1024, 128)).axes[0].texts) == 0  # 512 tokens: too many labels by default


def test_similarity_and_embedding_figures():
    torch.manual_seed(0)
    a, v = torch.randn(6, 10), torch.randn(6, 10)
    sim = viz.similarity_matrix(a, v)
    assert torch.allclose(sim, torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(v, dim=-1).T)
    fig = viz.plot_similarity(sim, torch.randn(6, 3, 16, 16), torch.randn(6, 32, 16))
    assert len(fig.axes[0].images) == 1 + 6 + 6  # matrix + thumbnails + spectrogram snippets
    assert len(fig.axes[0].texts) == 36  # values in the cells
    _labelled(fig)
    p = viz.softmax_with_temperature(sim, 0.05, dim=0)
    assert torch.allclose(p.sum(0), torch.ones(6))
    _labelled(viz.plot_temperature(sim, column=2))
    xy, ratio = viz.pca_2d(torch.randn(20, 5))
    assert xy.shape == (20, 2) and 0 < float(ratio.sum()) <= 1 + 1e-6 and ratio[0] >= ratio[1]
    _labelled(viz.plot_embedding_map(a, v, labels=torch.tensor([0, 0, 1, 1, 2, 2]), label_names=["x", "y", "z"]))


def test_loss_curves_from_rows_and_columns():
    rows = [{"step": s, "loss": 1 / (s + 1), "loss_rec_a": 0.5, "c_acc": s / 10, "lr": 1e-3} for s in range(10)]
    fig = viz.plot_loss_curves(rows, chance=0.1)
    left, right = fig.axes[:2]
    assert {ln.get_label() for ln in left.lines} == {"loss", "loss_rec_a"}
    assert "c_acc" in {ln.get_label() for ln in right.lines}
    _labelled(fig)
    _labelled(viz.plot_loss_curves({"step": [0, 1], "loss": [2.0, 1.0]}))


def test_fbank_inversion_keeps_the_spectrogram():
    from cavmae_lite.data import normalize_fbank, wav_to_fbank

    t = torch.arange(16000) / 16000
    wave = 0.3 * torch.sin(2 * math.pi * 440 * t) * (t < 0.5) + 0.3 * torch.sin(2 * math.pi * 1200 * t) * (t >= 0.5)
    fb = normalize_fbank(wav_to_fbank(wave))
    out = viz.fbank_to_waveform(fb, n_iter=16)
    assert torch.isfinite(out).all() and out.abs().max() <= 0.9 + 1e-6
    assert abs(out.numel() - wave.numel()) <= 400
    again = normalize_fbank(wav_to_fbank(out))
    n = min(len(again), len(fb))
    corr = torch.corrcoef(torch.stack([again[:n].flatten(), fb[:n].flatten()]))[0, 1]
    assert corr > 0.6, corr


def test_mel_axis_in_hz_matches_the_kaldi_filters(close_figures):
    import numpy as np
    from torchaudio.compliance.kaldi import get_mel_banks

    from cavmae_lite.viz.audio import add_hz_axis, hz_to_mel, mel_bin_centers_hz, mel_to_hz

    assert math.isclose(float(hz_to_mel(700.0)), 1127 * math.log(2))
    assert np.allclose(mel_to_hz(hz_to_mel([20.0, 1000.0, 8000.0])), [20.0, 1000.0, 8000.0])
    for bins in (64, 128):  # wav_to_fbank keeps Kaldi's 20 Hz - Nyquist range
        _, centres = get_mel_banks(bins, 512, 16000.0, 20.0, 0.0, 100.0, -500.0, 1.0)
        assert np.allclose(mel_bin_centers_hz(bins), centres.flatten().double().numpy(), rtol=1e-5)
    fig = viz.plot_fbank(torch.randn(256, 64), hz_axis=True)
    ax = fig.axes[0]
    (sec,) = ax.child_axes
    fig.canvas.draw()
    assert "Hz" in sec.get_ylabel() and [t.get_text() for t in sec.get_yticklabels()] == \
        ["100", "300", "1k", "2k", "4k", "7k"]
    centres = mel_bin_centers_hz(64)
    lo, hi = sec.get_ylim()  # the Hz axis spans bin 0's lower edge to bin 63's upper edge, half a spacing out
    assert math.isclose(lo, float(mel_to_hz(hz_to_mel(centres[0]) - (hz_to_mel(centres[1]) - hz_to_mel(centres[0])) / 2)))
    assert centres[-1] < hi < 8000.0
    _labelled(fig)
    _, ax2 = close_figures.subplots()
    assert add_hz_axis(ax2, 128, ticks_hz=(10, 1000, 9000)).get_yticks().tolist() == [1000]  # out of range: dropped


def test_reconstruct_cli(tmp_path, model, tiny, capsys):
    from cavmae_lite.cli import main
    from cavmae_lite.data import make_synthetic

    data = make_synthetic(tmp_path / "data", 0, 2, 0, 2, mp4=1, workers=1, progress=False)
    ckpt = save_checkpoint({"model": model.state_dict(), "model_config": tiny.to_dict()}, tmp_path / "m.pt")
    out = tmp_path / "fig.png"
    mp4 = next((data / "mp4").glob("*.mp4"))
    assert main(["reconstruct", str(mp4), "--checkpoint", str(ckpt), "--out", str(out), "--seed", "1"]) == 0
    assert out.is_file() and out.stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out
    out2 = tmp_path / "item.png"
    assert main(["reconstruct", f"{data}:1", "--checkpoint", str(ckpt), "--out", str(out2), "--mask-ratio-v", "0.5"]) == 0
    assert out2.is_file()
    assert main(["reconstruct", str(tmp_path / "missing.mp4"), "--checkpoint", str(ckpt), "--out", str(out)]) == 2
