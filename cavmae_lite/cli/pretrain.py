"""``cavmae-lite pretrain``: flags -> (CAVMAEConfig, TrainConfig) -> :func:`cavmae_lite.train.pretrain`."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from pathlib import Path

# flag -> TrainConfig field; every flag defaults to None so that only the ones given override the preset
_FLAGS = {
    "batch_size": (int, "clips per process per micro-step (tiny: 64, base: 48)"),
    "lr": (float, "peak learning rate (tiny: 1e-3, base: 5e-5)"),
    "min_lr_ratio": (float, "cosine floor as a fraction of --lr (default 0.01)"),
    "weight_decay": (float, "weight decay (AdamW default 0.05; official Adam 5e-7)"),
    "optimizer": (str, "adamw or adam (official)"),
    "schedule": (str, "cosine (warm-up + cosine), official (halve from epoch 10 every 5) or constant"),
    "warmup_steps": (int, "linear warm-up steps (tiny: 50)"),
    "epochs": (int, "stop after this many epochs"),
    "grad_accum": (int, "micro-steps per optimiser step"),
    "clip": (float, "gradient-norm clip (0 = off; default 1.0)"),
    "amp": (str, "auto, bf16, fp16 (with GradScaler) or none; auto = bf16 on CUDA and on a CPU with native bf16, else none"),
    "mask_ratio_a": (float, "audio masking ratio (tiny preset 0.15; paper and base 0.75)"),
    "mask_ratio_v": (float, "visual masking ratio (tiny preset 0.15; paper and base 0.75)"),
    "mask_mode": (str, "audio masking: unstructured, time, freq or tf"),
    "mae_weight": (float, "reconstruction loss weight (0 = CAV, contrast only)"),
    "contrast_weight": (float, "contrastive loss weight (paper 0.01; tiny preset 1.0; 0 = AV-MAE)"),
    "temperature": (float, "InfoNCE temperature tau (paper 0.05; tiny preset 0.1)"),
    "bidirectional": (lambda s: s.lower() in ("1", "true", "yes", "on"),
                      "true/false: InfoNCE in both directions (tiny preset: true; paper: false)"),
    "negatives": (str, "global (gather across ranks) or local (official per-GPU negatives)"),
    "contrast_groups": (int, "split each process's batch into G InfoNCE groups, as the official 4-GPU runs did "
                        "(base: 4 groups of 12; default 1)"),
    "pairs_per_clip": (int, "CAV-MAE Sync: (frame, segment) pairs per clip and step, distinct moments that are each "
                       "other's negatives (sync-tiny: 4; the release: 1)"),
    "init": (str, "start a new run from these weights: one of our checkpoints / run dirs, an official CAV-MAE "
             ".pth, or an ImageNet MAE ViT-B .pth (adapted to two streams); ignored on --resume"),
    "eval_retrieval": (lambda s: s.lower() in ("1", "true", "yes", "on"),
                       "true/false: per-epoch validation also reports retrieval R@1 (default true)"),
    "checkpoint_every": (int, "optimiser steps between checkpoints (default 500)"),
    "log_every": (int, "steps between metrics lines (default 10)"),
    "num_workers": (int, "DataLoader workers (default 0: exact resume on CPU)"),
    "device": (str, "auto, cpu, cuda, cuda:1 ..."),
    "threads": (lambda s: -1 if s == "auto" else int(s),
                "CPU threads: N, or auto = the idle cores (faster on a busy machine; default: all cores, reproducible)"),
}
_FIELD = {"clip": "clip_grad", "temperature": "contrast_temperature", "negatives": "contrast_negatives",
          "bidirectional": "bidirectional_contrast"}


def add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="tiny", help="model preset tiny|base, or a JSON file (a config.json of a run "
                   "also restores its training settings); default tiny")
    p.add_argument("--data", help="dataset folder or manifest / official datafile JSON (default: the default "
                   "synthetic dataset, built if missing)")
    p.add_argument("--split", help="training split: train, val, test or all (default: train when the manifest has "
                   "split keys, else the whole manifest, as for an official datafile)")
    p.add_argument("--labels", help="label CSV (index,mid,display_name; default: labels.csv beside the JSON)")
    p.add_argument("--model", choices=["cavmae", "sync"], default="cavmae",
                   help="cavmae (default) or sync: CAV-MAE Sync, trained on (frame, audio segment) pairs with "
                   "CAVMAESyncConfig.<config>() and TrainConfig.preset('sync-<config>')")
    p.add_argument("--out", required=True, help="run directory: config.json, checkpoint.pt, metrics.jsonl")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--max-minutes", type=float, help="stop after this many minutes of wall time (cosine horizon is "
                   "fitted to it when --max-steps is not given)")
    p.add_argument("--resume", action="store_true", help="continue RUN_DIR/checkpoint.pt exactly (if present)")
    p.add_argument("--seed", type=int, help="seed for init, data order and masking (default 0)")
    for name, (typ, text) in _FLAGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, help=text)
    p.add_argument("--eval-data", help="validation set (folder or manifest / official datafile JSON): losses "
                   "(and R@1) after every epoch into metrics.jsonl, best.pt = lowest validation loss")
    p.add_argument("--eval-split", help="split of --eval-data (default: val when it has split keys, else all)")
    p.add_argument("--keep-epochs", action="store_true", help="also keep every epoch's weights as epoch_<E>.pt")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (falls back to eager)")
    p.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--tensorboard", action="store_true", help="also write the training curves to RUN_DIR/tensorboard "
                   "(needs: pip install tensorboard)")


def build_configs(args: argparse.Namespace):
    """(model config, TrainConfig) from the flags; on --resume the run's saved configs win, budget flags aside."""
    from ..config import CAVMAEConfig, CAVMAESyncConfig, TrainConfig, config_from_dict

    saved = Path(args.out) / "config.json"
    given = {_FIELD.get(k, k): getattr(args, k) for k in _FLAGS if getattr(args, k, None) is not None}
    if given.get("clip_grad") == 0:
        given["clip_grad"] = None
    for k in ("max_steps", "max_minutes", "seed"):
        if getattr(args, k) is not None:
            given[k] = getattr(args, k)
    if args.compile:
        given["compile"] = True
    if args.deterministic:
        given["deterministic"] = True
    if args.keep_epochs:
        given["keep_epochs"] = True
    if given.get("init"):  # recorded in config.json: make it independent of the working directory
        given["init"] = str(Path(given["init"]).expanduser().resolve())
    if args.resume and saved.is_file():
        d = json.loads(saved.read_text())
        budget = {k: v for k, v in given.items() if k in ("max_steps", "max_minutes", "epochs", "checkpoint_every",
                                                         "log_every", "num_workers", "device", "keep_epochs",
                                                         "eval_retrieval")}
        return config_from_dict(d["model"]), TrainConfig.from_dict(d["train"], **budget)
    name, sync = args.config, getattr(args, "model", "cavmae") == "sync"
    if Path(name).is_file():
        d = json.loads(Path(name).read_text())
        model = CAVMAESyncConfig.from_dict(d) if sync else config_from_dict(d)
        train = TrainConfig.from_dict(d["train"], **given) if "train" in d else TrainConfig(**given)
        return model, train
    if sync:
        return CAVMAESyncConfig.preset(name), TrainConfig.preset(f"sync-{name}", **given)
    return CAVMAEConfig.preset(name), TrainConfig.preset(name, **given)


