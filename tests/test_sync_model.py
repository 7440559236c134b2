"""CAV-MAE Sync: parity with an independent model of the released class (tests/official_sync_reference.py), the
token bookkeeping (global and register tokens never masked, registers out of the fused pass and the decoder), the
released bugs done right (B = 1, structured masks on the segment grid, keep_register_tokens under masking,
contrast-only runs) and loading / exporting official weights."""

from __future__ import annotations

import pytest
import torch
from official_sync_reference import OfficialSyncReference
from test_model_official_parity import TOL, perturb

from cavmae_lite import CAVMAESync, CAVMAESyncConfig, to_official_state_dict
from cavmae_lite.checkpoints import CheckpointError

B = 3


def sync_config(**overrides) -> CAVMAESyncConfig:
    """embed 64 / 2 heads, 2 + 1 layers, decoder 32 x 1; 48-px frames (3 x 3), 48-frame segments of a 128-frame
    clip x 128 mel bins (8 x 3 tokens), 2 registers per modality."""
    fields = dict(img_size=48, audio_length=48, clip_length=128, num_frames=4, num_mel_bins=128, embed_dim=64,
                  num_heads=2, modality_specific_depth=2, joint_depth=1, decoder_embed_dim=32, decoder_depth=1,
                  decoder_num_heads=2, num_register_tokens=2)
    return CAVMAESyncConfig(**{**fields, **overrides})


def inputs(c: CAVMAESyncConfig, batch: int = B):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, c.audio_length, c.num_mel_bins, generator=g),
            torch.randn(batch, c.in_chans, c.img_size, c.img_size, generator=g),
            torch.rand(batch, c.num_audio_tokens, generator=g), torch.rand(batch, c.num_video_tokens, generator=g))


def reference(model: CAVMAESync) -> OfficialSyncReference:
    c = model.config
    return OfficialSyncReference(to_official_state_dict(model), c.num_heads, c.decoder_num_heads, c.norm_pix_loss,
                                 c.keep_register_tokens)


def check_parity(ours, ref: dict, c: CAVMAESyncConfig) -> None:
    assert torch.equal(ours.mask_a, ref["mask_a"]) and torch.equal(ours.mask_v, ref["mask_v"])
    for mine, theirs in [(ours.pred_a, "pred_a"), (ours.pred_v, "pred_v"), (ours.loss_rec_a, "loss_mae_a"),
                         (ours.loss_rec_v, "loss_mae_v"), (ours.loss, "loss")]:
        torch.testing.assert_close(mine, ref[theirs], **TOL)
    torch.testing.assert_close(c.contrast_weight * ours.loss_c, ref["loss_c"], **TOL)  # ours unweighted
    torch.testing.assert_close(ours.c_acc, ref["c_acc"].to(ours.c_acc.dtype), **TOL)
    if ref["global_a"] is not None:
        torch.testing.assert_close(ours.global_a, ref["global_a"], **TOL)
        torch.testing.assert_close(ours.global_v, ref["global_v"], **TOL)


@pytest.mark.parametrize("norm_pix_loss", [True, False])
@pytest.mark.parametrize("variant", [{}, {"global_tokens": False}, {"num_register_tokens": 0},
                                     {"contrastive_heads": True}, {"keep_register_tokens": True},
                                     {"bidirectional_contrast": True, "contrast_weight": 0.1}])
@torch.no_grad()
def test_forward_matches_the_released_semantics(norm_pix_loss, variant):
    c = sync_config(norm_pix_loss=norm_pix_loss, **variant)
    model = perturb(CAVMAESync(c))
    audio, video, na, nv = inputs(c)
    ref = reference(model).forward(audio, video, na, nv, contrast_loss_weight=c.contrast_weight,
                                   bidirect_contrast=c.bidirectional_contrast)
    check_parity(model(audio, video, noise_a=na, noise_v=nv), ref, c)


@torch.no_grad()
def test_features_match_forward_feat_and_keep_the_batch_axis_at_one():
    c = sync_config()
    model = perturb(CAVMAESync(c))
    audio, video, _, _ = inputs(c, batch=1)
    ours, ref = model.forward_features(audio, video), reference(model).forward_feat(audio, video)
    for mine, theirs in zip(ours, ref):
        torch.testing.assert_close(mine, theirs, **TOL)
    ta, tv, ga, gv = ours
    assert ta.shape == (1, c.num_audio_tokens, c.embed_dim) and tv.shape == (1, c.num_video_tokens, c.embed_dim)
    assert ga.shape == gv.shape == (1, c.embed_dim)  # the release squeezes this to (D,)
    a, v = model.embed(audio, video)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(1))


