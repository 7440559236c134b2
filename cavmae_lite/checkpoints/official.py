"""The official CAV-MAE layout: official <-> ours key maps, the sizes its weights tell, and loading them.

Official checkpoints (spec §9) are plain state dicts saved from ``DataParallel``, so every key starts with
``module.``. Our modules use descriptive names (``encoder.audio_blocks.3.norm1.audio.weight`` for the official
``blocks_a.3.norm1_a.weight``); the table below maps one to the other in both directions.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..config import CAVMAEConfig, CAVMAESyncConfig
from ..model import CAVMAEClassifier
from ..tokenizers import resize_audio_pos
from .io import CheckpointError, StateDict, load_strict, read_state_dict, strip_module_prefix

# (official prefix, our prefix); a prefix without a trailing dot is a whole key.
_PREFIXES = [
    ("patch_embed_a.", "encoder.audio_embed."),
    ("patch_embed_v.", "encoder.video_embed."),
    ("pos_embed_a", "encoder.audio_pos"),
    ("pos_embed_v", "encoder.video_pos"),
    ("modality_a", "encoder.audio_modality"),
    ("modality_v", "encoder.video_modality"),
    ("blocks_a.", "encoder.audio_blocks."),
    ("blocks_v.", "encoder.video_blocks."),
    ("blocks_u.", "encoder.joint_blocks."),
    ("norm_a.", "encoder.norm_audio."),
    ("norm_v.", "encoder.norm_video."),
    ("norm.", "encoder.norm_joint."),
    ("mask_token", "decoder.mask_token"),
    ("decoder_embed.", "decoder.embed."),
    ("decoder_pos_embed_a", "decoder.audio_pos"),
    ("decoder_pos_embed_v", "decoder.video_pos"),
    ("decoder_modality_a", "decoder.audio_modality"),
    ("decoder_modality_v", "decoder.video_modality"),
    ("decoder_blocks.", "decoder.blocks."),
    ("decoder_norm.", "decoder.norm."),
    ("decoder_pred_a.", "decoder.head_audio."),
    ("decoder_pred_v.", "decoder.head_video."),
    ("mlp_head.0.", "head.norm."),
    ("mlp_head.1.", "head.fc."),
    # CAV-MAE Sync (cav_mae_sync.py): global tokens, register tokens, contrastive heads (sic: "constrative")
    ("cls_token_a", "encoder.audio_global"),
    ("cls_token_v", "encoder.video_global"),
    ("register_tokens", "encoder.registers"),
    ("constrative_head_audio.", "encoder.audio_head."),
    ("constrative_head_visual.", "encoder.video_head."),
]
SYNC_FIELDS = ("clip_length", "num_frames", "global_tokens", "num_register_tokens", "keep_register_tokens",
               "contrastive_heads")
_NORM_TAG = {"": "joint", "_a": "audio", "_v": "video"}
_TAG_NORM = {v: k for k, v in _NORM_TAG.items()}


def _map_prefix(key: str, src: int) -> str:
    for pair in _PREFIXES:
        a, b = pair[src], pair[1 - src]
        if key == a or (a.endswith(".") and key.startswith(a)):
            return b + key[len(a):]
    raise KeyError(key)


def official_to_ours_key(key: str) -> str:
    """``blocks_a.0.norm1_a.weight`` -> ``encoder.audio_blocks.0.norm1.audio.weight``."""
    key = _map_prefix(key, 0)
    return re.sub(r"\.norm([12])(_a|_v)?\.", lambda m: f".norm{m[1]}.{_NORM_TAG[m[2] or '']}.", key)


def ours_to_official_key(key: str) -> str:
    """Inverse of :func:`official_to_ours_key`."""
    key = re.sub(r"\.norm([12])\.(joint|audio|video)\.", lambda m: f".norm{m[1]}{_TAG_NORM[m[2]]}.", key)
    return _map_prefix(key, 1)


def convert_official_state_dict(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Official CAV-MAE / CAV-MAE-FT state dict (with or without ``module.``) -> our names."""
    out, unknown = {}, []
    for k, v in strip_module_prefix(state_dict).items():
        try:
            out[official_to_ours_key(k)] = v
        except KeyError:
            unknown.append(k)
    if unknown:
        raise CheckpointError(f"{len(unknown)} keys are not CAV-MAE weights, e.g. {unknown[:5]}")
    return out


