"""Fine-tuning training data: the augmenting dataset wrapper (mixup, SpecAugment, noise, soft targets) and
the balanced sampler (spec §5.3).

:class:`FinetuneTrainSet` wraps any dataset of ``{"audio" (T, F), "video" (3, H, W), "labels" (C,) or
"label"}`` items and adds ``target`` (C,), the soft label vector the loss is computed on, plus ``mix_index``
and ``mix_lambda``. The order of operations is the official loader's: mixup -> SpecAugment -> (normalised)
noise + time roll. When the wrapped dataset adds the noise itself (an :class:`~cavmae_lite.data.AVDataset`
with ``noise=True``) and masks or mixup are on, the wrapper reads a copy of it with the noise off and adds the
noise after masking, so the order stays right.

Randomness is drawn afresh for every draw of a clip, as the official loader does: one ``torch.Generator`` per
item, seeded from the run seed and the *draw*. :func:`train_loader` samples through a :class:`DrawSampler`, which
hands the dataset ``(index, draw number)`` keys (the draw number counts every clip drawn in the run), so a clip
that the balanced sampler draws twice in an epoch gets two partners, two lambdas, two masks, noises and
rolls; the same seed gives the same draws, with or without worker processes. (What the wrapped dataset draws
itself, e.g. an AVDataset's random training frame, comes from torch's global generator, which differs per
worker.) A plain index ``ds[i]`` is keyed by (seed, epoch, i) (:meth:`FinetuneTrainSet.set_epoch`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, Subset, WeightedRandomSampler

from ..data.audio import AUDIOSET_MEAN, AUDIOSET_STD, add_noise_and_roll, audio_to_input, load_audio
from ..data.datasets import AVDataset
from .augment import (
    masked_value,
    mix_frames,
    mix_logmel_power,
    mix_waveforms,
    mixup_targets,
    sample_beta,
    smooth_targets,
    spec_augment,
)

MIXUP_AUDIO = ("auto", "wave", "power")


def item_multi_hot(item: dict, num_classes: int) -> Tensor:
    """The (C,) multi-hot labels of an item: its ``labels``, else a one-hot of ``label`` (zeros if -1)."""
    if "labels" in item:
        y = torch.as_tensor(item["labels"]).float()
        if y.shape != (num_classes,):
            raise ValueError(f"item 'labels' has shape {tuple(y.shape)}, expected ({num_classes},)")
        return y
    y = torch.zeros(num_classes)
    lab = int(item["label"])
    if lab >= num_classes:
        raise ValueError(f"label {lab} out of range for {num_classes} classes")
    if lab >= 0:
        y[lab] = 1.0
    return y


class FinetuneTrainSet(Dataset):
    """Training items with the recipe's augmentations and soft ``target`` labels (module docstring).

    mixup_audio: ``"wave"`` mixes waveforms read from the wav files (the official way; needs an AVDataset),
    ``"power"`` mixes the fbanks in the energy domain (:func:`~cavmae_lite.augment.mix_logmel_power`, with a
    warning), ``"auto"`` = wave when the AVDataset reads raw files, else power.
    """

    def __init__(self, base: Dataset, num_classes: int, freqm: int = 0, timem: int = 0, mixup: float = 0.0,
                 mixup_alpha: float = 10.0, label_smoothing: float = 0.0, mixup_audio: str = "auto", seed: int = 0):
        if mixup_audio not in MIXUP_AUDIO:
            raise ValueError(f"mixup_audio must be one of {MIXUP_AUDIO}, got {mixup_audio!r}")
        if not 0 <= mixup <= 1:
            raise ValueError(f"mixup is a probability in [0, 1], got {mixup}")
        if len(base) == 0:
            raise ValueError("the training set is empty")
        self.num_classes, self.freqm, self.timem = int(num_classes), int(freqm), int(timem)
        self.mixup, self.mixup_alpha, self.label_smoothing = float(mixup), float(mixup_alpha), float(label_smoothing)
        self.seed, self.epoch = int(seed), 0
        self.mean = float(getattr(base, "mean", AUDIOSET_MEAN))
        self.std = float(getattr(base, "std", AUDIOSET_STD))
        augments = self.mixup > 0 or self.freqm > 0 or self.timem > 0
        self.noise = bool(getattr(base, "noise", False)) and augments
        if self.noise:  # read a noise-free copy; the noise is added after masking, as the official loader does
            base = copy.copy(base)
            base.noise = False
        self.base = base
        if mixup_audio == "auto":
            mixup_audio = "wave" if isinstance(base, AVDataset) and base.source == "raw" else "power"
        if mixup_audio == "wave" and not isinstance(base, AVDataset):
            raise ValueError("mixup_audio='wave' reads wav files: it needs an AVDataset (from load_dataset)")
        self.mixup_audio = mixup_audio
        if self.mixup > 0 and mixup_audio == "power":
            warnings.warn("mixup on fbanks (no waveforms here): mixing mel energies, log(l^2 e^x1 + (1-l)^2 e^x2), "
                          "an approximation of the official waveform mixup; mixup_audio='wave' reads the wavs",
                          stacklevel=2)

    def __len__(self) -> int:
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _generator(self, index: int, draw: int | None) -> torch.Generator:
        """Seeded from (seed, draw number), or from (seed, epoch, index) for a plain index."""
        entropy = [self.seed, 1, draw] if draw is not None else [self.seed, 0, self.epoch, index]
        key = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1
        return torch.Generator().manual_seed(key)

    def _mixed_audio(self, i: int, j: int, a1: Tensor, a2: Tensor, lam: float) -> Tensor:
        if self.mixup_audio == "wave":
            b = self.base
            paths = [b.manifest.wav_path(b.manifest.entries[b.rows[k]]) for k in (i, j)]
            w = mix_waveforms(load_audio(paths[0]), load_audio(paths[1]), lam)
            return audio_to_input(w, a1.shape[0], a1.shape[1], self.mean, self.std)
        pad = masked_value(self.mean, self.std)  # a zero-padded raw row, in normalised units
        raw1, raw2 = a1.double() * self.std + self.mean, a2.double() * self.std + self.mean
        pad1, pad2 = (((a - pad).abs() < 2e-3).all(-1) for a in (a1, a2))
        mixed = mix_logmel_power(raw1, raw2, lam, pad1, pad2)
        return ((mixed - self.mean) / self.std).to(a1.dtype)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Item ``index`` augmented for ``key = index`` or ``key = (index, draw number)`` (module docstring)."""
        index, draw = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index %= len(self)
        g = self._generator(index, draw)
        item = dict(self.base[index])
        y = item_multi_hot(item, self.num_classes)
        audio, video, j, lam = item["audio"], item["video"], index, 1.0
        if self.mixup > 0 and float(torch.rand((), generator=g)) < self.mixup:
            j = int(torch.randint(0, len(self), (), generator=g))
            lam = sample_beta(self.mixup_alpha, self.mixup_alpha, g)
            other = self.base[j]
            audio = self._mixed_audio(index, j, audio, other["audio"], lam)
            video = mix_frames(video, other["video"], lam)
            target = mixup_targets(y, item_multi_hot(other, self.num_classes), lam, self.label_smoothing)
        else:
            target = smooth_targets(y, self.label_smoothing)
        if self.freqm or self.timem:
            audio = spec_augment(audio, self.freqm, self.timem, masked_value(self.mean, self.std), g)
        if self.noise:
            audio = add_noise_and_roll(audio, g)
        item.update(audio=audio, video=video, target=target, mix_index=j, mix_lambda=lam)
        return item


