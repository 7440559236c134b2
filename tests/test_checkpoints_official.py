"""Checkpoints: the official state-dict layout, key maps, from_official, and safe file I/O (spec §8, §9)."""

from __future__ import annotations

import collections
import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch

from cavmae_lite import (
    CAVMAE,
    CAVMAEClassifier,
    CAVMAEConfig,
    convert_official_state_dict,
    load_checkpoint,
    save_checkpoint,
    to_official_state_dict,
)
from cavmae_lite.checkpoints import CheckpointError, official_to_ours_key, ours_to_official_key
from cavmae_lite.tokenizers import sincos_2d

DATA = Path(__file__).parent / "data"


def read_tsv(name: str) -> dict[str, tuple[tuple[int, ...], str]]:
    rows = {}
    for line in (DATA / name).read_text().splitlines():
        if line.strip():
            key, shape, dtype = line.split("\t")
            rows[key] = (tuple(json.loads(shape)), dtype)
    return rows


def small_config(**overrides) -> CAVMAEConfig:
    fields = {"img_size": 64, "audio_length": 96, "num_mel_bins": 128, "embed_dim": 48, "num_heads": 3,
              "modality_specific_depth": 3, "joint_depth": 2, "decoder_embed_dim": 24, "decoder_depth": 2,
              "decoder_num_heads": 2, "mlp_ratio": 2.0}
    fields.update(overrides)
    return CAVMAEConfig(**fields)


@torch.no_grad()
def perturbed(model):
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def base_meta():
    with torch.device("meta"):
        return CAVMAE(CAVMAEConfig.base()), CAVMAEClassifier(CAVMAEConfig.base(), num_classes=527)


def assert_same_layout(sd: dict, tsv: dict) -> None:
    assert sorted(sd) == sorted(tsv)
    for k, (shape, dtype) in tsv.items():
        assert tuple(sd[k].shape) == shape, k
        assert str(sd[k].dtype) == f"torch.{dtype}", k


# ----------------------------------------------------------------------------------------------------
# the official layout
# ----------------------------------------------------------------------------------------------------


def test_pretraining_model_has_exactly_the_official_keys_and_shapes(base_meta):
    tsv = read_tsv("official_state_dict_keys.tsv")
    assert len(tsv) == 647
    sd = to_official_state_dict(base_meta[0])
    assert len(sd) == 647
    assert_same_layout(sd, tsv)
    assert sum(v.numel() for v in sd.values()) == 191_036_160


def test_classifier_has_exactly_the_official_ft_keys_and_shapes(base_meta):
    tsv = read_tsv("official_ft_state_dict_keys.tsv")
    assert len(tsv) == 478
    sd = to_official_state_dict(base_meta[1])
    assert len(sd) == 478
    assert_same_layout(sd, tsv)
    assert sum(v.numel() for v in sd.values()) == 164_907_023


def test_key_round_trip_on_the_official_layout(base_meta):
    for name, model in zip(("official_state_dict_keys.tsv", "official_ft_state_dict_keys.tsv"), base_meta):
        official = to_official_state_dict(model)
        ours = convert_official_state_dict(official)
        assert sorted(ours) == sorted(model.state_dict())
        for k in read_tsv(name):
            assert ours_to_official_key(official_to_ours_key(k)) == k
        back = {ours_to_official_key(k): v for k, v in ours.items()}
        assert back.keys() == official.keys() and all(back[k] is official[k] for k in official)


