"""Configuration dataclasses: model sizes and loss settings.

Plain dataclasses with no torch modules, so every layer of the package (data included) can import them.
``base()`` presets are the papers' models, ``tiny()`` CPU-scale ones that learn on the default data in minutes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MASK_MODES = ("unstructured", "time", "freq", "tf")


def _check_divisible(name: str, value: int, divisor_name: str, divisor: int) -> None:
    if value <= 0 or value % divisor:
        raise ValueError(
            f"CAVMAEConfig.{name}={value} must be a positive multiple of {divisor_name}={divisor} "
            f"(e.g. {divisor}, {2 * divisor}, {4 * divisor}, ...)"
        )


# The shipped tiny models' encoder and decoder (zoo.MODELS): the tiny preset's before the ten-minute recipe slimmed it.
SHIPPED_TINY = {"embed_dim": 192, "num_heads": 3, "modality_specific_depth": 4, "decoder_depth": 2}


@dataclass
class CAVMAEConfig:
    """Sizes of a CAV-MAE model and the weights of its two losses.

    Field names follow the official constructor (spec §3.1) where one exists.

    Inputs the model expects:
      audio: (B, T, F) normalised log-mel fbank with T = ``audio_length``, F = ``num_mel_bins``
      video: (B, in_chans, H, W) normalised frames with H = W = ``img_size``
    """

    img_size: int = 224
    audio_length: int = 1024  # fbank frames (10 ms hop) per clip
    num_mel_bins: int = 128
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    modality_specific_depth: int = 11
    joint_depth: int = 1  # official code derives it as 12 - modality_specific_depth
    num_heads: int = 12
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = True  # every official pretraining script passes True (spec §3.1 quirk)
    tr_pos: bool = False  # positional tables trainable? (False in pretraining, True in fine-tuning)
    contrast_temperature: float = 0.05
    contrast_weight: float = 0.01
    mae_weight: float = 1.0
    bidirectional_contrast: bool = False
    # "global": gather contrastive negatives from every rank under torch.distributed (with gradients);
    # "local": only the rank's own batch, as the official DataParallel runs did (spec §5.2).
    contrast_negatives: str = "global"

    def __post_init__(self) -> None:
        p = self.patch_size
        if p <= 0:
            raise ValueError(f"CAVMAEConfig.patch_size must be positive, got {p}")
        _check_divisible("img_size", self.img_size, "patch_size", p)
        _check_divisible("audio_length", self.audio_length, "patch_size", p)
        _check_divisible("num_mel_bins", self.num_mel_bins, "patch_size", p)
        _check_divisible("embed_dim", self.embed_dim, "num_heads", self.num_heads)
        _check_divisible("decoder_embed_dim", self.decoder_embed_dim, "decoder_num_heads", self.decoder_num_heads)
        if self.embed_dim % 4 or self.decoder_embed_dim % 4:
            raise ValueError(
                "CAVMAEConfig.embed_dim and decoder_embed_dim must be multiples of 4 for the 2-D sin-cos "
                f"positional tables, got {self.embed_dim} and {self.decoder_embed_dim}"
            )
        for name in ("modality_specific_depth", "joint_depth", "decoder_depth"):
            if getattr(self, name) < 0:
                raise ValueError(f"CAVMAEConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.in_chans <= 0:
            raise ValueError(f"CAVMAEConfig.in_chans must be positive, got {self.in_chans}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"CAVMAEConfig.mlp_ratio must be positive, got {self.mlp_ratio}")
        if self.contrast_temperature <= 0:
            raise ValueError(f"CAVMAEConfig.contrast_temperature must be > 0, got {self.contrast_temperature}")
        if self.mae_weight < 0 or self.contrast_weight < 0:
            raise ValueError(
                f"CAVMAEConfig loss weights must be >= 0, got mae_weight={self.mae_weight}, "
                f"contrast_weight={self.contrast_weight}"
            )
        if self.contrast_negatives not in ("global", "local"):
            raise ValueError(
                f"CAVMAEConfig.contrast_negatives must be 'global' or 'local', got {self.contrast_negatives!r}"
            )

    # ----- derived sizes -------------------------------------------------------------------------------
    @property
    def audio_grid(self) -> tuple[int, int]:
        """(frequency rows, time columns) of the audio patch grid, e.g. (8, 64) for base."""
        return self.num_mel_bins // self.patch_size, self.audio_length // self.patch_size

    @property
    def video_grid(self) -> tuple[int, int]:
        """(rows, columns) of the frame patch grid, e.g. (14, 14) for base."""
        g = self.img_size // self.patch_size
        return g, g

    @property
    def num_audio_tokens(self) -> int:
        return self.audio_grid[0] * self.audio_grid[1]

    @property
    def num_video_tokens(self) -> int:
        return self.video_grid[0] * self.video_grid[1]

    @property
    def audio_patch_dim(self) -> int:
        return self.patch_size**2

    @property
    def video_patch_dim(self) -> int:
        return self.patch_size**2 * self.in_chans

    # ----- presets and I/O -----------------------------------------------------------------------------
    @classmethod
    def base(cls, **overrides: Any) -> CAVMAEConfig:
        """The paper's CAV-MAE (ViT-B, 11 + 1 layers, decoder 512 x 8), as released."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> CAVMAEConfig:
        """CPU tutorial scale: 96-px frames (6 x 6 patches), 256 fbank frames x 64 mel bins (4 x 16 patches), width
        128, 2 + 1 layers, decoder 128 x 1: the ten-minute recipe's model.

        Departures from the paper's sizes, for a CPU: 2.56-s clips, 64 mel bins (half the audio tokens; the default
        data's 200-1600 Hz pitches stay resolved), 96-px frames, a narrow, shallow encoder and decoder, chosen for
        retrieval after ten CPU-minutes (docs/training.md): 4 + 1 layers of width 192 with a 2-layer decoder fit half
        the steps and retrieve worse. The shipped models, trained for an hour, keep those (``zoo.MODELS``). The patch
        size (16) and every mechanism are the paper's.
        """
        sizes = dict(img_size=96, audio_length=256, num_mel_bins=64, embed_dim=128, modality_specific_depth=2,
                     joint_depth=1, num_heads=2, decoder_embed_dim=128, decoder_depth=1, decoder_num_heads=4)
        sizes.update(overrides)
        return cls(**sizes)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> CAVMAEConfig:
        """``"base"``, ``"tiny"`` or a path to a JSON file written by :meth:`save`."""
        if name in ("base", "tiny"):
            return getattr(cls, name)(**overrides)
        path = Path(name)
        if path.is_file():
            return cls.load(path, **overrides)
        raise ValueError(f"unknown config {name!r}: expected 'base', 'tiny' or the path of a JSON config file")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> CAVMAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = dict(d.get("model", d))  # accept a run config that nests the model under "model"
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown CAVMAEConfig fields {unknown}; allowed: {sorted(known)}")
        d.update(overrides)
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> CAVMAEConfig:
        return cls.from_dict(json.loads(Path(path).read_text()), **overrides)

    def replace(self, **changes: Any) -> CAVMAEConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class CAVMAESyncConfig(CAVMAEConfig):
    """CAV-MAE Sync (Araujo et al., CVPR 2025): CAV-MAE's sizes plus the fields of its fine-grained pairing.

    ``audio_length`` is the segment length L (fbank frames) one video frame is paired with, cut from a clip of
    ``clip_length`` S frames around the frame's moment; ``num_frames`` T (frame, segment) pairs per clip. The
    defaults are the released model: L 416 of S 1024, T 16, a global token per modality, 8 register tokens per
    modality dropped after the modality-specific blocks, no contrastive heads, norm_pix_loss.
    """

    audio_length: int = 416
    clip_length: int = 1024
    num_frames: int = 16
    global_tokens: bool = True
    num_register_tokens: int = 8
    keep_register_tokens: bool = False
    contrastive_heads: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.audio_length <= self.clip_length:
            raise ValueError(f"CAVMAESyncConfig: the segment length audio_length={self.audio_length} must be in "
                             f"(0, clip_length={self.clip_length}]")
        if self.num_frames < 1 or self.num_register_tokens < 0:
            raise ValueError(f"CAVMAESyncConfig: need num_frames >= 1 and num_register_tokens >= 0, got "
                             f"{self.num_frames} and {self.num_register_tokens}")

    @classmethod
    def tiny(cls, **overrides: Any) -> CAVMAESyncConfig:
        """CAVMAEConfig.tiny()'s sizes with the shipped models' encoder (``SHIPPED_TINY``), 64-frame (0.64 s) segments of
        the 256-frame clip, 16 pairs per clip, global tokens and 2 register tokens per modality."""
        sizes = dict(audio_length=64, clip_length=256, num_frames=16, num_register_tokens=2, **SHIPPED_TINY)
        return super().tiny(**{**sizes, **overrides})