# ----- balanced sampling -------------------------------------------------------------------------------------


def label_lists(dataset: Dataset, num_classes: int | None = None) -> list[list[int]]:
    """The class indices of every item (an AVDataset / Subset / FinetuneTrainSet is read without decoding)."""
    if isinstance(dataset, FinetuneTrainSet):
        return label_lists(dataset.base, dataset.num_classes)
    if isinstance(dataset, Subset):
        inner = label_lists(dataset.dataset, num_classes)
        return [inner[i] for i in dataset.indices]
    if hasattr(dataset, "label_indices"):
        return [list(dataset.label_indices(i)) for i in range(len(dataset))]
    c = num_classes or getattr(dataset, "num_classes", None)
    if not c:
        raise ValueError("label_lists needs num_classes for a dataset without .num_classes")
    return [torch.nonzero(item_multi_hot(dataset[i], c)).flatten().tolist() for i in range(len(dataset))]


def balanced_weights(labels: list[list[int]], num_classes: int) -> Tensor:
    """(N,) float64 sample weights of src/gen_weight_file.py: ``sum over the clip's labels of
    1000 / (count_c + 0.01)``, count_c = the clips carrying class c. A clip without labels weighs 0."""
    counts = torch.zeros(num_classes, dtype=torch.float64)
    for ls in labels:
        for c in ls:
            if not 0 <= c < num_classes:
                raise ValueError(f"label {c} out of range for {num_classes} classes")
            counts[c] += 1
    per_class = 1000.0 / (counts + 0.01)
    w = torch.tensor([float(per_class[ls].sum()) if ls else 0.0 for ls in labels], dtype=torch.float64)
    if not (w > 0).any():
        raise ValueError("balanced sampling needs labelled clips; none has a label")
    return w


def balanced_sampler(weights: Tensor, generator: torch.Generator) -> WeightedRandomSampler:
    """With replacement, one epoch = as many draws as clips (the official ``WeightedRandomSampler``)."""
    return WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=generator)


class DrawSampler(Sampler):
    """Yields ``(index, draw number)`` for every index of ``sampler``: the draw number counts the draws of the
    run (it goes on across epochs), so that :class:`FinetuneTrainSet` seeds each draw's augmentation anew. It
    runs in the main process, so worker processes see the same keys."""

    def __init__(self, sampler: Sampler):
        self.sampler = sampler
        self.draws = 0

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.sampler:
            draw, self.draws = self.draws, self.draws + 1
            yield int(index), draw


def train_loader(train: Dataset, batch_size: int, balanced: bool, seed: int, num_classes: int,
                 num_workers: int = 0) -> DataLoader:
    """Shuffled (or balanced) batches; the last incomplete batch is dropped when there is more than one. A
    :class:`FinetuneTrainSet` is sampled through a :class:`DrawSampler` (per-draw augmentation)."""
    g = torch.Generator().manual_seed(seed)
    drop = len(train) > batch_size
    if balanced:
        sampler = balanced_sampler(balanced_weights(label_lists(train, num_classes), num_classes), g)
    else:
        sampler = RandomSampler(train, generator=g)
    if isinstance(train, FinetuneTrainSet):
        sampler = DrawSampler(sampler)
    # the loader's own draws (its workers' base seed) come from g too, not from torch's global generator
    return DataLoader(train, batch_size=batch_size, sampler=sampler, drop_last=drop, num_workers=num_workers,
                      generator=g)


__all__ = ["DrawSampler", "FinetuneTrainSet", "balanced_sampler", "balanced_weights", "item_multi_hot", "label_lists",
           "train_loader"]
