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
    "info": ("cavmae_lite.cli.info", "info", "print a model config's sizes and parameter counts, or a checkpoint's"),
    "make-data": ("cavmae_lite.cli.data", "make_data", "generate the default synthetic audio-visual dataset"),
    "prepare": ("cavmae_lite.cli.data", "prepare", "turn a folder of videos into a prepared dataset"),
    "cache": ("cavmae_lite.cli.data", "cache", "build the memory-mapped fbank/frame cache of a prepared dataset"),
    "stats": ("cavmae_lite.cli.data", "stats", "compute a dataset's fbank mean and std"),
    "pretrain": ("cavmae_lite.cli.pretrain", "pretrain", "pretrain CAV-MAE on a prepared dataset"),
    "evaluate": ("cavmae_lite.cli.evaluate", "evaluate", "retrieval, linear probe and fine-tuning evaluations"),
    "finetune": ("cavmae_lite.cli.finetune", "finetune_command", "fine-tune a classifier (= `evaluate finetune`): "
                 "--recipe as20k | as2m | vggsound | custom"),
    "embed": ("cavmae_lite.cli.evaluate", "embed", "audio and visual embeddings for videos or a manifest -> .npz"),
    "reconstruct": ("cavmae_lite.cli.reconstruct", "reconstruct", "figure: original / masked / reconstruction of one clip"),
    "ablation": ("cavmae_lite.cli.evaluate", "ablation", "CAV vs AV-MAE vs CAV-MAE at toy scale, one table"),
    "convert": ("cavmae_lite.cli.convert", "convert", "an official CAV-MAE checkpoint -> a save_pretrained folder "
                "(config.json + model.safetensors)"),
    "zoo": ("cavmae_lite.cli.zoo", "zoo", "the shipped tutorial models: build (train + card) or info"),
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


if __name__ == "__main__":
    sys.exit(main())
