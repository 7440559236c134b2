"""Parity between cavmae_lite and an independent model of the official code (tests/official_reference.py).

Our models are converted to the official layout with ``to_official_state_dict`` and evaluated by the
reference with the same inputs and masking noise. Masks must match exactly; everything else within
atol=1e-5, rtol=1e-4 (float32, CPU).
"""

from __future__ import annotations

import pytest
import torch
from official_reference import OfficialReference, sincos_table

from cavmae_lite import CAVMAE, CAVMAEClassifier, CAVMAEConfig, to_official_state_dict

TOL = {"atol": 1e-5, "rtol": 1e-4}
B = 4


def small_config(**overrides) -> CAVMAEConfig:
    """embed 64 / 2 heads, 2 + 1 layers, decoder 32 x 1 / 2 heads; 48-px frames (3x3), 64 frames x 128 bins (8x4)."""
    fields = {"img_size": 48, "audio_length": 64, "num_mel_bins": 128, "embed_dim": 64, "num_heads": 2,
              "modality_specific_depth": 2, "joint_depth": 1, "decoder_embed_dim": 32, "decoder_depth": 1,
              "decoder_num_heads": 2}
    fields.update(overrides)
    return CAVMAEConfig(**fields)


@torch.no_grad()
def perturb(model: torch.nn.Module, scale: float = 0.05) -> torch.nn.Module:
    """Move every parameter (LayerNorms, positional tables and dead norms included) off its initial value,
    so that using a wrong LayerNorm set or table cannot go unnoticed."""
    for p in model.parameters():
        p.add_(scale * torch.randn_like(p))
    return model.eval()


def make_inputs(config: CAVMAEConfig, batch: int = B):
    audio = torch.randn(batch, config.audio_length, config.num_mel_bins)
    video = torch.randn(batch, config.in_chans, config.img_size, config.img_size)
    noise_a = torch.rand(batch, config.num_audio_tokens)
    noise_v = torch.rand(batch, config.num_video_tokens)
    return audio, video, noise_a, noise_v


def reference_for(model, config: CAVMAEConfig) -> OfficialReference:
    return OfficialReference(to_official_state_dict(model), num_heads=config.num_heads,
                             decoder_num_heads=config.decoder_num_heads, norm_pix_loss=config.norm_pix_loss)


def assert_pretrain_parity(ours, ref: dict, config: CAVMAEConfig) -> None:
    assert torch.equal(ours.mask_a, ref["mask_a"])
    assert torch.equal(ours.mask_v, ref["mask_v"])
    torch.testing.assert_close(ours.pred_a, ref["pred_a"], **TOL)
    torch.testing.assert_close(ours.pred_v, ref["pred_v"], **TOL)
    torch.testing.assert_close(ours.loss_rec_a, ref["loss_mae_a"], **TOL)
    torch.testing.assert_close(ours.loss_rec_v, ref["loss_mae_v"], **TOL)
    # ours reports unweighted terms; the official ones are weighted
    torch.testing.assert_close(config.mae_weight * ours.loss_rec, ref["loss_mae"], **TOL)
    torch.testing.assert_close(config.contrast_weight * ours.loss_c, ref["loss_c"], **TOL)
    torch.testing.assert_close(ours.loss, ref["loss"], **TOL)
    torch.testing.assert_close(ours.c_acc, ref["c_acc"].to(ours.c_acc.dtype), **TOL)


# ----------------------------------------------------------------------------------------------------
# Pretraining model
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_pix_loss", [True, False])
@pytest.mark.parametrize("weights", [(1.0, 0.01), (0.5, 0.3)])
@torch.no_grad()
def test_pretraining_forward_matches_official(norm_pix_loss, weights):
    config = small_config(norm_pix_loss=norm_pix_loss, mae_weight=weights[0], contrast_weight=weights[1])
    model = perturb(CAVMAE(config))
    audio, video, noise_a, noise_v = make_inputs(config)
    ours = model(audio, video, noise_a=noise_a, noise_v=noise_v)
    ref = reference_for(model, config).forward(audio, video, noise_a, noise_v, mae_loss_weight=weights[0],
                                               contrast_loss_weight=weights[1])
    assert_pretrain_parity(ours, ref, config)
    assert ours.mask_a.sum(dim=1).eq(config.num_audio_tokens - int(config.num_audio_tokens * 0.25)).all()


@pytest.mark.parametrize("ratios", [(0.5, 0.3), (0.9, 0.4)])  # ratio 0: official 0/0 = NaN, ours 0
@torch.no_grad()
def test_other_mask_ratios_match_official(ratios):
    config = small_config()
    model = perturb(CAVMAE(config))
    audio, video, noise_a, noise_v = make_inputs(config)
    ours = model(audio, video, mask_ratio_a=ratios[0], mask_ratio_v=ratios[1], noise_a=noise_a, noise_v=noise_v)
    ref = reference_for(model, config).forward(audio, video, noise_a, noise_v, mask_ratio_a=ratios[0],
                                               mask_ratio_v=ratios[1])
    assert_pretrain_parity(ours, ref, config)