@torch.no_grad()
def test_token_counts_global_and_registers_never_masked():
    """Released sizes: 52 of 208 audio and 49 of 196 video patches visible, plus g and 8 registers per modality;
    the fused pass (the decoder's input) holds patches only."""
    c = CAVMAESyncConfig.base(embed_dim=64, num_heads=2, modality_specific_depth=1, decoder_embed_dim=32,
                              decoder_num_heads=2, decoder_depth=1)
    model = CAVMAESync(c).eval()
    audio, video = torch.randn(2, 416, 128), torch.randn(2, 3, 224, 224)
    seen = set()

    def record(module, args, output):
        seen.add(args[0].shape[1])

    model.encoder.joint_blocks[0].register_forward_hook(record)
    e = model.encoder.encode(audio, video, 0.75, 0.75)
    assert e.masked_a.mask.shape == (2, 208) and int(e.masked_a.mask[0].sum()) == 156
    assert e.audio.shape[1] == 1 + 52 and e.video.shape[1] == 1 + 49  # registers dropped after the towers
    out = model(audio, video)
    assert out.pred_a.shape == (2, 208, 256) and out.global_a.shape == (2, 64)
    assert seen == {52 + 49, 1 + 52, 1 + 49}  # fused: no global token; streams: global + patches


def test_released_parameter_count():
    with torch.device("meta"):
        model = CAVMAESync(CAVMAESyncConfig.base())
    assert model.num_params() == 190_660_864  # arithmetic on the released class's shapes


@torch.no_grad()
def test_structured_masks_follow_the_segment_grid():
    c = sync_config()
    model = CAVMAESync(c).eval()
    audio, video, _, _ = inputs(c)
    out = model(audio, video, mask_ratio_a=1 / 3, mask_mode="time")  # one of the 3 time columns
    rows, cols = c.audio_grid
    per_column = out.mask_a.view(B, rows, cols).sum(dim=1)  # a time mask removes whole columns
    assert set(per_column.unique().tolist()) <= {0.0, float(rows)} and int(per_column[0].sum()) == rows


@torch.no_grad()
def test_contrast_only_skips_the_decoder():
    c = sync_config(mae_weight=0.0, contrast_weight=1.0)
    out = CAVMAESync(c).eval()(*inputs(c)[:2])
    assert out.pred_a is None and float(out.loss_rec) == 0.0 and out.loss == out.loss_c


def test_official_round_trip_and_wrong_class():
    c = sync_config(contrastive_heads=True)
    model = perturb(CAVMAESync(c))
    sd = {f"module.{k}": v for k, v in to_official_state_dict(model).items()}
    assert {"cls_token_a", "register_tokens", "constrative_head_visual.1.mlp.fc2.bias"} <= {k[7:] for k in sd}
    back = CAVMAESync.from_official(sd, num_heads=2, decoder_num_heads=2, clip_length=128, num_frames=4)
    assert back.config == c
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    from cavmae_lite import CAVMAE

    with pytest.raises(CheckpointError, match="CAVMAESync.from_official"):
        CAVMAE.from_official(sd, num_heads=2, decoder_num_heads=2)
    with pytest.raises(CheckpointError, match="contradicts"):
        CAVMAESync.from_official(sd, num_heads=2, decoder_num_heads=2, num_register_tokens=4)


def test_bad_inputs_say_what_was_expected():
    c = sync_config()
    model = CAVMAESync(c)
    with pytest.raises(ValueError, match="T=48"):
        model(torch.randn(2, 128, 128), torch.randn(2, 3, 48, 48))  # a whole clip, not a segment
    with pytest.raises(ValueError, match="clip_length"):
        sync_config(audio_length=256)
    with pytest.raises(TypeError, match="CAVMAESyncConfig"):
        from cavmae_lite import CAVMAEConfig

        CAVMAESync(CAVMAEConfig.tiny())


def test_save_and_load_our_sync_checkpoints(tmp_path):
    from cavmae_lite.checkpoints import load_pretrained, save_pretrained
    from cavmae_lite.config import config_from_dict

    c = sync_config()
    model = perturb(CAVMAESync(c))
    save_pretrained(model, tmp_path / "m")
    back = CAVMAESync.from_pretrained(tmp_path / "m")
    assert back.config == c and torch.equal(back.state_dict()["encoder.registers"], model.state_dict()["encoder.registers"])
    assert isinstance(load_pretrained(to_official_state_dict(model), num_heads=2, decoder_num_heads=2), CAVMAESync)
    assert config_from_dict({"model": c.to_dict()}) == c
