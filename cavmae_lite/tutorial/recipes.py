"""One table of the tutorial's recipes: the paper's, the two shipped models' and the ten-minute recipe's, with why
each departs, every number read from where it was measured.

    from IPython.display import Markdown
    Markdown(recipe_table())              # in a notebook; the README and docs/training.md carry the same table

The shipped models' settings and metrics come from their cards (``zoo.read_card``), the ten-minute recipe's from
``TrainConfig.preset("tiny")`` and the masking trade-off's rows (``benchmarks/bench_masking.py``, passed in as
``tradeoff``: the sweep's, and the "preset" row of today's recipe), the paper's from ``shared/reference/cavmae-spec.md`` §5.2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import zoo
from ..config import SHIPPED_TINY, CAVMAEConfig, TrainConfig
from ..data.synthetic import FULL_SIZES

# The paper's pretraining (CAV-MAE Base, spec §5.2): masking, losses, sizes.
PAPER = {"mask": "0.75 / 0.75", "patch": "16", "depth": "768, 11 + 1", "norm_pix": "on (off in the released NoNorm checkpoint, made for "
         "inpainting)", "decoder": "512 × 8", "contrast": "0.01, one-way, 0.05", "budget": "48 × 25 epochs of AudioSet-2M",
         "data": "AudioSet-2M"}


TRADEOFF_JSON = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "masking.json"


def load_tradeoff(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The masking trade-off's rows (``benchmarks/bench_masking.py --out benchmarks/results``) from a checkout of
    the repository, or ``[]`` when the file is not there (an installed package without the benchmarks)."""
    path = Path(path) if path else TRADEOFF_JSON
    if not path.is_file():
        if path != TRADEOFF_JSON:
            raise FileNotFoundError(f"no trade-off table at {path}: run benchmarks/bench_masking.py --out {path.parent}")
        return []
    return json.loads(path.read_text())


