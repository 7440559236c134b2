"""CLI of fine-tuning: ``cavmae-lite finetune`` (= ``cavmae-lite evaluate finetune``), and the data flags and
helpers that every evaluation shares (``evaluate`` imports them from here; this module imports nothing of it).

    cavmae-lite finetune --recipe as20k --checkpoint cav-mae-scale++.pth \\
        --data audioset_20k.json --eval-data audioset_eval.json --labels class_labels_indices.csv

Every flag left unset takes the recipe's value (:mod:`cavmae_lite.finetune.recipes`); the output gives mAP,
accuracy, AUC and d-prime of the last model and of the weight-averaged one, as the official scripts print them.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path
from typing import Any

from ..finetune import FUSIONS, RECIPES, SCHEDULES, classifier_from_pretrained, finetune, get_recipe, head_features

# ----- the data flags and helpers shared with ``evaluate`` ---------------------------------------------------


def data_dir_or_default(path: str | None) -> str:
    """``path``, or the default synthetic dataset (built when missing)."""
    from ..data import default_data_dir, ensure_default_dataset

    return str(path) if path else str(ensure_default_dataset(default_data_dir()))


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
    from ..data import resolve_split

    data = data_dir_or_default(args.data)
    eval_data = args.eval_data or data
    train = (data, resolve_split(data, args.train_split, "train"))
    evaluation = (eval_data, resolve_split(eval_data, args.split, "test"))
    return train, evaluation


def resolve_device(name: str) -> str:
    """``--device``: ``auto`` = cuda when there is one, else cpu (:func:`cavmae_lite.runtime.resolve_device`)."""
    from ..runtime import resolve_device as resolve

    return str(resolve(name))


def warn_same_clips(train: tuple, evaluation: tuple) -> None:
    if train == evaluation:
        warnings.warn(f"training and evaluating on the same clips ({train[0]}, split {train[1] or 'all'}): give "
                      "--eval-data or a manifest with split keys for a fair number", stacklevel=2)


# ----- fine-tuning -----------------------------------------------------------------------------------------


def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``evaluate finetune`` (ignored by the other evaluations)."""
    bool_flag = argparse.BooleanOptionalAction
    p.add_argument("--recipe", default="custom", choices=tuple(RECIPES), help="fine-tuning recipe: the official "
                   "as20k / as2m / vggsound, or custom (small CPU runs; default); the flags below override it")
    p.add_argument("--mode", default="multimodal", help="fine-tuning mode: multimodal, audio_only, video_only, ...")
    p.add_argument("--fusion", default="joint", choices=("joint", "joint+streams", "compare"),
                   help="fine-tuning head input: joint (official), joint+streams, or compare both")
    p.add_argument("--epochs", type=int, help="fine-tuning epochs (recipe: as20k 15, as2m / vggsound 10, custom 5)")
    p.add_argument("--max-steps", type=int, help="fine-tuning step cap (may end inside an epoch)")
    p.add_argument("--lr", type=float, help="backbone learning rate (as20k 5e-5, as2m 1e-5, vggsound / custom 1e-4)")
    p.add_argument("--head-lr-mult", type=float, help="head lr = lr x this (as20k 100, as2m 50, vggsound / custom 10)")
    p.add_argument("--schedule", choices=SCHEDULES, help="step: official per-epoch decay; cosine: per step (custom)")
    p.add_argument("--lr-start", type=int, help="step schedule: first decay after this epoch (as20k 5, others 2)")
    p.add_argument("--lr-step", type=int, help="step schedule: decay every this many epochs (1)")
    p.add_argument("--lr-decay", type=float, help="step schedule: decay factor (0.5)")
    p.add_argument("--freqm", type=int, help="SpecAugment frequency mask width bound (official 48; custom 0)")
    p.add_argument("--timem", type=int, help="SpecAugment time mask width bound (official 192; custom 0)")
    p.add_argument("--mixup", type=float, help="mixup probability per clip (official 0.5; custom 0)")
    p.add_argument("--mixup-alpha", type=float, help="mixup lambda ~ Beta(alpha, alpha) (10)")
    p.add_argument("--mixup-audio", default="auto", choices=("auto", "wave", "power"), help="mix waveforms read "
                   "from the wavs (wave, official), mel energies of the fbanks (power), or auto: wave unless cached")
    p.add_argument("--label-smoothing", type=float, help="label smoothing (official 0.1; custom 0)")
    p.add_argument("--loss", choices=("bce", "ce"), help="loss (as20k / as2m bce, vggsound ce; custom: bce with "
                   "--multilabel, else ce)")
    p.add_argument("--balanced", action=bool_flag, default=None, help="balanced sampler from the label frequencies "
                   "(official for as2m / vggsound)")
    p.add_argument("--wa-start", type=int, help="weight-average the end-of-epoch models from this epoch (1-based)")
    p.add_argument("--wa-end", type=int, help="... to this epoch, inclusive (as20k 3-15, as2m 1-10, vggsound 3-10)")
    p.add_argument("--no-wa", action="store_true", help="no weight averaging")
    p.add_argument("--frame-average", action=bool_flag, default=None, help="evaluate with the probabilities "
                   "averaged over every frame of a clip (default on)")
    p.add_argument("--freeze-base", action="store_true", help="official linear probe: frozen encoder, only the "
                   "head trained with the recipe's optimiser and schedule")
    p.add_argument("--lbfgs-probe", action="store_true", help="also fit the L-BFGS linear probe (probe.py) on the "
                   "same head input of the frozen pretrained encoder, and print it next to the fine-tuned result")
    p.add_argument("--amp", default="none", choices=("none", "bf16"), help="autocast while training (default none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the head, the data order and the augmentations")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading worker processes (default 0)")
    p.add_argument("--out", help="folder for the fine-tuned weights (finetuned_<fusion>[_wa].pt) and result.json")