def config_from_dict(d: dict[str, Any], **overrides: Any) -> CAVMAEConfig:
    """A model config from its dict (or a run config nesting it under "model"): a :class:`CAVMAESyncConfig` when it
    holds Sync's fields (``clip_length``), else a :class:`CAVMAEConfig`."""
    fields = d.get("model", d)
    cls = CAVMAESyncConfig if "clip_length" in fields else CAVMAEConfig
    return cls.from_dict(fields, **overrides)


__all__ = ["MASK_MODES", "CAVMAEConfig", "CAVMAESyncConfig", "config_from_dict"]


# ---------------------------------------------------------------------------------------------------------
# Training configuration (pretraining loop, cavmae_lite.train)
# ---------------------------------------------------------------------------------------------------------

SCHEDULES = ("cosine", "official", "constant")
AMP_MODES = ("auto", "bf16", "fp16", "none")


@dataclass
class TrainConfig:
    """Everything the pretraining loop needs besides the model sizes.

    ``batch_size`` is per process and per micro-step; the optimiser sees
    ``batch_size * grad_accum * world_size`` clips per step. ``schedule``:
      * ``cosine``   linear warm-up for ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr``;
      * ``official`` the released recipe (spec §5.2): no warm-up, lr halved after epoch ``decay_start`` and
        every ``decay_every`` epochs thereafter (use with ``optimizer="adam"``, ``weight_decay=5e-7``);
      * ``constant`` warm-up, then flat.
    ``mae_weight`` / ``contrast_weight`` / ``contrast_temperature`` / ``contrast_negatives`` /
    ``bidirectional_contrast`` override the model config when not None. ``contrast_groups`` G computes the
    InfoNCE (and c_acc) within G consecutive chunks of each process's batch and averages them, as the official
    4-GPU runs did (``batch_size`` must divide by G).
    ``init``: weights to start a new run from (ours, official or ImageNet MAE; ``checkpoints.init_from``).
    ``keep_epochs``: also write ``epoch_<E>.pt`` every epoch. ``eval_retrieval``: validation reports R@1 too.
    Stopping: whichever of ``max_steps``, ``epochs`` and ``max_minutes`` comes first (at least one is needed).
    """

    batch_size: int = 48
    lr: float = 5e-4
    min_lr_ratio: float = 0.01
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    optimizer: str = "adamw"  # "adamw" (decay on matrices only) or "adam" (official: L2 on everything)
    schedule: str = "cosine"
    warmup_steps: int = 100
    warmup_fraction: float | None = None  # warm-up over this share of a step-bounded run instead (Sync's recipe)
    decay_start: int = 10  # official schedule, epochs
    decay_every: int = 5
    max_steps: int | None = None
    epochs: int | None = None
    max_minutes: float | None = None
    grad_accum: int = 1
    clip_grad: float | None = 1.0
    amp: str = "auto"  # auto: bf16 on a CUDA device that supports it, none on CPU
    compile: bool = False
    mask_ratio_a: float = 0.75
    mask_ratio_v: float = 0.75
    mask_mode: str = "unstructured"
    mae_weight: float | None = None
    contrast_weight: float | None = None
    contrast_temperature: float | None = None
    contrast_negatives: str | None = None
    bidirectional_contrast: bool | None = None
    contrast_groups: int = 1
    pairs_per_clip: int = 1  # CAV-MAE Sync: (frame, segment) pairs drawn per clip, batch_size * this per step
    init: str | None = None
    keep_epochs: bool = False
    eval_retrieval: bool = True
    checkpoint_every: int = 500
    log_every: int = 10
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    # CPU intra-op threads: 0 = every core (fixed, so runs are reproducible); -1 = the idle cores from the load
    # average (much faster on a busy shared machine, but results then depend on the thread count picked)
    threads: int = 0
    deterministic: bool = False
    max_bad_steps: int = 20  # fp16: consecutive non-finite losses tolerated before giving up

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # JSON gives lists
        if min(self.batch_size, self.grad_accum, self.pairs_per_clip) <= 0:
            raise ValueError(f"TrainConfig.batch_size, grad_accum and pairs_per_clip must be positive, got "
                             f"{self.batch_size}, {self.grad_accum}, {self.pairs_per_clip}")
        if self.lr <= 0:
            raise ValueError(f"TrainConfig.lr must be > 0, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.amp not in AMP_MODES:
            raise ValueError(f"TrainConfig.amp must be one of {AMP_MODES}, got {self.amp!r}")
        if self.optimizer not in ("adamw", "adam"):
            raise ValueError(f"TrainConfig.optimizer must be 'adamw' or 'adam', got {self.optimizer!r}")
        if self.mask_mode not in MASK_MODES:
            raise ValueError(f"TrainConfig.mask_mode must be one of {MASK_MODES}, got {self.mask_mode!r}")
        for name in ("mask_ratio_a", "mask_ratio_v"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.contrast_temperature is not None and not self.contrast_temperature > 0:
            raise ValueError(f"TrainConfig.contrast_temperature must be > 0, got {self.contrast_temperature}")
        if self.contrast_negatives not in (None, "global", "local"):
            raise ValueError(f"TrainConfig.contrast_negatives must be 'global' or 'local', got "
                             f"{self.contrast_negatives!r}")
        g = self.contrast_groups
        if g < 1 or self.batch_size % g or self.batch_size // g < 2:
            raise ValueError(f"TrainConfig.contrast_groups={g} must divide batch_size={self.batch_size} into InfoNCE "
                             f"groups of at least 2 clips (e.g. batch 48 with 4 groups of 12)")
        if self.warmup_fraction is not None and not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"TrainConfig.warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.warmup_steps < 0 or self.checkpoint_every <= 0 or self.log_every <= 0:
            raise ValueError("TrainConfig.warmup_steps must be >= 0, checkpoint_every and log_every > 0")
        for name in ("max_steps", "epochs", "max_minutes"):  # budgets: None (no limit) or positive
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0 (or None for no limit), got {value}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TrainConfig:
        """Training defaults that go with a model preset.

        ``tiny`` (the ten-minute CPU recipe, measured with ``benchmarks/bench_learning.py``; docs/training.md has
        the numbers behind each choice): contrast weight 1.0 (paper 0.01: a short run needs a louder contrastive
        term), the two-way InfoNCE (trains both retrieval directions), mask ratio 0.15 (paper 0.75: at
        this scale retrieval learns faster with more tokens visible, notebook 06), temperature 0.1 (paper 0.05), batch
        128 (more hard negatives), ``amp="auto"`` (bf16 where the CPU has it). The shipped models of
        :mod:`cavmae_lite.zoo` pin their own settings (``zoo.MODELS``).

        ``base``: the released CAV-MAE Base recipe (Adam, lr 5e-5, official schedule, 25 epochs, 75 % masking)
        with the released runs' contrastive batch: 48 clips in ``contrast_groups=4`` InfoNCE groups of 12 with
        ``contrast_negatives="local"``, i.e. what 4 GPUs under ``DataParallel`` with 12 clips each computed
        (11 negatives per clip), on one device; the four group losses are averaged where the official code summed
        them (a constant factor 4 that Adam all but ignores). Under DDP each process keeps its own
        4 groups of 12 (pass ``contrast_groups=1`` and ``batch_size=12`` per process on 4 GPUs for the same total
        batch). Precision stays ``auto``; pass ``amp="fp16"`` for the released runs' fp16 autocast + GradScaler.
        Start from ``init=`` an ImageNet MAE ViT-B checkpoint as they did. ``official``: same as base.

        ``sync-base``: CAV-MAE Sync as in the authors' development scripts (not the paper, which states none):
        Adam, lr 2e-4, betas (0.95, 0.999), weight decay 5e-7, warm-up over 10 % of the steps then cosine to
        0.1 x lr, 512 clips in 4 InfoNCE groups of 128 with local negatives (4 GPUs under DataParallel), 25
        epochs, contrast weight 0.1, 75 % masking. ``sync-tiny``: the tiny recipe for CAV-MAE Sync models, so the
        two compare at equal settings.
        """
        if name == "tiny":
            d: dict[str, Any] = dict(batch_size=128, lr=1e-3, warmup_steps=50, contrast_weight=1.0,
                                    contrast_temperature=0.1, bidirectional_contrast=True, mask_ratio_a=0.15,
                                    mask_ratio_v=0.15)
        elif name in ("base", "official"):
            d = dict(batch_size=48, lr=5e-5, optimizer="adam", weight_decay=5e-7, betas=(0.95, 0.999),
                     schedule="official", warmup_steps=0, clip_grad=None, epochs=25, contrast_groups=4,
                     contrast_negatives="local")
        elif name == "sync-base":
            d = dict(batch_size=512, lr=2e-4, optimizer="adam", weight_decay=5e-7, betas=(0.95, 0.999),
                     warmup_fraction=0.1, min_lr_ratio=0.1, clip_grad=None, epochs=25, contrast_groups=4,
                     contrast_negatives="local", contrast_weight=0.1)
        elif name == "sync-tiny":
            return cls.preset("tiny", **overrides)
        else:
            d = {}
        d.update(overrides)
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        d = dict(d.get("train", d))
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; allowed: {sorted(known)}")
        d.update(overrides)
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


__all__ += ["AMP_MODES", "SCHEDULES", "TrainConfig"]
