"""``--init``: the ImageNet MAE -> CAV-MAE adaptation rule by rule, layout detection, and fit errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from cavmae_lite.checkpoints import (
    MAE_DROPPED,
    CheckpointError,
    adapt_mae_state_dict,
    detect_layout,
    init_from,
    official_to_ours_key,
    save_checkpoint,
    to_official_state_dict,
)
from cavmae_lite.config import CAVMAEConfig
from cavmae_lite.model import CAVMAE
from cavmae_lite.tokenizers import sincos_2d
from tests.helpers import micro_config

ROOT = Path(__file__).resolve().parents[1]
BLOCK_TAILS = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
               "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
               "mlp.fc2.bias")


def _block_shapes(prefix: str, d: int, hidden: int) -> dict[str, tuple]:
    shapes = {"norm1.weight": (d,), "norm1.bias": (d,), "attn.qkv.weight": (3 * d, d), "attn.qkv.bias": (3 * d,),
              "attn.proj.weight": (d, d), "attn.proj.bias": (d,), "norm2.weight": (d,), "norm2.bias": (d,),
              "mlp.fc1.weight": (hidden, d), "mlp.fc1.bias": (hidden,), "mlp.fc2.weight": (d, hidden),
              "mlp.fc2.bias": (d,)}
    return {f"{prefix}.{k}": v for k, v in shapes.items()}


def mae_shapes(d=768, depth=12, p=16, dd=512, ddepth=8, grid=14) -> dict[str, tuple]:
    """The facebookresearch/mae ``mae_pretrain_vit_base_full.pth`` layout (ViT-B by default), as key -> shape."""
    s = {"cls_token": (1, 1, d), "pos_embed": (1, grid * grid + 1, d), "patch_embed.proj.weight": (d, 3, p, p),
         "patch_embed.proj.bias": (d,)}
    for i in range(depth):
        s.update(_block_shapes(f"blocks.{i}", d, 4 * d))
    s.update({"norm.weight": (d,), "norm.bias": (d,), "mask_token": (1, 1, dd), "decoder_embed.weight": (dd, d),
              "decoder_embed.bias": (dd,), "decoder_pos_embed": (1, grid * grid + 1, dd)})
    for i in range(ddepth):
        s.update(_block_shapes(f"decoder_blocks.{i}", dd, 4 * dd))
    s.update({"decoder_norm.weight": (dd,), "decoder_norm.bias": (dd,), "decoder_pred.weight": (p * p * 3, dd),
              "decoder_pred.bias": (p * p * 3,)})
    return s


def micro_mae(seed: int = 0) -> dict[str, torch.Tensor]:
    """A randomly filled MAE-layout state dict that fits ``micro_config()`` (width 32, 1 + 1 blocks, patch 8)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v, generator=g) for k, v in mae_shapes(32, 2, 8, 16, 1, grid=4).items()}


def _fresh_keys(config: CAVMAEConfig) -> set[str]:
    """Our keys MAE does not provide: modality vectors, positional tables, the unused LN sets."""
    keys = {f"{m}.{k}" for m in ("encoder", "decoder") for k in ("audio_pos", "video_pos", "audio_modality",
                                                                "video_modality")}
    for stack, n in (("encoder.audio_blocks", config.modality_specific_depth),
                     ("encoder.video_blocks", config.modality_specific_depth), ("decoder.blocks", config.decoder_depth)):
        keys |= {f"{stack}.{i}.norm{j}.{s}.{w}" for i in range(n) for j in (1, 2) for s in ("audio", "video")
                 for w in ("weight", "bias")}
    return keys


def test_every_mae_rule_tensor_by_tensor():
    config = micro_config()
    mae = micro_mae()
    fresh = CAVMAE(config).state_dict()
    ours = adapt_mae_state_dict({"module." + k: v for k, v in mae.items()}, config)  # DataParallel prefix allowed
    eq = lambda key, ref: torch.testing.assert_close(ours[key], ref, rtol=0, atol=0, msg=key)
    for tail in BLOCK_TAILS:  # MAE block 0 -> both modality-specific stacks (norms into the joint LN set)
        k = tail.replace("norm1.", "norm1.joint.").replace("norm2.", "norm2.joint.")
        eq(f"encoder.audio_blocks.0.{k}", mae[f"blocks.0.{tail}"])
        eq(f"encoder.video_blocks.0.{k}", mae[f"blocks.0.{tail}"])
        eq(f"decoder.blocks.0.{k}", mae[f"decoder_blocks.0.{tail}"])
    for tail in BLOCK_TAILS:  # MAE block 1 (the last) -> the joint block, its norms into all three LN sets
        if tail.startswith("norm"):
            n, w = tail.split(".")
            for s in ("joint", "audio", "video"):
                eq(f"encoder.joint_blocks.0.{n}.{s}.{w}", mae[f"blocks.1.{tail}"])
        else:
            eq(f"encoder.joint_blocks.0.{tail}", mae[f"blocks.1.{tail}"])
    for s in ("joint", "audio", "video"):
        for w in ("weight", "bias"):
            eq(f"encoder.norm_{s}.{w}", mae[f"norm.{w}"])
    eq("encoder.video_embed.proj.weight", mae["patch_embed.proj.weight"])
    eq("encoder.audio_embed.proj.weight", mae["patch_embed.proj.weight"].sum(dim=1, keepdim=True))
    eq("encoder.video_embed.proj.bias", mae["patch_embed.proj.bias"])
    eq("encoder.audio_embed.proj.bias", mae["patch_embed.proj.bias"])
    for ours_key, mae_key in (("decoder.mask_token", "mask_token"), ("decoder.embed.weight", "decoder_embed.weight"),
                              ("decoder.embed.bias", "decoder_embed.bias"), ("decoder.norm.weight", "decoder_norm.weight"),
                              ("decoder.norm.bias", "decoder_norm.bias"), ("decoder.head_video.weight", "decoder_pred.weight"),
                              ("decoder.head_video.bias", "decoder_pred.bias")):
        eq(ours_key, mae[mae_key])
    eq("decoder.head_audio.weight", mae["decoder_pred.weight"][:64])  # first p*p = 64 rows of 192
    eq("decoder.head_audio.bias", mae["decoder_pred.bias"][:64])
    # nothing else comes from MAE; everything else of the model keeps its own init
    assert set(ours) | _fresh_keys(config) == set(fresh) and not set(ours) & _fresh_keys(config)
    assert all(ours[k].shape == fresh[k].shape for k in ours)
    mae["norm.weight"].add_(1.0)  # copies, not views
    assert not torch.equal(ours["encoder.norm_joint.weight"], mae["norm.weight"])