def to_official_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """Our CAVMAE / CAVMAEClassifier -> a state dict the official ``CAVMAE`` / ``CAVMAEFT`` loads."""
    return {ours_to_official_key(k): v for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------------------
# Official weights -> our models
# ---------------------------------------------------------------------------------------------------------


def _count_blocks(sd: dict[str, Tensor], prefix: str) -> int:
    return len({k.split(".")[1] for k in sd if k.startswith(prefix)})


def _read_sizes(official: dict[str, Tensor]) -> tuple[int, int, int, int, int, int]:
    """(width, channels, patch, audio tokens, video tokens, MLP hidden) of an official state dict."""
    try:
        w_v = official["patch_embed_v.proj.weight"]  # (D, C, p, p)
        La, Lv = official["pos_embed_a"].shape[1], official["pos_embed_v"].shape[1]
        fc1 = "blocks_a.0.mlp.fc1.weight" if "blocks_a.0.mlp.fc1.weight" in official else "blocks_u.0.mlp.fc1.weight"
        hidden = official[fc1].shape[0]
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"not a complete CAV-MAE state dict: missing or odd {e}") from e
    return w_v.shape[0], w_v.shape[1], w_v.shape[-1], La, Lv, hidden


def infer_config(official: dict[str, Tensor], **overrides: Any) -> tuple[CAVMAEConfig, int | None]:
    """Sizes an official state dict (no ``module.``) determines, plus ``overrides`` for the rest.

    Returns (config, num_classes or None). ``audio_length`` and ``norm_pix_loss``/``num_heads``/... may be
    overridden; an override that contradicts a shape, or names no config field, raises a ``CheckpointError``.
    The weights cannot tell the head counts: ``num_heads`` / ``decoder_num_heads`` default to the base model's
    (12 / 16), and a width they do not divide asks for them.
    """
    known = set(CAVMAEConfig.__dataclass_fields__) | {"num_classes"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise CheckpointError(f"unknown settings {unknown}: overrides must be CAVMAEConfig fields or num_classes")
    D, C, p, La, Lv, hidden = _read_sizes(official)
    mel = overrides.get("num_mel_bins", 128)
    rows = mel // p
    grid_v = round(Lv**0.5)
    if grid_v * grid_v != Lv or not rows or La % rows:
        raise CheckpointError(f"cannot infer grids from {La} audio / {Lv} video tokens with {mel} mel bins")
    inferred: dict[str, Any] = dict(
        embed_dim=D, in_chans=C, patch_size=p, img_size=grid_v * p, audio_length=La // rows * p,
        num_mel_bins=mel, mlp_ratio=hidden / D,
        modality_specific_depth=_count_blocks(official, "blocks_a."),
        joint_depth=_count_blocks(official, "blocks_u."),
    )
    if "decoder_embed.weight" in official:
        inferred["decoder_embed_dim"] = official["decoder_embed.weight"].shape[0]
        inferred["decoder_depth"] = _count_blocks(official, "decoder_blocks.")
    resizable = {"audio_length"}
    for k, v in overrides.items():
        if k in inferred and k not in resizable and inferred[k] != v:
            raise CheckpointError(f"override {k}={v!r} contradicts the checkpoint, whose weights give {k}={inferred[k]!r}")
    num_classes = official["mlp_head.1.weight"].shape[0] if "mlp_head.1.weight" in official else None
    fields = {**inferred, **{k: v for k, v in overrides.items() if k != "num_classes"}}
    try:
        return CAVMAEConfig(**fields), num_classes
    except ValueError as e:
        hint = ""
        if "num_heads" in str(e):
            hint = (" The weights cannot tell the number of attention heads: pass num_heads= / decoder_num_heads= "
                    "(cavmae-lite convert: --num-heads / --decoder-num-heads).")
        raise CheckpointError(f"the checkpoint's sizes give no valid config: {e}.{hint}") from e


def infer_sync_config(official: dict[str, Tensor], **overrides: Any) -> CAVMAESyncConfig:
    """A CAV-MAE Sync state dict's config: CAV-MAE's sizes (the segment length L from ``pos_embed_a``), global
    tokens from ``cls_token_a``, R from ``register_tokens`` (2R rows), contrastive heads from their keys; the clip
    length S and frames per clip T, which the weights cannot tell, default to the released 1024 and 16."""
    sync = {k: overrides.pop(k) for k in SYNC_FIELDS if k in overrides}
    config, num_classes = infer_config(official, **overrides)
    if num_classes is not None:
        raise CheckpointError("a fine-tuned (classifier) checkpoint is not a CAV-MAE Sync pretraining model")
    regs = official.get("register_tokens")
    inferred = {"global_tokens": "cls_token_a" in official, "num_register_tokens": 0 if regs is None else regs.shape[0] // 2,
                "contrastive_heads": any(k.startswith("constrative_head_audio.") for k in official)}
    for k, v in sync.items():
        if k in inferred and inferred[k] != v:
            raise CheckpointError(f"override {k}={v!r} contradicts the checkpoint, whose weights give {k}={inferred[k]!r}")
    fields = {**config.to_dict(), **inferred, **sync}
    fields.setdefault("clip_length", max(CAVMAESyncConfig.clip_length, fields["audio_length"]))
    try:
        return CAVMAESyncConfig(**fields)
    except ValueError as e:
        raise CheckpointError(f"the checkpoint's sizes give no valid CAV-MAE Sync config: {e}") from e


def _resize_audio_tables(sd: dict[str, Tensor], config: CAVMAEConfig, mode: str) -> dict[str, Tensor]:
    rows, cols = config.audio_grid
    for key in ("encoder.audio_pos", "decoder.audio_pos"):
        if key in sd and sd[key].shape[1] != rows * cols:
            sd[key] = resize_audio_pos(sd[key], rows, cols, mode)
    return sd


def nonorm_hint(name: str | Path) -> str | None:
    """A warning when a file name says "nonorm" (the released ``cav-mae-base-nonorm.pth``), else None."""
    if "nonorm" not in Path(name).name.lower().replace("-", "").replace("_", ""):
        return None
    return (f"{Path(name).name}: the name suggests a model pretrained without norm_pix_loss (the released "
            "CAV-MAE-Base-NoNorm, for inpainting), which the weights cannot tell; loading it as a norm_pix_loss "
            "model un-normalises its predictions wrongly. Pass norm_pix_loss=False (reconstruct: "
            "--no-norm-pix-loss), or norm_pix_loss=True to silence this")


def _classifier_weights(ours: dict[str, Tensor], cls: type, config: CAVMAEConfig, num_classes: int | None,
                        overrides: dict[str, Any], source: str):
    """(model, weights) for a classifier: a fine-tuned checkpoint as it is, a pretraining one with its decoder
    dropped and a fresh head."""
    if num_classes is not None:
        if overrides.get("num_classes", num_classes) != num_classes:
            raise CheckpointError(f"num_classes={overrides['num_classes']} but the checkpoint's head has {num_classes}")
        return cls(config, num_classes=num_classes), ours
    num_classes = overrides.get("num_classes")  # a pretraining checkpoint: drop the decoder, start a fresh head
    if num_classes is None:
        raise CheckpointError(f"{source} is a pretraining checkpoint with no head: pass num_classes=...")
    dropped = [k for k in ours if k.startswith("decoder.")]
    ours = {k: v for k, v in ours.items() if not k.startswith("decoder.")}
    warnings.warn(f"{source}: pretraining checkpoint loaded into CAVMAEClassifier; dropped {len(dropped)} decoder "
                  f"tensors and initialised a fresh {num_classes}-class head", stacklevel=4)
    model = cls(config, num_classes=num_classes)
    ours.update({k: v for k, v in model.state_dict().items() if k.startswith("head.")})
    return model, ours


def load_official(cls: type, path_or_state_dict: str | Path | dict | StateDict, pos_resize: str = "trim",
                  **overrides: Any):
    """Build ``cls`` (CAVMAE or CAVMAEClassifier) from official weights; see ``CAVMAE.from_official``.

    ``path_or_state_dict``: a file, a state dict or a :class:`StateDict` of :func:`read_state_dict`.
    ``pos_resize`` ("trim" or "interpolate") adapts the audio positional tables when ``audio_length`` is
    overridden to a clip length other than the checkpoint's (official issues #8 / #27).

    ``norm_pix_loss`` cannot be read from the weights: it defaults to True (every released model but
    ``CAV-MAE-Base-NoNorm``); pass ``norm_pix_loss=False`` for that one, so that the config records it and
    reconstructions are taken as input units. A file whose name says "nonorm" loaded without the argument warns.
    """
    read = read_state_dict(path_or_state_dict)
    source, official = read.source, read.tensors
    hint = nonorm_hint(source)  # None for an in-memory state dict (source "state dict")
    if hint and "norm_pix_loss" not in overrides:
        warnings.warn(hint, stacklevel=3)
    is_classifier = issubclass(cls, CAVMAEClassifier)
    if getattr(cls, "config_class", None) is CAVMAESyncConfig:  # CAVMAESync: no classifier, no table resizing
        model = cls(infer_sync_config(official, **overrides))
        load_strict(model, convert_official_state_dict(official), source)
        return model
    if any(k in official for k in ("cls_token_a", "register_tokens")):
        raise CheckpointError(f"{source} is a CAV-MAE Sync checkpoint (global / register tokens): load it with "
                              "CAVMAESync.from_official")
    # a classifier has no decoder: its sizes must not constrain (or fail) the config
    sized = {k: v for k, v in official.items() if not (is_classifier and k.startswith(("decoder_", "mask_token")))}
    config, num_classes = infer_config(sized, **overrides)
    ours = convert_official_state_dict(official)
    if is_classifier:
        model, ours = _classifier_weights(ours, cls, config, num_classes, overrides, source)
    elif num_classes is not None:
        raise CheckpointError(f"{source} is a fine-tuned (classifier) checkpoint; load it with CAVMAEClassifier")
    else:
        model = cls(config)
    load_strict(model, _resize_audio_tables(ours, config, pos_resize), source)
    return model