# The masking sweep's model: the tiny preset's sizes when it was measured, the shipped models' (SHIPPED_TINY); its
# no-norm_pix_loss star; "preset" rows are today's ten-minute recipe.
def variant_label(sets: dict[str, Any]) -> str:
    """A trade-off row's model: "preset" for the tiny preset, else its overrides ("k=v, ..." sorted by name)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(sets.items())) or "preset"


SWEEP = variant_label(SHIPPED_TINY)
SWEEP_NONORM = variant_label({**SHIPPED_TINY, "norm_pix_loss": False})


def _row(tradeoff: list[dict[str, Any]], ratio: float, model: str = "preset") -> dict[str, Any] | None:
    return next((r for r in tradeoff if r["mask_ratio"] == ratio and r["model"] == model), None)


def _settings(model: dict[str, Any], train: dict[str, Any]) -> dict[str, str]:
    tau = train.get("contrast_temperature") or model["contrast_temperature"]
    way = "two-way" if train.get("bidirectional_contrast", model["bidirectional_contrast"]) else "one-way"
    weight = train.get("contrast_weight") if train.get("contrast_weight") is not None else model["contrast_weight"]
    return {"mask": f"{train['mask_ratio_a']:g} / {train['mask_ratio_v']:g}", "patch": str(model["patch_size"]),
            "depth": f"{model['embed_dim']}, {model['modality_specific_depth']} + {model['joint_depth']}",
            "norm_pix": "on" if model["norm_pix_loss"] else "off", "decoder":
            f"{model['decoder_embed_dim']} × {model['decoder_depth']}", "contrast": f"{weight:g}, {way}, {tau:g}"}


def _card_column(name: str) -> dict[str, str]:
    card = zoo.read_card(name=name)
    train, m = card["recipe"]["train"], card["metrics"]
    col = _settings(card["recipe"]["model"], train)
    rec = m["reconstruction"]
    col["budget"] = f"{train['batch_size']} × {card['steps']:,} steps, {card['wall_minutes']:.0f} CPU-min"
    col["data"] = f"{card['recipe']['data']['sizes'][0]:,} synthetic clips"
    col["r1"] = f"{m['retrieval']['a2v']['r1']:.3f} / {m['retrieval']['v2a']['r1']:.3f}"
    col["mse"] = f"{rec['mse_a'] / rec['mse_a_mean']:.2f} / {rec['mse_v'] / rec['mse_v_mean']:.2f}"
    return col


def _ten_minute_column(tradeoff: list[dict[str, Any]]) -> dict[str, str]:
    tc = TrainConfig.preset("tiny")
    col = _settings(CAVMAEConfig.tiny().to_dict(), tc.to_dict())
    row = _row(tradeoff, tc.mask_ratio_a)
    col["data"] = f"{FULL_SIZES[0]:,} synthetic clips (the default set)"
    col["budget"] = f"{tc.batch_size} × the steps 10 min allow" + (f" ({row['steps']} in bench_learning's run)" if row else "")
    col["r1"] = f"{row['a2v_r1']:.3f} / {row['v2a_r1']:.3f}" if row else "(run bench_masking)"
    col["mse"] = f"{row['mse_ratio_a']:.2f} / {row['mse_ratio_v']:.2f}" if row else "(run bench_masking)"
    return col


def _why(tradeoff: list[dict[str, Any]]) -> dict[str, str]:
    lo, hi = _row(tradeoff, 0.15, SWEEP), _row(tradeoff, 0.75, SWEEP)
    nonorm = _row(tradeoff, 0.75, SWEEP_NONORM)
    mask = "the two losses want different masking at this scale (notebook 06)"
    if lo and hi:
        mask = (f"at equal 10 CPU-minutes (the shipped models' sizes), R@1 falls from {lo['a2v_r1']:.2f} / {lo['v2a_r1']:.2f} (ratio 0.15) to "
                f"{hi['a2v_r1']:.2f} / {hi['v2a_r1']:.2f} (0.75), while the 75 % reconstruction barely moves "
                f"(audio {lo['mse_ratio_a']:.2f} → {hi['mse_ratio_a']:.2f})")
    norm = "without it the decoder predicts input units: a removed patch comes back with its colour and loudness"
    if hi and nonorm:
        norm += (f" (10 min at 0.75: MSE / baseline {hi['mse_ratio_a']:.2f} / {hi['mse_ratio_v']:.2f} with it, "
                 f"{nonorm['mse_ratio_a']:.2f} / {nonorm['mse_ratio_v']:.2f} without)")
    return {"mask": mask, "patch": "at 75 % a 6 × 6 frame grid keeps 9 patches, often none of an object; 12 × 12 "
            "keeps 36", "norm_pix": norm, "decoder": "MAE's decoder is light on purpose; one layer keeps a step over "
            "400 tokens of 8-px patches affordable, and gives ten minutes more steps", "contrast": "a short run needs a louder contrastive term: "
            "one-way at weight 0.1 left R@1 at 0.000 / 0.008 (docs/training.md)", "budget": "the paper ran on 4 GPUs; these on 2 CPU cores",
            "data": DATA_WHY, "depth": DEPTH_WHY,
            "r1": "chance is 1 / 600 = 0.002", "mse": "1.0 = no better than copying the clip's mean visible patch"}


# Why 15,000 training clips and two layers for ten minutes (measured: the retrieval model's two builds' cards;
# bench_learning.py --minutes 10 --threads 1, one run each, docs/training.md).
DATA_WHY = ("on 3,000 clips (4,000 steps) the retrieval model fit its training pairs (in-batch accuracy 0.94) far "
            "better than held-out ones (test R@1 0.45 / 0.47); on 15,000 (5,000 steps) 0.785 / 0.770. Ten minutes on "
            "one core, width 192, 2 + 1 layers: 0.17 / 0.17 on 3,000 clips, 0.22 / 0.22 on 15,000")
DEPTH_WHY = ("ten minutes on one core, 15,000 clips, R@1: width 192, 4 + 1 layers, decoder × 2 fit 498 steps, "
             "0.18 / 0.16; 2 + 1, 618 steps, 0.22 / 0.22 (1 + 1: 0.15 / 0.18); width 128, 2 + 1, decoder × 1, 922 steps, "
             "0.27 / 0.27. An hour of training keeps the larger model")
ROWS = [("mask", "mask ratio (audio / video)"), ("patch", "patch size (px)"), ("depth", "encoder width, layers (per modality + joint)"),
        ("norm_pix", "norm_pix_loss"), ("decoder", "decoder width × depth"), ("contrast", "λc, InfoNCE, τ"),
        ("budget", "batch × budget"), ("data", "training clips"),
        ("r1", "R@1 a→v / v→a, 600 test pairs"), ("mse", "MSE / baseline at 75 % (audio / video)")]


def recipe_table(tradeoff: list[dict[str, Any]] | None = None) -> str:
    """Markdown: the paper | reconstruction model | retrieval model | ten-minute recipe | why, one row per setting.

    tradeoff: rows of ``benchmarks/bench_masking.py``'s ``masking.json`` (mask_ratio, model, a2v_r1, v2a_r1,
    mse_ratio_a, mse_ratio_v, steps); without them the ten-minute column's measurements are left open."""
    tradeoff = tradeoff or []
    cols = [PAPER | {"r1": "—", "mse": "—"}, _card_column(zoo.MASK75), _card_column(zoo.NAME),
            _ten_minute_column(tradeoff), _why(tradeoff)]
    head = ("| | paper (CAV-MAE Base) | reconstruction model `pretrained_tiny(mask_ratio=0.75)` | retrieval model "
            "`pretrained_tiny()` | ten-minute recipe `TrainConfig.preset(\"tiny\")` | why |")
    lines = [head, "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join([label] + [c[key] for c in cols]) + " |" for key, label in ROWS]
    return "\n".join(lines)


__all__ = ["PAPER", "TRADEOFF_JSON", "load_tradeoff", "recipe_table"]
