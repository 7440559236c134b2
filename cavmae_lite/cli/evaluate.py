"""CLI of the evaluations: ``cavmae-lite evaluate {retrieval,probe,finetune}``, ``embed`` and ``ablation``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .finetune import (
    add_data_arguments,
    add_finetune_arguments,
    data_dir_or_default,
    data_sources,
    resolve_device,
    run_finetune_task,
    warn_same_clips,
)


def _fmt_retrieval(m: dict[str, Any]) -> str:
    lines = [f"retrieval on {m['n']} pairs (chance R@1 = {1 / m['n']:.4f})",
             f"{'':6} {'R@1':>7} {'R@5':>7} {'R@10':>7} {'median':>7} {'mean':>8}"]
    for d in ("a2v", "v2a"):
        r = m[d]
        lines.append(f"{d:6} {r['r1']:7.3f} {r['r5']:7.3f} {r['r10']:7.3f} {r['median_rank']:7.1f} {r['mean_rank']:8.1f}")
    return "\n".join(lines)


# ----- evaluate (the data flags and the fine-tuning task are cavmae_lite.cli.finetune's) ----------------------


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
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
    p.add_argument("--compare", metavar="CHECKPOINT", help="retrieval of a CAV-MAE Sync checkpoint: also evaluate this "
                   "CAV-MAE on the same (frame, segment) pairs (its whole clip's audio against every frame when its "
                   "audio_length is the clip's)")
    add_finetune_arguments(p)


def run_evaluate(args: argparse.Namespace) -> int:
    from ..checkpoints import load_pretrained
    from ..data import load_dataset
    from ..evaluate import compute_embeddings, probe_embeddings, retrieval_metrics

    model = load_pretrained(args.checkpoint)
    (train_data, train_split), (eval_data, eval_split) = data_sources(args)
    device = resolve_device(args.device)
    frames = args.frames == "average"
    bs = args.batch_size or 64
    if args.task == "retrieval" and hasattr(model.config, "clip_length"):
        return _sync_retrieval(args, model, eval_data, eval_split, device)
    if args.task == "retrieval":
        ds = load_dataset(eval_data, config=model.config, split=eval_split, frames=frames, label_csv=args.labels)
        out = retrieval_metrics(compute_embeddings(model, ds, args.frames, bs, device).similarity())
        print(json.dumps(out) if args.json else _fmt_retrieval(out))
        return 0
    warn_same_clips((train_data, train_split), (eval_data, eval_split))
    if args.task == "probe":
        tr = compute_embeddings(model, load_dataset(train_data, model.config, train_split, frames=frames,
                                                    label_csv=args.labels), args.frames, bs, device)
        te = compute_embeddings(model, load_dataset(eval_data, model.config, eval_split, frames=frames,
                                                    label_csv=args.labels), args.frames, bs, device)
        out = probe_embeddings(tr, te, args.features, multilabel=args.multilabel)
        out.update(features=args.features, n_train=len(tr.labels), n_test=len(te.labels))
        print(json.dumps(out) if args.json else "  ".join(f"{k}={v}" for k, v in out.items()))
        return 0
    return run_finetune_task(args, model, (train_data, train_split), (eval_data, eval_split), device)


def _sync_retrieval(args: argparse.Namespace, model, eval_data, eval_split, device) -> int:
    """Frame- and clip-level retrieval (four clip scores) and temporal localisation of a CAVMAESync, and of the
    ``--compare`` CAV-MAE on the same pairs."""
    from ..checkpoints import load_pretrained
    from ..data import load_pair_dataset
    from ..evaluate import sync_retrieval

    ds = load_pair_dataset(eval_data, model.config, eval_split, mode="retrieval")
    events = _events_of(eval_data, ds)
    out = {"sync": sync_retrieval(model, ds, args.batch_size or 8, device, events=events)}
    if args.compare:
        base = load_pretrained(args.compare)
        whole = base.config.audio_length == model.config.clip_length
        if not whole and base.config.audio_length != model.config.audio_length:
            from .main import UserError

            raise UserError(f"--compare: the CAV-MAE's audio_length {base.config.audio_length} is neither the clip "
                            f"length {model.config.clip_length} nor the segment length {model.config.audio_length}")
        out["cavmae"] = sync_retrieval(base, ds, args.batch_size or 8, device, clip_audio=whole, events=events)
        out["cavmae"]["audio"] = "whole clip" if whole else "segment"
    if args.json:
        print(json.dumps(out))
        return 0
    for name, rep in out.items():
        loc = rep["localisation"]
        event = loc.get("event")
        print(f"== {name}: {rep['n_clips']} clips x {rep['frames_per_clip']} frames; localisation "
              f"{loc['accuracy']:.3f} (chance {loc['chance']:.3f}), within one frame {loc['within_one']:.3f} (chance "
              f"{loc['chance_within_one']:.3f})" + (f", same event {event['accuracy']:.3f} (chance "
              f"{event['chance']:.3f}, {event['n']} segments)" if event else "") + "; frame-level:")
        print(_fmt_retrieval(rep["frame"]))
        for strategy, m in rep["clip"].items():
            print(f"clip-level, {strategy}:")
            print(_fmt_retrieval(m))
    return 0


def _events_of(data_dir, ds):
    """(N, T) lit object per moment when ``data_dir`` is an events-variant synthetic set, else None."""
    from pathlib import Path

    from ..data.synthetic import frame_events

    stamp = Path(data_dir) / "synthetic.json"
    if not stamp.is_file() or not json.loads(stamp.read_text()).get("events"):
        return None
    return frame_events(data_dir, list(ds.video_ids), ds.config.num_frames)


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
        from ..data.video import clip_to_inputs

        d = clip_to_inputs(self.paths[i], self.config)
        return {"audio": d["audio"], "video": d["video"], "frames": d["frames"], "label": -1,
                "video_id": self.video_ids[i], "index": i}


def run_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from ..checkpoints import load_pretrained
    from ..evaluate import compute_embeddings

    model = load_pretrained(args.checkpoint)
    src = Path(args.inputs)
    if not src.exists():
        raise FileNotFoundError(f"{src} does not exist")
    videos = [src] if src.suffix.lower() in VIDEO_EXTS else \
        sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_EXTS) if src.is_dir() else []
    if videos:
        ds = _VideoFiles(videos, model.config)
    else:
        from ..data import load_dataset

        ds = load_dataset(src, model.config, None if args.split == "all" else args.split,
                          frames=args.frames == "average", label_csv=args.labels)
    device = resolve_device(args.device)
    emb = compute_embeddings(model, ds, args.frames, args.batch_size, device)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, audio=emb.audio.numpy(), video=emb.video.numpy(), video_ids=np.array(emb.video_ids),
             labels=emb.labels.numpy())
    print(f"wrote {args.out}: {len(emb.audio)} clips, {emb.audio.shape[1]}-d audio and video embeddings")
    return 0


# ----- ablation (cavmae_lite.ablation) ----------------------------------------------------------------------

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


def run_ablation(args: argparse.Namespace) -> int:
    from ..ablation import VARIANTS, ablation, format_ablation

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variants {bad}; choose from {list(VARIANTS)}")
    rows = ablation(args.config, data_dir_or_default(args.data), args.out, args.max_steps, args.max_minutes, variants,
                    args.resume, progress=not args.json, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    contrast_weight=args.contrast_weight, threads=args.threads)
    print(json.dumps(rows) if args.json else format_ablation(rows))
    return 0
