"""Where pretraining starts (``pretrain --init PATH``): our checkpoint, an official CAV-MAE one, or ImageNet MAE.

The released CAV-MAE runs started from the ImageNet ViT-B MAE of facebookresearch/mae (``{"model": state_dict}``
with ``patch_embed.*``, ``blocks.{0..11}.*``, ``norm.*``, ``mask_token``, ``decoder_*``), adapted to two streams
(spec §5.1). :func:`adapt_mae_state_dict` does that adaptation for a config with S modality-specific and J joint
layers (the release: S = 11, J = 1), writing our key names directly:

* MAE blocks 0 .. S-1 -> ``encoder.audio_blocks.i`` **and** ``encoder.video_blocks.i`` (MAE's LayerNorms go to
  the joint LN set, the one these stacks use);
* MAE blocks S .. S+J-1 -> ``encoder.joint_blocks.(i-S)``, their two LayerNorms copied into all three LN sets;
* MAE ``norm`` -> ``encoder.norm_joint``, ``norm_audio`` and ``norm_video``;
* ``patch_embed.proj`` -> ``encoder.video_embed.proj``; the audio projection gets MAE's kernel summed over the
  three colour channels, (D, 3, p, p) -> (D, 1, p, p), and MAE's bias;
* ``mask_token``, ``decoder_embed``, ``decoder_blocks`` (LayerNorms to the joint set, the one the decoder uses),
  ``decoder_norm`` -> the decoder's;
* ``decoder_pred`` (p*p*3 rows) -> ``decoder.head_video``; its first p*p rows -> ``decoder.head_audio``.

Dropped: ``cls_token`` (CAV-MAE has no class token) and MAE's ``pos_embed`` / ``decoder_pos_embed``. CAV-MAE's
positional tables are fixed 2-D sin-cos tables of its own grids, which the model already holds; MAE's tables,
less their class-token row, are the same sin-cos construction for the 14 x 14 grid (the official adaptation
copies them; equal up to float rounding), so keeping ours changes nothing and also works for other grids.
Not in MAE and left as the model initialised them: the four modality embeddings, the audio positional tables,
and the LayerNorm sets no layer of that stack uses (the audio / video sets of the modality-specific and decoder
blocks).
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from ..config import CAVMAEConfig
from .io import CheckpointError, read_state_dict

MAE_DROPPED = ("cls_token", "pos_embed", "decoder_pos_embed")
_LN_SETS = ("joint", "audio", "video")


def count_blocks(sd: dict[str, Tensor], prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def _mae_sizes(sd: dict[str, Tensor]) -> dict[str, Any]:
    try:
        w = sd["patch_embed.proj.weight"]  # (D, 3, p, p)
        sizes = {"embed_dim": w.shape[0], "in_chans": w.shape[1], "patch_size": w.shape[-1],
                 "depth": count_blocks(sd, "blocks."), "mlp_hidden": sd["blocks.0.mlp.fc1.weight"].shape[0],
                 "decoder_embed_dim": sd["decoder_embed.weight"].shape[0],
                 "decoder_depth": count_blocks(sd, "decoder_blocks."), "pred_rows": sd["decoder_pred.weight"].shape[0]}
    except KeyError as e:
        raise CheckpointError(f"incomplete MAE state dict (it needs its decoder too): missing {e}") from e
    return sizes


def describe_sizes(embed_dim, depth, patch, dec_dim, dec_depth) -> str:
    return f"width {embed_dim}, {depth} encoder blocks, patch {patch}, decoder {dec_dim} x {dec_depth}"


def _check_mae_fits(sizes: dict[str, Any], config: CAVMAEConfig) -> None:
    c = config
    want = {"embed_dim": c.embed_dim, "in_chans": c.in_chans, "patch_size": c.patch_size,
            "depth": c.modality_specific_depth + c.joint_depth, "mlp_hidden": int(c.embed_dim * c.mlp_ratio),
            "decoder_embed_dim": c.decoder_embed_dim, "decoder_depth": c.decoder_depth,
            "pred_rows": c.video_patch_dim}
    bad = [f"{k}: checkpoint {sizes[k]} vs config {v}" for k, v in want.items() if sizes[k] != v]
    if bad:
        have = describe_sizes(sizes["embed_dim"], sizes["depth"], sizes["patch_size"], sizes["decoder_embed_dim"],
                         sizes["decoder_depth"])
        cfg = describe_sizes(c.embed_dim, f"{c.modality_specific_depth} + {c.joint_depth}", c.patch_size,
                        c.decoder_embed_dim, c.decoder_depth)
        raise CheckpointError(f"the MAE checkpoint ({have}) does not fit this model config ({cfg}): "
                              f"{'; '.join(bad)}. An ImageNet ViT-B MAE fits --config base.")


def _block_keys(rest: str, target: str, ln_sets: tuple[str, ...]) -> list[str]:
    """MAE block key tail ``norm1.weight`` / ``attn.qkv.bias`` -> our keys under ``target`` (one per LN set)."""
    m = re.fullmatch(r"(norm[12])\.(weight|bias)", rest)
    if m is None:
        return [f"{target}.{rest}"]
    return [f"{target}.{m[1]}.{s}.{m[2]}" for s in ln_sets]


def _mae_targets(key: str, specific: int, patch_dim: int) -> list[tuple[str, Any]]:
    """(our key, slice or None) pairs that MAE tensor ``key`` is copied to; [] for a dropped key."""
    if key in MAE_DROPPED:
        return []
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
    if m:
        i, rest = int(m[1]), m[2]
        if i < specific:
            keys = _block_keys(rest, f"encoder.audio_blocks.{i}", ("joint",))
            keys += _block_keys(rest, f"encoder.video_blocks.{i}", ("joint",))
        else:
            keys = _block_keys(rest, f"encoder.joint_blocks.{i - specific}", _LN_SETS)
        return [(k, None) for k in keys]
    m = re.fullmatch(r"decoder_blocks\.(\d+)\.(.+)", key)
    if m:
        return [(k, None) for k in _block_keys(m[2], f"decoder.blocks.{m[1]}", ("joint",))]
    if key.startswith("norm."):
        return [(f"encoder.norm_{s}.{key[5:]}", None) for s in _LN_SETS]
    if key == "patch_embed.proj.weight":
        return [("encoder.video_embed.proj.weight", None), ("encoder.audio_embed.proj.weight", "sum_rgb")]
    if key == "patch_embed.proj.bias":
        return [("encoder.video_embed.proj.bias", None), ("encoder.audio_embed.proj.bias", None)]
    if key.startswith("decoder_pred."):
        tail = key[len("decoder_pred."):]
        return [(f"decoder.head_video.{tail}", None), (f"decoder.head_audio.{tail}", slice(0, patch_dim))]
    renamed = {"mask_token": "decoder.mask_token"}
    for src, dst in (("decoder_embed.", "decoder.embed."), ("decoder_norm.", "decoder.norm.")):
        if key.startswith(src):
            return [(dst + key[len(src):], None)]
    if key in renamed:
        return [(renamed[key], None)]
    raise CheckpointError(f"unexpected key {key!r} in the MAE state dict")


def adapt_mae_state_dict(mae_sd: dict[str, Tensor], config: CAVMAEConfig) -> dict[str, Tensor]:
    """An ImageNet MAE state dict (facebookresearch/mae layout, ``module.`` allowed) -> our CAVMAE keys.

    Returns only the tensors MAE provides (see the module docstring for the rules); the rest of a
    ``CAVMAE(config)`` keeps its own initialisation. The sizes must fit ``config`` (a ViT-B MAE: the base
    config), else a CheckpointError names every mismatch. Tensors are copies (cloned).
    """
    sd = read_state_dict(mae_sd).tensors
    _check_mae_fits(_mae_sizes(sd), config)
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        for target, how in _mae_targets(key, config.modality_specific_depth, config.audio_patch_dim):
            if how == "sum_rgb":
                out[target] = value.detach().sum(dim=1, keepdim=True).clone()
            elif isinstance(how, slice):
                out[target] = value.detach()[how].clone()
            else:
                out[target] = value.detach().clone()
    return out


__all__ = ["MAE_DROPPED", "adapt_mae_state_dict", "count_blocks", "describe_sizes"]
