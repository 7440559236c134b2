"""`cavmae-lite info`: a model config's sizes and parameter counts, or what a checkpoint holds."""

from __future__ import annotations

import argparse


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="tiny", help="base, tiny or a JSON config file (default: tiny)")
    p.add_argument("--checkpoint", help="a checkpoint file (.pt / .pth / .safetensors), a run directory or a "
                   "save_pretrained folder, ours or official: summarise its weights instead")


def _sizes(config) -> str:
    c = config
    return (f"width {c.embed_dim}, {c.modality_specific_depth} + {c.joint_depth} blocks, patch {c.patch_size}, "
            f"decoder {c.decoder_embed_dim} x {c.decoder_depth}, {c.img_size}-px frames, {c.audio_length} x "
            f"{c.num_mel_bins} fbank")


def checkpoint_summary(path: str) -> list[str]:
    """Lines describing the weights at ``path``: layout, model, tensor count, config (recorded or inferred)."""
    from ..checkpoints import config_from_extra, detect_layout, detect_model, infer_config, read_state_dict

    read = read_state_dict(path)
    sd, layout = read.tensors, detect_layout(read.tensors)
    dtypes = sorted({str(v.dtype).removeprefix("torch.") for v in sd.values()})
    kind = detect_model(sd) if layout != "mae" else "ImageNet MAE"
    lines = [f"{read.source}: {layout} layout, {kind}, {len(sd)} tensors, {sum(v.numel() for v in sd.values()):,} "
             f"values ({', '.join(dtypes)})"]
    if layout == "official":
        sized = {k: v for k, v in sd.items() if kind == "CAVMAE" or not k.startswith(("decoder_", "mask_token"))}
        config, num_classes = infer_config(sized, num_heads=1, decoder_num_heads=1)
        heads = "head counts not recorded (convert: --num-heads / --decoder-num-heads)"
        lines.append(f"sizes from the weights: {_sizes(config)}; {heads}"
                     + (f"; {num_classes} classes" if num_classes else ""))
    elif layout == "ours":
        try:
            lines.append(f"config: {_sizes(config_from_extra(read.extra, read.source))}")
        except ValueError as e:
            lines.append(f"config: not recorded ({e})")
    lines += [f"  {k}  {tuple(v.shape)}" for k, v in list(sd.items())[:10]]
    return lines


def run_info(args: argparse.Namespace) -> int:
    from ..config import CAVMAEConfig
    from ..model import CAVMAE

    if args.checkpoint:
        print("\n".join(checkpoint_summary(args.checkpoint)))
        return 0
    config = CAVMAEConfig.preset(args.config)
    model = CAVMAE(config)
    print(f"config {args.config}: audio grid {config.audio_grid} ({config.num_audio_tokens} tokens), "
          f"video grid {config.video_grid} ({config.num_video_tokens} tokens)")
    print(f"parameters: {model.num_params():,} total, {model.num_params(trainable_only=True):,} trainable")
    return 0


__all__ = ["add_info_arguments", "checkpoint_summary", "run_info"]