@pytest.mark.parametrize("official,ours", [
    ("blocks_a.0.norm1_a.weight", "encoder.audio_blocks.0.norm1.audio.weight"),
    ("blocks_v.10.norm2_v.bias", "encoder.video_blocks.10.norm2.video.bias"),
    ("blocks_u.0.norm1.weight", "encoder.joint_blocks.0.norm1.joint.weight"),
    ("blocks_u.0.attn.qkv.weight", "encoder.joint_blocks.0.attn.qkv.weight"),
    ("norm.weight", "encoder.norm_joint.weight"),
    ("norm_a.bias", "encoder.norm_audio.bias"),
    ("norm_v.weight", "encoder.norm_video.weight"),
    ("decoder_norm.weight", "decoder.norm.weight"),
    ("decoder_blocks.7.mlp.fc2.bias", "decoder.blocks.7.mlp.fc2.bias"),
    ("decoder_pred_a.weight", "decoder.head_audio.weight"),
    ("pos_embed_a", "encoder.audio_pos"),
    ("decoder_pos_embed_v", "decoder.video_pos"),
    ("mask_token", "decoder.mask_token"),
    ("mlp_head.0.weight", "head.norm.weight"),
    ("mlp_head.1.bias", "head.fc.bias"),
])
def test_key_map_examples(official, ours):
    assert official_to_ours_key(official) == ours
    assert ours_to_official_key(ours) == official


def test_official_to_ours_to_official_is_the_identity_on_tensors():
    torch.manual_seed(0)
    official = {k: v.clone() for k, v in to_official_state_dict(perturbed(CAVMAE(small_config()))).items()}
    model = CAVMAE.from_official(official, num_heads=3, decoder_num_heads=2)
    back = to_official_state_dict(model)
    assert back.keys() == official.keys()
    assert all(torch.equal(back[k], official[k]) for k in official)
    ft = {k: v.clone() for k, v in to_official_state_dict(perturbed(CAVMAEClassifier(small_config(), 6))).items()}
    back = to_official_state_dict(CAVMAEClassifier.from_official(ft, num_heads=3))
    assert back.keys() == ft.keys() and all(torch.equal(back[k], ft[k]) for k in ft)


def test_convert_strips_module_prefix_and_rejects_foreign_keys():
    sd = {"module.norm.weight": torch.ones(3), "module.blocks_u.0.attn.proj.bias": torch.zeros(3)}
    assert set(convert_official_state_dict(sd)) == {"encoder.norm_joint.weight", "encoder.joint_blocks.0.attn.proj.bias"}
    with pytest.raises(CheckpointError, match="cls_token"):
        convert_official_state_dict({"cls_token": torch.zeros(1)})  # a ViT's class token: no CAV-MAE weight
    # CAV-MAE Sync's global and register tokens have names of ours
    assert convert_official_state_dict({"cls_token_a": torch.zeros(1), "register_tokens": torch.zeros(1)}) == {
        "encoder.audio_global": torch.zeros(1), "encoder.registers": torch.zeros(1)}


# ----------------------------------------------------------------------------------------------------
# from_official
# ----------------------------------------------------------------------------------------------------


def test_from_official_infers_every_size():
    config = small_config()
    official = to_official_state_dict(CAVMAE(config))
    model = CAVMAE.from_official(official, num_heads=3, decoder_num_heads=2)
    c = model.config
    assert (c.embed_dim, c.modality_specific_depth, c.joint_depth) == (48, 3, 2)
    assert (c.decoder_embed_dim, c.decoder_depth, c.mlp_ratio) == (24, 2, 2.0)
    assert (c.img_size, c.audio_length, c.num_mel_bins, c.patch_size, c.in_chans) == (64, 96, 128, 16, 3)
    assert c.num_heads == 3 and c.decoder_num_heads == 2
    ft = to_official_state_dict(CAVMAEClassifier(config, num_classes=11))
    clf = CAVMAEClassifier.from_official(ft, num_heads=3)
    assert clf.num_classes == 11 and clf.config.embed_dim == 48 and clf.config.joint_depth == 2


def test_from_official_takes_unshaped_settings_from_overrides_with_base_defaults():
    official = to_official_state_dict(CAVMAE(small_config(embed_dim=96, num_heads=4, decoder_embed_dim=32)))
    model = CAVMAE.from_official(official, norm_pix_loss=False, contrast_weight=0.1)
    assert model.config.embed_dim == 96 and model.config.num_heads == 12 and model.config.decoder_num_heads == 16  # base defaults
    assert model.config.norm_pix_loss is False and model.config.contrast_weight == 0.1
    with pytest.raises(CheckpointError, match="embed_dim"):
        CAVMAE.from_official(official, embed_dim=32)


