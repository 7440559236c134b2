"""Models pretrained without norm_pix_loss (the official CAV-MAE-Base-NoNorm): loading, reconstructing, the CLI."""

import warnings

import pytest
import torch

from cavmae_lite import CAVMAE, CAVMAEConfig, to_official_state_dict, viz
from cavmae_lite.cli import main
from cavmae_lite.cli.reconstruct import load_model_for_viz
from cavmae_lite.losses import reconstruction_loss
from cavmae_lite.tokenizers import patchify_audio, unpatchify_audio, unpatchify_video

pytestmark = pytest.mark.usefixtures("close_figures")

# 128 mel bins and head counts the base defaults divide (12 and 16): sizes from_official infers with no overrides
SMALL = CAVMAEConfig(img_size=32, audio_length=32, num_mel_bins=128, embed_dim=48, modality_specific_depth=1,
                     joint_depth=1, decoder_embed_dim=32, decoder_depth=1, mlp_ratio=2.0)


@pytest.fixture(scope="module")
def official():
    """An official-layout state dict (``module.`` keys), every tensor filled at random."""
    g = torch.Generator().manual_seed(0)
    sd = to_official_state_dict(CAVMAE(SMALL))
    return {f"module.{k}": torch.randn(v.shape, generator=g) * 0.05 for k, v in sd.items()}


def _clip():
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 128, generator=g), torch.randn(3, 32, 32, generator=g)


def test_from_official_records_norm_pix_loss_false_and_trains_on_input_units(official):
    model = CAVMAE.from_official(official, norm_pix_loss=False).eval()
    assert model.config.norm_pix_loss is False and CAVMAE.from_official(official).config.norm_pix_loss is True
    audio, video = _clip()
    out = model(audio[None], video[None], generator=torch.Generator().manual_seed(0))
    target = patchify_audio(audio[None], 16)
    assert torch.allclose(out.loss_rec_a, reconstruction_loss(out.pred_a, target, out.mask_a, norm_pix_loss=False))
    assert not torch.allclose(out.loss_rec_a, reconstruction_loss(out.pred_a, target, out.mask_a, norm_pix_loss=True))


def test_reconstruct_shows_nonorm_predictions_as_they_are(official):
    model = CAVMAE.from_official(official, norm_pix_loss=False).eval()
    audio, video = _clip()
    rec = viz.reconstruct(model, audio, video, 0.75, 0.75, seed=0)
    assert rec.stats == "none" and rec.norm_pix_loss is False
    with torch.no_grad():
        out = model(audio[None], video[None], generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.mask_a[0], rec.mask_a)
    assert torch.allclose(rec.audio_recon, unpatchify_audio(out.pred_a, 16, SMALL.audio_grid)[0])
    assert torch.allclose(rec.video_recon, unpatchify_video(out.pred_v, 16, SMALL.video_grid, 3)[0])
    fig = viz.plot_reconstruction(rec)
    assert "input units" in fig.subfigs[0]._suptitle.get_text()


def test_unnormalising_a_nonorm_model_warns_and_a_norm_pix_one_does_not(official):
    audio, video = _clip()
    nonorm = CAVMAE.from_official(official, norm_pix_loss=False).eval()
    with pytest.warns(UserWarning, match="without norm_pix_loss"):
        rec = viz.reconstruct(nonorm, audio, video, stats="visible")
    assert rec.stats == "visible"  # computed as asked, for comparison
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        viz.reconstruct(CAVMAE.from_official(official).eval(), audio, video, stats="visible")


def test_a_file_named_nonorm_warns_unless_norm_pix_loss_is_given(official, tmp_path):
    path = tmp_path / "cav-mae-base-nonorm.pth"
    torch.save(official, path)
    with pytest.warns(UserWarning, match="norm_pix_loss=False"):
        assert CAVMAE.from_official(path).config.norm_pix_loss is True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert CAVMAE.from_official(path, norm_pix_loss=False).config.norm_pix_loss is False
        other = tmp_path / "cav-mae-base.pth"
        torch.save(official, other)
        CAVMAE.from_official(other)


def test_reconstruct_cli_no_norm_pix_loss(official, tmp_path, capsys):
    from tests.media import moving_frames, tone, write_video

    path = tmp_path / "cav-mae-base-nonorm.pth"
    torch.save(official, path)
    mp4 = write_video(tmp_path / "clip.mp4", moving_frames(10, 40, 48), audio=tone(1.0)[None])
    assert load_model_for_viz(path, norm_pix_loss=False).config.norm_pix_loss is False
    out = tmp_path / "nonorm.png"
    assert main(["reconstruct", str(mp4), "--checkpoint", str(path), "--no-norm-pix-loss", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "without norm_pix_loss" in printed and "input units" in printed
    with pytest.warns(UserWarning, match="no-norm-pix-loss"):  # forgot the flag: the file name gives a hint
        assert main(["reconstruct", str(mp4), "--checkpoint", str(path), "--out", str(out)]) == 0
    assert "normalised targets" in capsys.readouterr().out
    # our checkpoints record the setting: the flag may not contradict it
    assert main(["reconstruct", str(mp4), "--checkpoint", "cavmae_lite/weights/tiny.safetensors", "--no-norm-pix-loss",
                 "--out", str(out)]) == 2
    assert "records norm_pix_loss=True" in capsys.readouterr().err
