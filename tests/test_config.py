"""CAVMAEConfig: presets, derived sizes, validation messages, JSON round trip; TrainConfig budget checks."""

from __future__ import annotations

import json

import pytest

from cavmae_lite import CAVMAEConfig


def test_base_preset_is_the_official_model():
    c = CAVMAEConfig.base()
    assert (c.img_size, c.audio_length, c.num_mel_bins, c.patch_size, c.in_chans) == (224, 1024, 128, 16, 3)
    assert (c.embed_dim, c.num_heads, c.modality_specific_depth, c.joint_depth) == (768, 12, 11, 1)
    assert (c.decoder_embed_dim, c.decoder_depth, c.decoder_num_heads, c.mlp_ratio) == (512, 8, 16, 4.0)
    assert c.norm_pix_loss is True and c.tr_pos is False
    assert (c.contrast_temperature, c.contrast_weight, c.mae_weight) == (0.05, 0.01, 1.0)
    assert c.bidirectional_contrast is False
    assert c.audio_grid == (8, 64) and c.video_grid == (14, 14)
    assert (c.num_audio_tokens, c.num_video_tokens) == (512, 196)
    assert (c.audio_patch_dim, c.video_patch_dim) == (256, 768)
    assert CAVMAEConfig() == c


def test_tiny_preset_and_overrides():
    t = CAVMAEConfig.tiny()
    assert t.img_size % t.patch_size == 0 and t.audio_length % t.patch_size == 0
    assert t.embed_dim < 768 and t.num_audio_tokens < 512
    assert t.audio_grid == (t.num_mel_bins // 16, t.audio_length // 16)
    assert CAVMAEConfig.tiny(embed_dim=96, num_heads=2).embed_dim == 96
    assert CAVMAEConfig.base(norm_pix_loss=False).norm_pix_loss is False
    assert CAVMAEConfig.preset("tiny") == t and CAVMAEConfig.preset("base") == CAVMAEConfig()
    with pytest.raises(ValueError, match="unknown config"):
        CAVMAEConfig.preset("huge")


@pytest.mark.parametrize(
    "field,value",
    [
        ("img_size", 100),
        ("img_size", 0),
        ("audio_length", 1000),  # the README example that would not run officially
        ("num_mel_bins", 100),
        ("embed_dim", 770),  # not divisible by 12 heads
        ("decoder_embed_dim", 500),  # not divisible by 16 heads
        ("modality_specific_depth", -1),
        ("joint_depth", -1),
        ("decoder_depth", -2),
        ("in_chans", 0),
        ("mlp_ratio", 0),
        ("contrast_temperature", 0.0),
        ("contrast_negatives", "world"),
    ],
)
def test_validation_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        CAVMAEConfig(**{field: value})


def test_validation_of_patch_size_heads_and_weights():
    with pytest.raises(ValueError, match="patch_size"):
        CAVMAEConfig(patch_size=0)
    with pytest.raises(ValueError, match="patch_size"):
        CAVMAEConfig(patch_size=15)  # 224 is not a multiple of 15: message names the divisor too
    with pytest.raises(ValueError, match="num_heads"):
        CAVMAEConfig(num_heads=7)
    with pytest.raises(ValueError, match="mae_weight"):
        CAVMAEConfig(mae_weight=-1.0)
    with pytest.raises(ValueError, match="contrast_weight"):
        CAVMAEConfig(contrast_weight=-0.1)
    with pytest.raises(ValueError, match="multiple"):
        CAVMAEConfig(embed_dim=6, num_heads=3)  # sin-cos tables need width % 4 == 0
    CAVMAEConfig(mae_weight=0.0)  # zero weights are allowed (skip the branch)
    CAVMAEConfig(contrast_weight=0.0)
    CAVMAEConfig(joint_depth=0, modality_specific_depth=0)


def test_allowed_values_are_in_the_message():
    with pytest.raises(ValueError) as e:
        CAVMAEConfig(img_size=100)
    assert "img_size=100" in str(e.value) and "16" in str(e.value)
    with pytest.raises(ValueError) as e:
        CAVMAEConfig(contrast_negatives="x")
    assert "global" in str(e.value) and "local" in str(e.value)


def test_json_round_trip_and_replace(tmp_path):
    c = CAVMAEConfig.tiny(norm_pix_loss=False, contrast_weight=0.1)
    path = tmp_path / "config.json"
    c.save(path)
    assert json.loads(path.read_text())["contrast_weight"] == 0.1
    assert CAVMAEConfig.load(path) == c
    assert CAVMAEConfig.preset(str(path)) == c
    assert CAVMAEConfig.load(path, embed_dim=96, num_heads=3).embed_dim == 96
    assert CAVMAEConfig.from_dict({"model": c.to_dict()}) == c
    with pytest.raises(ValueError, match="unknown CAVMAEConfig fields"):
        CAVMAEConfig.from_dict({"embed_dim": 64, "num_heads": 2, "colour": "red"})
    r = c.replace(mae_weight=0.0)
    assert r.mae_weight == 0.0 and c.mae_weight == 1.0
    with pytest.raises(ValueError, match="img_size"):
        c.replace(img_size=95)


@pytest.mark.parametrize("field,value", [("max_steps", 0), ("max_steps", -3), ("epochs", 0), ("epochs", -1),
                                         ("max_minutes", 0.0), ("max_minutes", -0.5), ("max_minutes", float("nan"))])
def test_train_budgets_must_be_positive(field, value):
    from cavmae_lite.config import TrainConfig

    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be > 0"):
        TrainConfig(**{field: value})
    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be > 0"):
        TrainConfig.from_dict(TrainConfig(max_steps=5).to_dict(), **{field: value})  # the resume path too
    assert getattr(TrainConfig(**{field: 2}), field) == 2
    assert TrainConfig(max_steps=None, epochs=None, max_minutes=0.5).max_minutes == 0.5  # None: no limit