def test_init_keeps_sincos_tables_and_drops_cls_token():
    config = micro_config()
    model = CAVMAE(config)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    info = init_from(micro_mae(), model)
    assert info["layout"] == "mae" and info["tensors"] == len(adapt_mae_state_dict(micro_mae(), config))
    sd = model.state_dict()
    torch.testing.assert_close(sd["encoder.video_pos"][0], sincos_2d(32, config.video_grid).float())
    torch.testing.assert_close(sd["decoder.video_pos"][0], sincos_2d(16, config.video_grid).float())
    for k in _fresh_keys(config):
        assert torch.equal(sd[k], fresh[k]), k
    assert not any("cls" in k for k in sd) and set(MAE_DROPPED) <= set(micro_mae())
    assert torch.equal(sd["encoder.video_embed.proj.weight"], micro_mae()["patch_embed.proj.weight"])
    out = model(torch.randn(2, 32, 32), torch.randn(2, 3, 32, 32))
    assert torch.isfinite(out.loss)


def _official_base_shapes() -> dict[str, tuple]:
    with open(ROOT / "tests" / "data" / "official_state_dict_keys.tsv") as f:
        rows = [r for r in csv.reader(f, delimiter="\t") if r]
    return {official_to_ours_key(k): tuple(int(x) for x in s.strip("[]").split(",")) for k, s, *_ in rows}


def test_vit_b_layout_fits_base_and_explains_the_tiny_mismatch():
    vit_b = {k: torch.empty(v, device="meta") for k, v in mae_shapes().items()}
    assert detect_layout(vit_b) == "mae"
    ours = adapt_mae_state_dict(vit_b, CAVMAEConfig.base())
    base = _official_base_shapes()  # the released CAV-MAE's tensors, in our names
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: base[k] for k in ours}
    assert set(base) - set(ours) == _fresh_keys(CAVMAEConfig.base())
    with pytest.raises(CheckpointError, match=r"width 768, 12 encoder blocks.*does not fit.*width 128") as e:
        adapt_mae_state_dict(vit_b, CAVMAEConfig.tiny())
    assert "--config base" in str(e.value) and "embed_dim: checkpoint 768 vs config 128" in str(e.value)
    with pytest.raises(CheckpointError, match="depth: checkpoint 12 vs config 11"):
        adapt_mae_state_dict(vit_b, CAVMAEConfig.base(modality_specific_depth=10))


def test_init_from_detects_ours_official_and_mae_files(tmp_path):
    config = micro_config()
    src = CAVMAE(config)
    save_checkpoint({"model": src.state_dict(), "model_config": config.to_dict()}, tmp_path / "ours.pt")
    save_checkpoint({"module." + k: v for k, v in to_official_state_dict(src).items()}, tmp_path / "official.pth")
    save_checkpoint({"model": micro_mae()}, tmp_path / "mae.pth")
    for name, layout in (("ours.pt", "ours"), ("official.pth", "official"), ("mae.pth", "mae")):
        model = CAVMAE(config)
        assert init_from(tmp_path / name, model)["layout"] == layout
        if layout != "mae":
            assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), src.state_dict().values()))
    wider = CAVMAE(micro_config(embed_dim=64))
    with pytest.raises(CheckpointError, match=r"ours checkpoint \(width 32.*does not fit.*\(width 64"):
        init_from(tmp_path / "ours.pt", wider)
    with pytest.raises(CheckpointError, match="MAE checkpoint .*does not fit"):
        init_from(tmp_path / "mae.pth", wider)
    save_checkpoint({"model": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a CAV-MAE"):
        init_from(tmp_path / "other.pt", CAVMAE(config))
    head = {**to_official_state_dict(src), "mlp_head.1.weight": torch.zeros(3, 32)}
    with pytest.raises(CheckpointError, match="fine-tuned"):
        init_from(head, CAVMAE(config))
    with pytest.raises(FileNotFoundError):
        init_from(tmp_path / "missing.pth", CAVMAE(config))
