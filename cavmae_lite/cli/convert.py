"""`cavmae-lite convert OFFICIAL.pth OUT_DIR`: an official CAV-MAE checkpoint -> a save_pretrained folder.

A pretraining checkpoint (``CAVMAE``, with the decoder) becomes a :class:`~cavmae_lite.CAVMAE`, a fine-tuned one
(``CAVMAEFT``, with ``mlp_head``) a :class:`~cavmae_lite.CAVMAEClassifier`: told apart by the keys. The folder
(config.json + model.safetensors, the Hugging Face hub's layout) loads with ``CAVMAE.from_pretrained(OUT_DIR)`` /
``CAVMAEClassifier.from_pretrained(OUT_DIR)`` and is a ``--checkpoint`` for the other commands. What the weights
cannot tell is given here: the head counts (default: the base model's 12 / 16) and, for the released
CAV-MAE-Base-NoNorm, ``--no-norm-pix-loss``.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("official", metavar="OFFICIAL.pth", help="an official CAV-MAE pretraining or fine-tuned checkpoint")
    p.add_argument("out", metavar="OUT_DIR", help="folder to write config.json and model.safetensors into")
    p.add_argument("--num-heads", type=int, help="encoder attention heads (the weights cannot tell; default 12)")
    p.add_argument("--decoder-num-heads", type=int, help="decoder attention heads (default 16; pretraining only)")
    p.add_argument("--no-norm-pix-loss", dest="norm_pix_loss", action="store_false", default=None,
                   help="the model was pretrained without norm_pix_loss (the released CAV-MAE-Base-NoNorm)")


def convert(official: str | Path, out: str | Path, **overrides):
    """Load ``official`` (weights-only) as the model its keys say, save it to ``out``; returns the model."""
    from ..checkpoints import detect_layout, detect_model, read_state_dict
    from ..model import CAVMAE, CAVMAEClassifier
    from .main import UserError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file: OUT_DIR must be a folder (it is created if missing)")
    read = read_state_dict(official)
    layout = detect_layout(read.tensors)
    if layout != "official":
        what = {"ours": "already a cavmae-lite checkpoint: load_pretrained(...).save_pretrained(OUT_DIR) writes "
                        "its folder", "mae": "an ImageNet MAE checkpoint: start a run from it with pretrain --init"}
        raise UserError(f"{read.source} is not an official CAV-MAE checkpoint: {what[layout]}")
    cls = CAVMAEClassifier if detect_model(read.tensors) == "CAVMAEClassifier" else CAVMAE
    if cls is CAVMAEClassifier:
        overrides.pop("decoder_num_heads", None)  # a classifier has no decoder
    model = cls.from_official(read, **{k: v for k, v in overrides.items() if v is not None})
    model.save_pretrained(out)
    return model


def run_convert(args: argparse.Namespace) -> int:
    model = convert(args.official, args.out, num_heads=args.num_heads, decoder_num_heads=args.decoder_num_heads,
                    norm_pix_loss=args.norm_pix_loss)
    c, kind = model.config, type(model).__name__
    classes = f", {model.num_classes} classes" if kind == "CAVMAEClassifier" else ""
    print(f"wrote {args.out}: {kind} ({model.num_params():,} parameters; width {c.embed_dim}, {c.num_heads} heads, "
          f"{c.modality_specific_depth} + {c.joint_depth} blocks{classes}, norm_pix_loss={c.norm_pix_loss}); "
          f"load it with {kind}.from_pretrained({str(args.out)!r})")
    return 0


__all__ = ["add_convert_arguments", "convert", "run_convert"]