def add_finetune_command_arguments(p: argparse.ArgumentParser) -> None:
    """``cavmae-lite finetune``: the flags of ``evaluate finetune``."""
    p.add_argument("--checkpoint", required=True, help="run directory, our checkpoint, or an official checkpoint")
    add_data_arguments(p)
    p.add_argument("--multilabel", action="store_true", help="multi-label data (bce loss under --recipe custom)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the recipe's: 36 / 48 / 48 / 32)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    add_finetune_arguments(p)


def run_finetune_command(args: argparse.Namespace) -> int:
    from ..checkpoints import load_pretrained

    model = load_pretrained(args.checkpoint)
    train, evaluation = data_sources(args)
    warn_same_clips(train, evaluation)
    return run_finetune_task(args, model, train, evaluation, resolve_device(args.device))


def recipe_from_args(args: argparse.Namespace):
    """The recipe named by ``--recipe`` with every flag that was given applied."""
    names = ("epochs", "lr", "batch_size", "head_lr_mult", "schedule", "lr_start", "lr_step", "lr_decay", "freqm",
             "timem", "mixup", "mixup_alpha", "label_smoothing", "loss", "balanced", "frame_average", "wa_start",
             "wa_end")
    over: dict[str, Any] = {k: getattr(args, k, None) for k in names}
    if getattr(args, "freeze_base", False):
        over["freeze_base"] = True
    r = get_recipe(args.recipe, **over)
    return r.replace(wa_start=None, wa_end=None) if getattr(args, "no_wa", False) else r


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    return [_finite(v) for v in x] if isinstance(x, list) else x


def _lbfgs_probe(model, train_src: tuple, eval_src: tuple, args, num_classes: int, fusion: str, bce: bool,
                 device: str) -> dict[str, Any]:
    from ..data import load_dataset
    from ..evaluate import linear_probe

    clf = classifier_from_pretrained(model, num_classes)
    tr = load_dataset(train_src[0], model.config, train_src[1], label_csv=args.labels)
    te = load_dataset(eval_src[0], model.config, eval_src[1], label_csv=args.labels)
    x_tr, y_tr, l_tr = head_features(clf, tr, args.mode, fusion, device=device)
    x_te, y_te, l_te = head_features(clf, te, args.mode, fusion, device=device)
    out = linear_probe(x_tr, y_tr if bce else l_tr, x_te, y_te if bce else l_te, multilabel=bce,
                       num_classes=num_classes)
    return {"features": f"head input ({args.mode}, {fusion}) of the frozen pretrained encoder, middle frame", **out}


def _save(out_dir: Path, fusion: str, r, model_config, mode: str) -> None:
    from ..checkpoints import save_checkpoint

    for suffix, clf in (("", r.classifier), ("_wa", r.averaged)):
        if clf is not None:
            save_checkpoint({"model": {k: v.detach().cpu() for k, v in clf.state_dict().items()},
                             "model_config": model_config.to_dict(), "num_classes": clf.num_classes, "mode": mode,
                             "fusion": fusion, "recipe": r.recipe.to_dict()},
                            out_dir / f"finetuned_{fusion.replace('+', '_')}{suffix}.pt")


def _fmt_row(name: str, m: dict[str, Any] | None) -> str:
    def f(x):
        return "   n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4f}"

    return (f"  {name:<16} mAP {f(m['mAP'])}  acc {f(m['accuracy'])}  AUC {f(m['AUC'])}  d_prime {f(m['d_prime'])}"
            f"   (middle frame: mAP {f(m['middle_frame_mAP'])}, acc {f(m['middle_frame_accuracy'])})")


def format_finetune(out: dict[str, Any]) -> str:
    lines = []
    for fusion, res in out.items():
        if fusion == "lbfgs_probe":
            continue
        rc = res["recipe"]
        lines.append(f"[{fusion}] recipe {rc['name']}, mode {res['mode']}: {res['steps']} steps = {res['epochs']} "
                     f"epoch(s) of {res['steps_per_epoch']}, batch {rc['batch_size']}, lr {rc['lr']:g} (head x"
                     f"{rc['head_lr_mult']:g}), {rc['schedule']} schedule, {res['loss']} loss"
                     f"{', frozen encoder' if rc['freeze_base'] else ''}; main metric {res['metric']}")
        lines.append(_fmt_row("last model", res["last"]))
        if res["wa"] is not None:
            lines.append(_fmt_row(f"WA epochs {res['wa_epochs'][0]}-{res['wa_epochs'][-1]}", res["wa"]))
        elif rc["wa_start"] is not None:
            lines.append(f"  weight averaging: no end of epoch in {rc['wa_start']}..{rc['wa_end']} was reached "
                         f"(trained {res['epochs']} epoch(s))")
        if fusion in out.get("lbfgs_probe", {}):
            p = out["lbfgs_probe"][fusion]
            vals = ", ".join(f"{k} {v:.4f}" for k, v in p.items() if isinstance(v, float))
            lines.append(f"  L-BFGS probe     {vals}   ({p['features']})")
    return "\n".join(lines)


def run_finetune_task(args: argparse.Namespace, model, train: tuple, evaluation: tuple, device: str) -> int:
    """Fine-tune ``model`` on ``train`` = (data, split) and evaluate on ``evaluation``; prints metrics."""
    from ..data import load_dataset

    recipe = recipe_from_args(args)
    train_set = load_dataset(train[0], model.config, train[1], train=True, label_csv=args.labels, seed=args.seed)
    test_set = load_dataset(evaluation[0], model.config, evaluation[1], frames=recipe.frame_average,
                            label_csv=args.labels)
    if train_set.mids != test_set.mids:
        raise ValueError(f"the training and evaluation data have different class lists ({train_set.num_classes} vs "
                         f"{test_set.num_classes} classes): give one label CSV with --labels")
    fusions = FUSIONS if args.fusion == "compare" else (args.fusion,)
    out: dict[str, Any] = {}
    for f in fusions:
        r = finetune(model, train_set, test_set, recipe, num_classes=train_set.num_classes, mode=args.mode, fusion=f,
                     multilabel=args.multilabel, max_steps=args.max_steps, amp=args.amp, device=device,
                     seed=args.seed, mixup_audio=args.mixup_audio, num_workers=args.num_workers)
        out[f] = {"mode": args.mode, **r.report, "recipe": recipe.to_dict(), "final_loss": r.history[-1]["loss"]}
        if args.out:
            _save(Path(args.out), f, r, model.config, args.mode)
    if args.lbfgs_probe:
        bce = recipe.resolved_loss(args.multilabel) == "bce"
        out["lbfgs_probe"] = {f: _lbfgs_probe(model, train, evaluation, args, train_set.num_classes, f, bce, device)
                              for f in fusions}
    out = _finite(out)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "result.json").write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out) if args.json else format_finetune(out))
    return 0
