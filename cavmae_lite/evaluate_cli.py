"""CLI of the evaluations: ``cavmae-lite evaluate {retrieval,probe,finetune}``, ``embed`` and ``ablation``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any


def _data_dir(path: str | None) -> str:
    from .data import default_data_dir, ensure_default_dataset

    return str(path) if path else str(ensure_default_dataset(default_data_dir()))


def _fmt_retrieval(m: dict[str, Any]) -> str:
    lines = [f"retrieval on {m['n']} pairs (chance R@1 = {1 / m['n']:.4f})",
             f"{'':6} {'R@1':>7} {'R@5':>7} {'R@10':>7} {'median':>7} {'mean':>8}"]
    for d in ("a2v", "v2a"):
        r = m[d]
        lines.append(f"{d:6} {r['r1']:7.3f} {r['r5']:7.3f} {r['r10']:7.3f} {r['median_rank']:7.1f} {r['mean_rank']:8.1f}")
    return "\n".join(lines)


# ----- evaluate --------------------------------------------------------------------------------------------


def add_data_arguments(p: argparse.ArgumentParser, eval_split: bool = True) -> None:
    """--data / --split / --train-split / --eval-data / --labels, shared by the commands that read a dataset."""
    p.add_argument("--data", help="dataset folder or manifest / official datafile JSON (default: the default "
                   "synthetic dataset)")
    p.add_argument("--labels", help="label CSV (index,mid,display_name) mapping the manifest's `labels` mids "
                   "(default: labels.csv beside the JSON)")
    if eval_split:
        p.add_argument("--eval-data", help="a separate evaluation datafile (e.g. the official eval JSON); "
                       "default: --data")
        p.add_argument("--split", help="evaluation split: train, val, test or all (default: test when the "
                       "manifest has split keys, else the whole manifest)")
        p.add_argument("--train-split", help="probe / fine-tuning training split of --data (default: train when "
                       "the manifest has split keys, else the whole manifest)")


def data_sources(args: argparse.Namespace) -> tuple[tuple[str, str | None], tuple[str, str | None]]:
    """((train data, train split), (eval data, eval split)) from the data flags (see :func:`add_data_arguments`)."""
    from .data import resolve_split

    data = _data_dir(args.data)
    eval_data = args.eval_data or data
    train = (data, resolve_split(data, args.train_split, "train"))
    evaluation = (eval_data, resolve_split(eval_data, args.split, "test"))
    return train, evaluation


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    from .finetune_cli import add_finetune_arguments

    p.add_argument("task", choices=("retrieval", "probe", "finetune"), help="which evaluation")
    p.add_argument("--checkpoint", required=True, help="run directory, our checkpoint, or an official checkpoint")
    add_data_arguments(p)
    p.add_argument("--frames", default="middle", choices=("middle", "average"), help="retrieval/probe video "
                   "embedding: middle frame or the average over all frames")
    p.add_argument("--features", default="av", choices=("a", "v", "av"), help="probe features (default av)")
    p.add_argument("--multilabel", action="store_true", help="probe / fine-tune multi-label (mAP) instead of accuracy")
    p.add_argument("--batch-size", type=int, help="batch size (default 64; fine-tuning: the recipe's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    add_finetune_arguments(p)


def _warn_same_clips(train: tuple, evaluation: tuple) -> None:
    if train == evaluation:
        import warnings

        warnings.warn(f"training and evaluating on the same clips ({train[0]}, split {train[1] or 'all'}): give "
                      "--eval-data or a manifest with split keys for a fair number", stacklevel=2)


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from .data import load_dataset
    from .evaluate import compute_embeddings, probe_embeddings, retrieval_metrics
    from .pretrained import load_pretrained

    model = load_pretrained(args.checkpoint)
    (train_data, train_split), (eval_data, eval_split) = data_sources(args)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto"
                                                                                  else args.device)
    frames = args.frames == "average"
    bs = args.batch_size or 64
    if args.task == "retrieval":
        ds = load_dataset(eval_data, config=model.config, split=eval_split, frames=frames, label_csv=args.labels)
        out = retrieval_metrics(compute_embeddings(model, ds, args.frames, bs, device).similarity())
        print(json.dumps(out) if args.json else _fmt_retrieval(out))
        return 0
    _warn_same_clips((train_data, train_split), (eval_data, eval_split))
    if args.task == "probe":
        tr = compute_embeddings(model, load_dataset(train_data, model.config, train_split, frames=frames,
                                                    label_csv=args.labels), args.frames, bs, device)
        te = compute_embeddings(model, load_dataset(eval_data, model.config, eval_split, frames=frames,
                                                    label_csv=args.labels), args.frames, bs, device)
        out = probe_embeddings(tr, te, args.features, multilabel=args.multilabel)
        out.update(features=args.features, n_train=len(tr.labels), n_test=len(te.labels))
        print(json.dumps(out) if args.json else "  ".join(f"{k}={v}" for k, v in out.items()))
        return 0
    from .finetune_cli import run_finetune_task

    return run_finetune_task(args, model, (train_data, train_split), (eval_data, eval_split), device)


# ----- embed -----------------------------------------------------------------------------------------------

VIDEO_EXTS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


def add_embed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", metavar="VIDEOS_OR_MANIFEST", help="a folder of videos, one video, or a prepared "
                   "dataset (folder with a manifest, or the manifest / datafile JSON)")
    p.add_argument("out", metavar="OUT.npz", help="output: audio (N, D), video (N, D), video_ids, labels")
    p.add_argument("--checkpoint", required=True, help="run directory, our checkpoint, or an official checkpoint")
    p.add_argument("--frames", default="middle", choices=("middle", "average"))
    p.add_argument("--split", help="for a prepared dataset: only this split (default: the whole manifest)")
    p.add_argument("--labels", help="label CSV for a manifest (default: labels.csv beside it)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")


class _VideoFiles:
    def __init__(self, paths: list[Path], config):
        self.paths, self.config = paths, config
        self.video_ids = [p.stem for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        from .data.video import clip_to_inputs

        d = clip_to_inputs(self.paths[i], self.config)
        return {"audio": d["audio"], "video": d["video"], "frames": d["frames"], "label": -1,
                "video_id": self.video_ids[i], "index": i}


def run_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from .evaluate import compute_embeddings
    from .pretrained import load_pretrained

    model = load_pretrained(args.checkpoint)
    src = Path(args.inputs)
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    videos = [src] if src.suffix.lower() in VIDEO_EXTS else \
        sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_EXTS) if src.is_dir() else []
    if videos:
        ds = _VideoFiles(videos, model.config)
    else:
        from .data import load_dataset

        ds = load_dataset(src, model.config, None if args.split == "all" else args.split,
                          frames=args.frames == "average", label_csv=args.labels)
    device = "auto" if args.device == "auto" else args.device
    emb = compute_embeddings(model, ds, args.frames, args.batch_size, device)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, audio=emb.audio.numpy(), video=emb.video.numpy(), video_ids=np.array(emb.video_ids),
             labels=emb.labels.numpy())
    print(f"wrote {args.out}: {len(emb.audio)} clips, {emb.audio.shape[1]}-d audio and video embeddings")
    return 0


# ----- ablation --------------------------------------------------------------------------------------------

VARIANTS = {"CAV": {"mae_weight": 0.0}, "AV-MAE": {"contrast_weight": 0.0}, "CAV-MAE": {}}


def add_ablation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="tiny", help="model preset (default tiny)")
    p.add_argument("--data", help="dataset directory (default: the default synthetic dataset)")
    p.add_argument("--out", default="runs/ablation", help="parent folder of the three runs (default runs/ablation)")
    p.add_argument("--max-steps", type=int, default=200, help="optimiser steps per variant (same budget; default 200)")
    p.add_argument("--max-minutes", type=float, help="also cap each variant's wall time")
    p.add_argument("--variants", default="CAV,AV-MAE,CAV-MAE", help="comma-separated subset")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--contrast-weight", type=float, help="contrast weight of CAV-MAE (CAV uses it too)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=lambda s: -1 if s == "auto" else int(s), help="CPU threads: N or auto")
    p.add_argument("--resume", action="store_true", help="reuse finished runs / continue unfinished ones")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def ablation(config_name: str, data_dir: str, out_dir: str | Path, max_steps: int | None = 200,
             max_minutes: float | None = None, variants: tuple[str, ...] = tuple(VARIANTS), resume: bool = False,
             progress: bool = True, **train_overrides: Any) -> dict[str, dict[str, Any]]:
    """Pretrain each variant with the same budget, then retrieval (test split) and a linear probe (train -> test)."""
    from .config import CAVMAEConfig, TrainConfig
    from .data import load_dataset
    from .evaluate import compute_embeddings, probe_embeddings, retrieval_metrics
    from .train import CHECKPOINT_NAME, load_pretrained, pretrain

    rows = {}
    for name in variants:
        tc = TrainConfig.preset(config_name, max_steps=max_steps, max_minutes=max_minutes,
                                **{k: v for k, v in train_overrides.items() if v is not None})
        tc = tc.replace(**VARIANTS[name])
        config = CAVMAEConfig.preset(config_name)
        run = Path(out_dir) / name
        t0 = time.time()
        ck = run / CHECKPOINT_NAME
        if not (resume and ck.is_file() and load_pretrained_step(ck) >= (max_steps or 0)):
            pretrain(config, tc, load_dataset(data_dir, config, "train", train=True, seed=tc.seed), run,
                     resume=resume, progress=progress)
        model = load_pretrained(run)
        train_minutes = (time.time() - t0) / 60
        te = compute_embeddings(model, load_dataset(data_dir, model.config, "test"), joint=True)
        tr = compute_embeddings(model, load_dataset(data_dir, model.config, "train"), joint=True)
        r = retrieval_metrics(te.similarity())
        rows[name] = {"a2v": r["a2v"], "v2a": r["v2a"], "n": r["n"], "probe_av": probe_embeddings(tr, te, "av")["accuracy"],
                      "probe_a": probe_embeddings(tr, te, "a")["accuracy"], "probe_v": probe_embeddings(tr, te, "v")["accuracy"],
                      "probe_joint": probe_embeddings(tr, te, "joint")["accuracy"], "train_minutes": round(train_minutes, 2)}
    return rows


def load_pretrained_step(path: Path) -> int:
    from .checkpoints import load_checkpoint

    return int(load_checkpoint(path)["state"]["step"])


def format_ablation(rows: dict[str, dict[str, Any]]) -> str:
    n = next(iter(rows.values()))["n"]
    head = (f"{'variant':8} | {'a2v R@1':>7} {'R@5':>6} {'R@10':>6} | {'v2a R@1':>7} {'R@5':>6} {'R@10':>6} | "
            f"{'probe a+v':>9} {'a':>6} {'v':>6} {'joint':>6}")
    title = (f"retrieval on {n} test pairs (chance R@1 {1 / n:.4f}, R@10 {min(10 / n, 1):.4f}); "
             "probe = linear probe accuracy on [c_a; c_v], c_a, c_v and the joint stream")
    lines = [title, head, "-" * len(head)]
    for name, r in rows.items():
        a, v = r["a2v"], r["v2a"]
        lines.append(f"{name:8} | {a['r1']:7.3f} {a['r5']:6.3f} {a['r10']:6.3f} | {v['r1']:7.3f} {v['r5']:6.3f} "
                     f"{v['r10']:6.3f} | {r['probe_av']:9.3f} {r['probe_a']:6.3f} {r['probe_v']:6.3f} "
                     f"{r.get('probe_joint', float('nan')):6.3f}")
    return "\n".join(lines)


def run_ablation(args: argparse.Namespace) -> int:
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variants {bad}; choose from {list(VARIANTS)}")
    rows = ablation(args.config, _data_dir(args.data), args.out, args.max_steps, args.max_minutes, variants,
                    args.resume, progress=not args.json, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    contrast_weight=args.contrast_weight, threads=args.threads)
    print(json.dumps(rows) if args.json else format_ablation(rows))
    return 0