class _PrintHandler(logging.Handler):
    """Prints the library's log messages to the current stderr (the CLI's voice; stdout keeps the summary)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr)


@contextlib.contextmanager
def _print_library_log(level: int = logging.INFO):
    """While the command runs, cavmae_lite's log records of ``level`` and above are printed."""
    lib, handler = logging.getLogger("cavmae_lite"), _PrintHandler()
    old_level = lib.level
    lib.addHandler(handler)
    lib.setLevel(level)
    try:
        yield
    finally:
        lib.removeHandler(handler)
        lib.setLevel(old_level)


def _datasets(args: argparse.Namespace, config, tc):
    """(training set, validation set or None) from --data / --split / --eval-data / --eval-split / --labels."""
    from .main import UserError

    try:
        from ..data import default_data_dir, ensure_default_dataset, load_dataset, load_pair_dataset, resolve_split
    except ImportError as e:
        raise UserError(f"the data package is not available ({e})") from e
    data_dir = args.data
    if data_dir is None:
        data_dir = ensure_default_dataset(default_data_dir())
    if hasattr(config, "clip_length"):  # CAV-MAE Sync: one random (frame, segment) pair per clip and step
        if args.eval_data is not None:
            raise UserError("--eval-data is not supported with --model sync yet: evaluate the run with "
                            "`cavmae-lite evaluate retrieval` on its checkpoint")
        split = resolve_split(data_dir, args.split, "train")
        return load_pair_dataset(data_dir, config, split, mode="train", seed=tc.seed,
                                 pairs_per_clip=tc.pairs_per_clip), None
    dataset = load_dataset(data_dir, config=config, split=resolve_split(data_dir, args.split, "train"), train=True,
                           seed=tc.seed, label_csv=args.labels)
    eval_set = None
    if args.eval_data is not None:
        eval_set = load_dataset(args.eval_data, config=config, split=resolve_split(args.eval_data, args.eval_split,
                                "val"), train=False, label_csv=args.labels)
    return dataset, eval_set


def _summary(result, start: float) -> dict:
    last = result.history[-1] if result.history else {}
    summary = {"step": result.step, "stopped": result.stopped, "minutes": round((time.time() - start) / 60, 2),
               **{k: round(last[k], 4) for k in ("loss", "loss_rec_a", "loss_rec_v", "c_acc") if k in last}}
    if result.validation:
        val = result.validation[-1]
        summary.update({k: round(val[k], 4) for k in ("val_loss", "val_c_acc", "val_r1_a2v") if k in val},
                       best_epoch=val.get("best_epoch"))
    return summary


def run_pretrain(args: argparse.Namespace) -> int:
    start = time.time()
    from ..checkpoints import CheckpointError
    from ..train import TrainingDiverged, pretrain, require_tensorboard
    from .main import UserError

    config, tc = build_configs(args)  # bad values (e.g. --max-steps -3) fail here, before anything is written
    if tc.max_steps is None and tc.max_minutes is None and tc.epochs is None:
        raise UserError("give a budget: --max-steps N, --max-minutes M and/or --epochs E")
    tensorboard = getattr(args, "tensorboard", False)
    if tensorboard:
        try:
            require_tensorboard()
        except ImportError as e:
            raise UserError(str(e)) from e
    dataset, eval_set = _datasets(args, config, tc)
    try:
        with _print_library_log():
            result = pretrain(config, tc, dataset, args.out, resume=args.resume, progress=not args.no_progress,
                              start_time=start, eval_dataset=eval_set, tensorboard=tensorboard)
    except (TrainingDiverged, FileExistsError, CheckpointError) as e:
        raise UserError(str(e)) from e
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
        print(json.dumps(_summary(result, start)))
    if dist.is_available() and dist.is_initialized():
        dist.barrier()  # rank 0 may still be writing; gloo must not be torn down under it
        dist.destroy_process_group()
    return 0
