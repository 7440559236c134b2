"""The ``cavmae-lite`` command: parse, call, print.

Each subcommand lives in the module that does the work, as two functions: ``add_<name>_arguments(parser)``
and ``run_<name>(args) -> int``. Only the chosen command's module is imported, so ``--help`` stays quick.
Errors that a user can fix (bad paths, bad files, bad sizes) print one line and exit with status 2;
set ``CAVMAE_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# command -> (module, function stem, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "info": ("cavmae_lite.cli", "info", "print a model config's sizes and parameter counts, or a checkpoint's"),
    "make-data": ("cavmae_lite.data.synthetic", "make_data", "generate the default synthetic audio-visual dataset"),
    "prepare": ("cavmae_lite.data.prepare", "prepare", "turn a folder of videos into a prepared dataset"),
    "cache": ("cavmae_lite.data.cache", "cache", "build the memory-mapped fbank/frame cache of a prepared dataset"),
    "stats": ("cavmae_lite.data.datasets", "stats", "compute a dataset's fbank mean and std"),
    "pretrain": ("cavmae_lite.train_cli", "pretrain", "pretrain CAV-MAE on a prepared dataset"),
    "evaluate": ("cavmae_lite.evaluate_cli", "evaluate", "retrieval, linear probe and fine-tuning evaluations"),
    "finetune": ("cavmae_lite.finetune_cli", "finetune_command", "fine-tune a classifier (= `evaluate finetune`): "
                 "--recipe as20k | as2m | vggsound | custom"),
    "embed": ("cavmae_lite.evaluate_cli", "embed", "audio and visual embeddings for videos or a manifest -> .npz"),
    "reconstruct": ("cavmae_lite.viz_cli", "reconstruct", "figure: original / masked / reconstruction of one clip"),
    "ablation": ("cavmae_lite.evaluate_cli", "ablation", "CAV vs AV-MAE vs CAV-MAE at toy scale, one table"),
    "zoo": ("cavmae_lite.zoo", "zoo", "the shipped tutorial model: build (train + card) or info"),
}


class UserError(Exception):
    """An error whose message is the whole story; the CLI prints it without a traceback."""


def _fn(name: str, kind: str):
    module_name, stem, _ = COMMANDS[name]
    module = importlib.import_module(module_name)
    return getattr(module, f"{kind}_{stem}" if kind == "run" else f"add_{stem}_arguments")


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cavmae-lite", description="CAV-MAE (Contrastive Audio-Visual Masked Autoencoder), compact and complete."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            _fn(name, "add")(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(selected)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(_fn(args.command, "run")(args) or 0)
    except (UserError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        if os.environ.get("CAVMAE_DEBUG"):
            raise
        print(f"cavmae-lite {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cavmae-lite {args.command}: interrupted", file=sys.stderr)
        return 130


# ----- info ------------------------------------------------------------------------------------------------


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="tiny", help="base, tiny or a JSON config file (default: tiny)")
    p.add_argument("--checkpoint", help="an official or cavmae-lite checkpoint: list its tensors' summary instead")


def run_info(args: argparse.Namespace) -> int:
    from .checkpoints import load_checkpoint
    from .config import CAVMAEConfig
    from .model import CAVMAE

    if args.checkpoint:
        obj = load_checkpoint(args.checkpoint)
        sd = obj.get("model", obj) if isinstance(obj, dict) else obj
        n = sum(v.numel() for v in sd.values() if hasattr(v, "numel"))
        print(f"{args.checkpoint}: {len(sd)} tensors, {n:,} values")
        for k in list(sd)[:10]:
            print(f"  {k}  {tuple(sd[k].shape)}")
        return 0
    config = CAVMAEConfig.preset(args.config)
    model = CAVMAE(config)
    print(f"config {args.config}: audio grid {config.audio_grid} ({config.num_audio_tokens} tokens), "
          f"video grid {config.video_grid} ({config.num_video_tokens} tokens)")
    print(f"parameters: {model.num_params():,} total, {model.num_params(trainable_only=True):,} trainable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