def test_from_official_reads_files_with_module_prefix_and_nested_dicts(tmp_path):
    torch.manual_seed(1)
    model = perturbed(CAVMAE(small_config()))
    official = to_official_state_dict(model)
    path = tmp_path / "audio_model.21.pth"
    torch.save({"module." + k: v for k, v in official.items()}, path)
    loaded = CAVMAE.from_official(path, num_heads=3, decoder_num_heads=2)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    nested = tmp_path / "nested.pt"
    save_checkpoint({"model": official, "epoch": 3}, nested)
    loaded = CAVMAE.from_official(str(nested), num_heads=3, decoder_num_heads=2)
    assert torch.equal(loaded.encoder.audio_pos, model.encoder.audio_pos)


def doctored(official: dict) -> dict:
    sd = dict(official)
    del sd["blocks_v.1.mlp.fc1.bias"]
    sd["blocks_u.0.attn.extra"] = torch.zeros(2)
    sd["blocks_a.0.attn.proj.bias"] = torch.zeros(47)
    return sd


def test_from_official_lists_missing_unexpected_and_misshaped_keys():
    official = to_official_state_dict(CAVMAE(small_config()))
    with pytest.raises(CheckpointError) as e:
        CAVMAE.from_official(doctored(official), num_heads=3, decoder_num_heads=2)
    msg = str(e.value)
    assert "missing (1)" in msg and "encoder.video_blocks.1.mlp.fc1.bias" in msg
    assert "unexpected (1)" in msg and "encoder.joint_blocks.0.attn.extra" in msg
    assert "mis-shaped (1)" in msg and "encoder.audio_blocks.0.attn.proj.bias" in msg and "(47,)" in msg


def test_from_official_refuses_the_wrong_class_and_wrong_num_classes():
    config = small_config()
    ft = to_official_state_dict(CAVMAEClassifier(config, num_classes=4))
    with pytest.raises(CheckpointError, match="CAVMAEClassifier"):
        CAVMAE.from_official(ft, num_heads=3, decoder_num_heads=2)
    with pytest.raises(CheckpointError, match="num_classes"):
        CAVMAEClassifier.from_official(ft, num_heads=3, num_classes=5)
    pre = to_official_state_dict(CAVMAE(config))
    with pytest.raises(CheckpointError, match="num_classes"):
        CAVMAEClassifier.from_official(pre, num_heads=3, decoder_num_heads=2)
    with pytest.raises(CheckpointError, match="state dict"):
        CAVMAE.from_official({"a": 1})


def test_pretraining_checkpoint_into_classifier_drops_the_decoder_with_a_warning():
    torch.manual_seed(2)
    model = perturbed(CAVMAE(small_config()))
    official = to_official_state_dict(model)
    with pytest.warns(UserWarning, match="decoder"):
        # decoder_num_heads is still needed for the config check although the decoder is dropped
        clf = CAVMAEClassifier.from_official(official, num_heads=3, decoder_num_heads=2, num_classes=9)
    assert clf.num_classes == 9 and clf.head.fc.weight.shape == (9, 48)
    ours = model.state_dict()
    for k, v in clf.state_dict().items():
        if k.startswith("encoder."):
            assert torch.equal(v, ours[k]), k
    assert clf.encoder.audio_pos.requires_grad  # positional tables become trainable for fine-tuning
    torch.testing.assert_close(clf.head.norm.weight, torch.ones(48))  # a fresh head


