"""CLI of fine-tuning: ``cavmae-lite evaluate finetune`` (and its alias ``cavmae-lite finetune``)."""

from __future__ import annotations

import argparse
import json


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``evaluate finetune`` (ignored by the other evaluations)."""
    p.add_argument("--mode", default="multimodal", help="fine-tuning mode: multimodal, audio_only, video_only, ...")
    p.add_argument("--fusion", default="joint", choices=("joint", "joint+streams", "compare"),
                   help="fine-tuning head input: joint (official), joint+streams, or compare both")
    p.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs (default 3)")
    p.add_argument("--max-steps", type=int, help="fine-tuning step cap")
    p.add_argument("--lr", type=float, default=1e-4, help="fine-tuning backbone lr (head x10)")


def run_finetune_task(args: argparse.Namespace, model, train: tuple, evaluation: tuple, device: str) -> int:
    """Fine-tune ``model`` on ``train`` = (data, split) and evaluate on ``evaluation``; prints metrics."""
    from .data import load_dataset
    from .finetune import FUSIONS, finetune

    train_set = load_dataset(train[0], model.config, train[1], train=True, label_csv=args.labels)
    test_set = load_dataset(evaluation[0], model.config, evaluation[1], frames=True, label_csv=args.labels)
    fusions = FUSIONS if args.fusion == "compare" else (args.fusion,)
    out = {}
    for f in fusions:
        r = finetune(model, train_set, test_set, mode=args.mode, fusion=f, multilabel=args.multilabel,
                     epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size or 64, lr=args.lr,
                     device=device)
        out[f] = r.metrics
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0