@torch.no_grad()
def test_bidirectional_contrast_matches_official_option():
    config = small_config(bidirectional_contrast=True, contrast_weight=0.2)
    model = perturb(CAVMAE(config))
    audio, video, noise_a, noise_v = make_inputs(config)
    ours = model(audio, video, noise_a=noise_a, noise_v=noise_v)
    ref = reference_for(model, config).forward(audio, video, noise_a, noise_v, contrast_loss_weight=0.2,
                                               bidirect_contrast=True)
    assert_pretrain_parity(ours, ref, config)


@pytest.mark.parametrize("weights", [(0.0, 0.01), (1.0, 0.0)])
@torch.no_grad()
def test_skipped_branches_match_official(weights):
    config = small_config(mae_weight=weights[0], contrast_weight=weights[1])
    model = perturb(CAVMAE(config))
    audio, video, noise_a, noise_v = make_inputs(config)
    ours = model(audio, video, noise_a=noise_a, noise_v=noise_v)
    ref = reference_for(model, config).forward(audio, video, noise_a, noise_v, mae_loss_weight=weights[0],
                                               contrast_loss_weight=weights[1])
    assert torch.equal(ours.mask_a, ref["mask_a"]) and torch.equal(ours.mask_v, ref["mask_v"])
    torch.testing.assert_close(ours.loss, ref["loss"], **TOL)
    torch.testing.assert_close(config.mae_weight * ours.loss_rec, ref["loss_mae"], **TOL)
    torch.testing.assert_close(config.contrast_weight * ours.loss_c, ref["loss_c"], **TOL)
    if weights[0] == 0:
        assert ours.pred_a is None and ours.pred_v is None
        assert float(ours.loss_rec_a) == float(ours.loss_rec_v) == 0.0
    else:
        assert float(ours.c_acc) == 0.0 and float(ours.loss_c) == 0.0


@torch.no_grad()
def test_random_noise_is_drawn_audio_first_then_video():
    """Without explicit noise: one torch.rand(B, La) for audio, then one torch.rand(B, Lv) for video."""
    config = small_config()
    model = perturb(CAVMAE(config))
    audio, video, _, _ = make_inputs(config)
    torch.manual_seed(123)
    noise_a = torch.rand(B, config.num_audio_tokens)
    noise_v = torch.rand(B, config.num_video_tokens)
    torch.manual_seed(123)
    ours = model(audio, video)
    ref = reference_for(model, config).forward(audio, video, noise_a, noise_v)
    assert_pretrain_parity(ours, ref, config)


@torch.no_grad()
def test_forward_features_match_official_forward_feat():
    config = small_config()
    model = perturb(CAVMAE(config))
    audio, video, _, _ = make_inputs(config)
    a, v = model.forward_features(audio, video)
    ra, rv = reference_for(model, config).forward_feat(audio, video)
    assert a.shape == (B, config.num_audio_tokens, config.embed_dim)
    torch.testing.assert_close(a, ra, **TOL)
    torch.testing.assert_close(v, rv, **TOL)
    ea, ev = model.embed(audio, video)
    torch.testing.assert_close(ea, torch.nn.functional.normalize(ra.mean(1), dim=-1), **TOL)
    torch.testing.assert_close(ev, torch.nn.functional.normalize(rv.mean(1), dim=-1), **TOL)


@torch.no_grad()
def test_joint_depth_two_documents_the_official_non_chaining():
    """With 2 joint blocks, our streams chain the joint blocks everywhere. The official code chains them in the
    joint (reconstruction) stream and in forward_feat, but its contrastive audio-only / video-only streams apply
    each joint block to the modality-specific output and keep only the last one (spec §3.7, §10.1). So
    reconstruction and features agree with the official code, the contrastive term does not."""
    config = small_config(joint_depth=2, contrast_weight=0.5)
    model = perturb(CAVMAE(config))
    ref = reference_for(model, config)
    assert ref.n_joint == 2
    audio, video, noise_a, noise_v = make_inputs(config)
    a, v = model.forward_features(audio, video)
    ra, rv = ref.forward_feat(audio, video)
    torch.testing.assert_close(a, ra, **TOL)
    torch.testing.assert_close(v, rv, **TOL)
    ours = model(audio, video, noise_a=noise_a, noise_v=noise_v)
    out = ref.forward(audio, video, noise_a, noise_v, contrast_loss_weight=0.5)
    assert torch.equal(ours.mask_a, out["mask_a"])
    torch.testing.assert_close(ours.pred_a, out["pred_a"], **TOL)
    torch.testing.assert_close(ours.pred_v, out["pred_v"], **TOL)
    torch.testing.assert_close(ours.loss_rec, out["loss_mae"], **TOL)
    assert not torch.allclose(0.5 * ours.loss_c, out["loss_c"], **TOL)  # the documented deviation