def test_audio_length_override_trims_positional_tables_to_the_smaller_sincos_grid():
    config = small_config(audio_length=256)  # 8 x 16 grid
    official = to_official_state_dict(CAVMAE(config))  # fresh: sin-cos tables
    short = CAVMAE.from_official(official, num_heads=3, decoder_num_heads=2, audio_length=128)
    assert short.config.audio_length == 128 and short.config.audio_grid == (8, 8)
    assert torch.equal(short.encoder.audio_pos[0], sincos_2d(48, (8, 8)))
    assert torch.equal(short.decoder.audio_pos[0], sincos_2d(24, (8, 8)))
    assert torch.equal(short.encoder.video_pos, official["pos_embed_v"])
    out = short(torch.randn(2, 128, 128), torch.randn(2, 3, 64, 64))
    assert out.pred_a.shape == (2, 64, 256)
    long = CAVMAE.from_official(official, num_heads=3, decoder_num_heads=2, audio_length=384)
    assert long.encoder.audio_pos.shape == (1, 8 * 24, 48)
    interp = CAVMAE.from_official(official, num_heads=3, decoder_num_heads=2, audio_length=128,
                                  pos_resize="interpolate")
    assert interp.encoder.audio_pos.shape == (1, 64, 48)
    ft = to_official_state_dict(CAVMAEClassifier(config, num_classes=3))
    clf = CAVMAEClassifier.from_official(ft, num_heads=3, audio_length=64)
    assert clf.encoder.audio_pos.shape == (1, 32, 48)
    assert clf(torch.randn(1, 64, 128), None, "audio_only").shape == (1, 3)


# ----------------------------------------------------------------------------------------------------
# file I/O
# ----------------------------------------------------------------------------------------------------


def _make_marker(path: str) -> str:
    Path(path).write_text("executed")
    return path


class Payload:
    """An object whose unpickling would run code (it creates a marker file)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (_make_marker, (self.marker,))


@dataclasses.dataclass
class Meta:
    epoch: int


class FancyDict(collections.OrderedDict):
    pass


@pytest.mark.parametrize("kind", ["reduce", "dataclass", "ordereddict_subclass"])
def test_load_checkpoint_refuses_pickle_payloads(tmp_path, kind):
    marker = tmp_path / "marker"
    obj = {"weight": torch.ones(2)}
    if kind == "reduce":
        obj["extra"] = Payload(str(marker))
    elif kind == "dataclass":
        obj["meta"] = Meta(3)
    else:
        obj = FancyDict(weight=torch.ones(2))
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError):
        CAVMAE.from_official(path)
    assert not marker.exists()  # nothing was executed


def test_plain_containers_load(tmp_path):
    obj = {"state": collections.OrderedDict(w=torch.arange(3)), "epoch": 4, "name": "x", "lr": [1e-4, 0.5]}
    path = save_checkpoint(obj, tmp_path / "ok.pt")
    back = load_checkpoint(path)
    assert back["epoch"] == 4 and back["lr"] == [1e-4, 0.5] and torch.equal(back["state"]["w"], torch.arange(3))


def test_empty_truncated_corrupt_and_missing_files(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    good = tmp_path / "good.pt"
    torch.save({"w": torch.randn(64, 64)}, good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated)
    garbage = tmp_path / "garbage.pt"
    for junk in (b"hello world, not a checkpoint", bytes(range(256)) * 4, b"\x80\x02}q\x00.",
                 bytes(torch.randint(0, 256, (1000,)).tolist())):
        garbage.write_bytes(junk)
        with pytest.raises(CheckpointError):
            load_checkpoint(garbage)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")


def test_save_checkpoint_is_atomic(tmp_path):
    target = tmp_path / "runs" / "model.pt"
    state = {"w": torch.randn(5), "step": 7}
    assert save_checkpoint(state, target) == target
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.pt"]  # no temp files left
    back = load_checkpoint(target)
    assert back["step"] == 7 and torch.equal(back["w"], state["w"])
    # a failed save leaves the previous file intact and no temp file behind
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        save_checkpoint({"f": lambda x: x}, target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.pt"]
    assert load_checkpoint(target)["step"] == 7
    save_checkpoint({"step": 8}, target)  # overwrite
    assert load_checkpoint(target)["step"] == 8
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.pt"]
