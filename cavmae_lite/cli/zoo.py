"""`cavmae-lite zoo build | info`: the shipped tutorial models (:mod:`cavmae_lite.zoo`) from the command line."""

from __future__ import annotations

import argparse
import json


def add_zoo_arguments(p: argparse.ArgumentParser) -> None:
    from ..zoo import MODELS, NAME

    sub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="train a tutorial model with its recorded recipe and write weights + card")
    b.add_argument("--name", default=NAME, choices=sorted(MODELS),
                   help=f"which model (default {NAME}, the retrieval model; tiny-mask75: trained at 75 %% masking; "
                   "tiny-sync: CAV-MAE Sync on the events data)")
    b.add_argument("--out", help="folder for <name>.safetensors and <name>.json (default: the package's weights/)")
    b.add_argument("--data", help="default synthetic dataset folder (built if missing)")
    b.add_argument("--device", default="auto", help="auto, cpu, cuda ...")
    b.add_argument("--threads", type=lambda s: -1 if s == "auto" else int(s), default=0,
                   help="CPU threads (default: all cores; auto = the idle ones)")
    b.add_argument("--max-steps", type=int, help="override the recipe's budget (the card then records no recipe key)")
    b.add_argument("--run-dir", help="keep the training checkpoint here; rerunning resumes it")
    i = sub.add_parser("info", help="print a shipped model's card (without its loss history)")
    i.add_argument("--name", default=NAME, choices=sorted(MODELS), help=f"which model (default {NAME})")


def run_zoo(args: argparse.Namespace) -> int:
    from .. import zoo

    if args.zoo_command == "info":
        card = zoo.read_card(name=args.name)
        card.pop("history", None)
        card["current"] = zoo.card_is_current(card)
        print(json.dumps(card, indent=1))
        return 0
    card = zoo.build(args.out, args.data, args.device, args.threads, args.max_steps, args.run_dir, name=args.name)
    print(json.dumps({k: card[k] for k in ("recipe_key", "steps", "wall_minutes", "metrics")}, indent=1))
    weights = zoo.weights_path(args.out, args.name)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.1f} MB) and {zoo.card_path(args.out, args.name)}")
    return 0


__all__ = ["add_zoo_arguments", "run_zoo"]