# ----------------------------------------------------------------------------------------------------
# Fine-tuning model
# ----------------------------------------------------------------------------------------------------

MODES = [
    ("multimodal", "multimodal"),
    ("audio_only", "audioonly"),
    ("video_only", "videoonly"),
    ("missing_video", "missingaudioonly"),
    ("missing_audio", "missingvideoonly"),
]


@pytest.fixture(scope="module")
def classifier_and_reference():
    torch.manual_seed(1)
    config = small_config(norm_pix_loss=True)
    model = perturb(CAVMAEClassifier(config, num_classes=7))
    return model, config, reference_for(model, config)


@pytest.mark.parametrize("ours_name,official_name", MODES)
@torch.no_grad()
def test_classifier_modes_match_official(classifier_and_reference, ours_name, official_name):
    model, config, ref = classifier_and_reference
    audio, video, _, _ = make_inputs(config)
    expected = ref.classify(audio, video, official_name)
    assert expected.shape == (B, 7)
    for name in (ours_name, official_name):
        torch.testing.assert_close(model(audio, video, mode=name), expected, **TOL)
    # a mode that uses one modality only needs that one
    if official_name in ("audioonly", "missingaudioonly"):
        torch.testing.assert_close(model(audio, None, mode=name), expected, **TOL)
    if official_name in ("videoonly", "missingvideoonly"):
        torch.testing.assert_close(model(None, video, mode=name), expected, **TOL)


@torch.no_grad()
def test_classifier_features_match_official(classifier_and_reference):
    model, config, ref = classifier_and_reference
    audio, video, _, _ = make_inputs(config)
    a, v = model.forward_features(audio, video)
    ra, rv = ref.forward_feat(audio, video)
    torch.testing.assert_close(a, ra, **TOL)
    torch.testing.assert_close(v, rv, **TOL)


# ----------------------------------------------------------------------------------------------------
# from_official on an official-layout state dict reproduces the same outputs
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "module."])
@pytest.mark.parametrize("norm_pix_loss", [True, False])
@torch.no_grad()
def test_from_official_pretraining_reproduces_reference(prefix, norm_pix_loss):
    config = small_config(norm_pix_loss=norm_pix_loss)
    official = {prefix + k: v.clone() for k, v in to_official_state_dict(perturb(CAVMAE(config))).items()}
    ref = OfficialReference(official, num_heads=2, decoder_num_heads=2, norm_pix_loss=norm_pix_loss)
    loaded = CAVMAE.from_official(official, num_heads=2, decoder_num_heads=2, norm_pix_loss=norm_pix_loss).eval()
    assert loaded.config.embed_dim == 64 and loaded.config.img_size == 48 and loaded.config.audio_length == 64
    audio, video, noise_a, noise_v = make_inputs(config)
    ours = loaded(audio, video, noise_a=noise_a, noise_v=noise_v)
    assert_pretrain_parity(ours, ref.forward(audio, video, noise_a, noise_v), loaded.config)
    a, v = loaded.forward_features(audio, video)
    ra, rv = ref.forward_feat(audio, video)
    torch.testing.assert_close(a, ra, **TOL)
    torch.testing.assert_close(v, rv, **TOL)


@pytest.mark.parametrize("prefix", ["", "module."])
@torch.no_grad()
def test_from_official_classifier_reproduces_reference(prefix):
    config = small_config()
    official = {prefix + k: v.clone()
                for k, v in to_official_state_dict(perturb(CAVMAEClassifier(config, num_classes=5))).items()}
    ref = OfficialReference(official, num_heads=2)
    loaded = CAVMAEClassifier.from_official(official, num_heads=2).eval()
    assert loaded.num_classes == 5
    audio, video, _, _ = make_inputs(config)
    for _, official_name in MODES:
        torch.testing.assert_close(loaded(audio, video, mode=official_name),
                                   ref.classify(audio, video, official_name), **TOL)


def test_reference_sincos_matches_the_tables_in_a_fresh_model():
    """The positional tables of a fresh model are the spec's sin-cos tables (8 x 4 audio, 3 x 3 video)."""
    config = small_config()
    sd = to_official_state_dict(CAVMAE(config))
    assert torch.equal(sd["pos_embed_a"][0], sincos_table(64, 8, 4))
    assert torch.equal(sd["pos_embed_v"][0], sincos_table(64, 3, 3))
    assert torch.equal(sd["decoder_pos_embed_a"][0], sincos_table(32, 8, 4))
    assert torch.equal(sd["decoder_pos_embed_v"][0], sincos_table(32, 3, 3))
