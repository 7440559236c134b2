"""The paper's ablation at toy scale: CAV (contrast only) vs AV-MAE (reconstruction only) vs CAV-MAE, each trained
with the same budget, then retrieval on the test split and linear probes (train -> test). ``cavmae-lite ablation``
prints :func:`format_ablation` of :func:`ablation`; notebook 06 runs it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .checkpoints import CHECKPOINT_NAME, load_checkpoint, load_pretrained
from .config import CAVMAEConfig, TrainConfig
from .data import load_dataset
from .evaluate import compute_embeddings, probe_embeddings, retrieval_metrics
from .train import pretrain

VARIANTS = {"CAV": {"mae_weight": 0.0}, "AV-MAE": {"contrast_weight": 0.0}, "CAV-MAE": {}}



def ablation(config_name: str, data_dir: str, out_dir: str | Path, max_steps: int | None = 200,
             max_minutes: float | None = None, variants: tuple[str, ...] = tuple(VARIANTS), resume: bool = False,
             progress: bool = True, **train_overrides: Any) -> dict[str, dict[str, Any]]:
    """Pretrain each variant with the same budget, then retrieval (test split) and a linear probe (train -> test)."""
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


__all__ = ["VARIANTS", "ablation", "format_ablation", "load_pretrained_step"]
