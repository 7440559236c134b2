"""The fine-tuning recipes (spec §5.3): the official AS-20K / AS-2M / VGGSound settings, and a small CPU one.

Each official value below was read from the official repository (``YuanGongND/cav-mae``); the comment beside
it names the script. Values shared by the three recipes come from the training code rather than the shell
scripts: ``src/traintest_ft.py`` (optimiser, per-epoch schedule, loss choice), ``src/dataloader.py``
(SpecAugment, mixup, label smoothing, noise), ``src/gen_weight_file.py`` (balanced-sampler weights) and
``src/run_cavmae_ft.py`` (weight averaging, frame-averaged evaluation).

    recipe = get_recipe("as20k", epochs=1)          # any field can be overridden
    recipe.resolved_metric(multilabel=False)        # "mAP": the metric the result reports

The schedules themselves are :func:`~cavmae_lite.train.step_lr_factor` and
:func:`~cavmae_lite.train.cosine_lr_factor`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

SCHEDULES = ("step", "cosine")
LOSSES = ("auto", "bce", "ce")
METRICS = ("auto", "mAP", "accuracy")


@dataclass(frozen=True)
class FinetuneRecipe:
    """Every setting of one fine-tuning run except the data, the model and the mode.

    lr: base (backbone) learning rate; the head (``head.*``, the official ``mlp_head``) gets ``lr * head_lr_mult``.
    schedule: ``"step"`` = the official per-epoch MultiStepLR (multiply by ``lr_decay`` at the end of epoch
      ``lr_start``, ``lr_start + lr_step``, ...; :func:`~cavmae_lite.train.step_lr_factor`); ``"cosine"`` = a
      per-step cosine from ``lr`` to 0 over the run (this package's small-run default).
    freqm, timem: SpecAugment mask widths (one frequency mask of width ``floor(U * freqm)``, one time mask of
      width ``floor(U * timem)``, on the log-mel before normalisation, training only).
    mixup: probability that a training clip is mixed with a random partner; lambda ~ Beta(mixup_alpha, mixup_alpha).
    label_smoothing: targets are ``1 - label_smoothing`` for positives and ``label_smoothing / C`` elsewhere.
    loss: ``"bce"`` (multi-label, sigmoid), ``"ce"`` (softmax cross-entropy on the soft targets), or ``"auto"``
      (bce when fine-tuning multi-label, else ce).
    balanced: draw training clips with replacement, weight ``sum_c 1000 / (count_c + 0.01)`` over the clip's labels.
    wa_start, wa_end: average the weights of the models at the end of epochs ``wa_start..wa_end`` (1-based,
      inclusive); None = no weight averaging.
    frame_average: evaluate with the per-frame probabilities averaged over every frame of a clip.
    freeze_base: train the head only (the official linear probe, ``--freeze_base True``).
    metric: the main metric (``"mAP"`` or ``"accuracy"``; ``"auto"`` = mAP with bce, accuracy with ce): the one
      ``FinetuneResult.score`` gives. Both are always reported.
    """

    name: str = "custom"
    lr: float = 1e-4
    head_lr_mult: float = 10.0
    epochs: int = 5
    batch_size: int = 32
    schedule: str = "cosine"
    lr_start: int = 2
    lr_step: int = 1
    lr_decay: float = 0.5
    weight_decay: float = 5e-7
    betas: tuple[float, float] = (0.95, 0.999)
    freqm: int = 0
    timem: int = 0
    mixup: float = 0.0
    mixup_alpha: float = 10.0
    label_smoothing: float = 0.0
    loss: str = "auto"
    balanced: bool = False
    wa_start: int | None = None
    wa_end: int | None = None
    frame_average: bool = True
    freeze_base: bool = False
    metric: str = "auto"

    def __post_init__(self) -> None:
        problems = []
        if self.lr <= 0 or self.head_lr_mult <= 0:
            problems.append(f"lr and head_lr_mult must be positive (got {self.lr}, {self.head_lr_mult})")
        if self.epochs < 1 or self.batch_size < 1:
            problems.append(f"epochs and batch_size must be >= 1 (got {self.epochs}, {self.batch_size})")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {SCHEDULES} (got {self.schedule!r})")
        if self.lr_step < 1 or self.lr_start < 0 or not 0 < self.lr_decay <= 1:
            problems.append(f"need lr_start >= 0, lr_step >= 1, 0 < lr_decay <= 1 (got {self.lr_start}, "
                            f"{self.lr_step}, {self.lr_decay})")
        if self.freqm < 0 or self.timem < 0:
            problems.append(f"freqm and timem must be >= 0 (got {self.freqm}, {self.timem})")
        if not 0 <= self.mixup <= 1 or self.mixup_alpha <= 0:
            problems.append(f"need 0 <= mixup <= 1 and mixup_alpha > 0 (got {self.mixup}, {self.mixup_alpha})")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1) (got {self.label_smoothing})")
        if self.loss not in LOSSES or self.metric not in METRICS:
            problems.append(f"loss must be one of {LOSSES}, metric one of {METRICS} (got {self.loss!r}, "
                            f"{self.metric!r})")
        if (self.wa_start is None) != (self.wa_end is None):
            problems.append(f"give both wa_start and wa_end, or neither (got {self.wa_start}, {self.wa_end})")
        elif self.wa_start is not None and not 1 <= self.wa_start <= self.wa_end:
            problems.append(f"need 1 <= wa_start <= wa_end (got {self.wa_start}, {self.wa_end})")
        if problems:
            raise ValueError("invalid fine-tuning recipe: " + "; ".join(problems))

    def replace(self, **overrides: Any) -> FinetuneRecipe:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown recipe fields {unknown}; known: {sorted(known)}")
        return replace(self, **overrides)

    def resolved_loss(self, multilabel: bool) -> str:
        return self.loss if self.loss != "auto" else ("bce" if multilabel else "ce")

    def resolved_metric(self, multilabel: bool) -> str:
        if self.metric != "auto":
            return self.metric
        return "mAP" if self.resolved_loss(multilabel) == "bce" else "accuracy"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


# Common to the three official recipes: src/traintest_ft.py (Adam, weight decay 5e-7, betas (0.95, 0.999),
# MultiStepLR stepped once per epoch) and src/dataloader.py (Beta(10, 10) mixup lambda). Noise + time roll
# (noise=True in every egs/*/run_cavmae_ft*.sh) is a dataset setting here: load_dataset(train=True).
_OFFICIAL = dict(schedule="step", weight_decay=5e-7, betas=(0.95, 0.999), mixup_alpha=10.0, frame_average=True)

RECIPES: dict[str, FinetuneRecipe] = {
    # egs/audioset/run_cavmae_ft_bal.sh (AS-20K, "bal=None": uniform sampling, BCE, mAP)
    "as20k": FinetuneRecipe(name="as20k", lr=5e-5, head_lr_mult=100.0, epochs=15, batch_size=36, lr_start=5,
                            lr_step=1, lr_decay=0.5, freqm=48, timem=192, mixup=0.5, label_smoothing=0.1,
                            loss="bce", balanced=False, wa_start=3, wa_end=15, metric="mAP", **_OFFICIAL),
    # egs/audioset/run_cavmae_ft_full.sh (AS-2M, "bal=bal": balanced sampler, BCE, mAP)
    "as2m": FinetuneRecipe(name="as2m", lr=1e-5, head_lr_mult=50.0, epochs=10, batch_size=48, lr_start=2,
                           lr_step=1, lr_decay=0.5, freqm=48, timem=192, mixup=0.5, label_smoothing=0.1,
                           loss="bce", balanced=True, wa_start=1, wa_end=10, metric="mAP", **_OFFICIAL),
    # egs/vggsound/run_cavmae_ft.sh (VGGSound, "bal=bal", "--loss CE --metrics acc")
    "vggsound": FinetuneRecipe(name="vggsound", lr=1e-4, head_lr_mult=10.0, epochs=10, batch_size=48,
                               lr_start=2, lr_step=1, lr_decay=0.5, freqm=48, timem=192, mixup=0.5,
                               label_smoothing=0.1, loss="ce", balanced=True, wa_start=3, wa_end=10,
                               metric="accuracy", **_OFFICIAL),
    # this package's small-CPU-run default (notebook 07): Adam, head x10, per-step cosine, no SpecAugment,
    # no mixup, no smoothing, no weight averaging
    "custom": FinetuneRecipe(),
}


def get_recipe(name: str | FinetuneRecipe = "custom", **overrides: Any) -> FinetuneRecipe:
    """A recipe by name (``as20k``, ``as2m``, ``vggsound``, ``custom``) or as given, with fields overridden
    (``None`` values are ignored, so CLI flags left unset keep the recipe's value)."""
    if isinstance(name, FinetuneRecipe):
        base = name
    elif name in RECIPES:
        base = RECIPES[name]
    else:
        raise ValueError(f"unknown recipe {name!r}; choose from {list(RECIPES)}")
    return base.replace(**{k: v for k, v in overrides.items() if v is not None})


__all__ = ["LOSSES", "METRICS", "RECIPES", "SCHEDULES", "FinetuneRecipe", "get_recipe"]
