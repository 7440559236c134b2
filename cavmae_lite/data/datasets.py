"""Datasets over prepared data (raw files or the memory-mapped cache), and dataset fbank statistics.

Every dataset on disk — ``make-data`` output, ``prepare`` output, or data prepared for the official code — is
a manifest plus wavs plus ``frame_<i>/<video_id>.jpg`` files (see :mod:`.manifest`); :func:`load_dataset`
reads any of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import AUDIOSET_MEAN, AUDIOSET_STD, add_noise_and_roll, load_audio, load_fbank, wav_to_fbank
from .cache import CacheArrays, open_cache
from .manifest import SPLITS, Manifest, read_manifest, split_labels
from .video import load_image, normalize_frame, resize_center_crop

STATS_NAME = "stats.json"


class AVDataset(Dataset):
    """Audio-visual clips of a manifest; items are dicts (see :func:`load_dataset`)."""

    def __init__(
        self,
        manifest: Manifest,
        config,
        rows: list[int],
        train: bool = False,
        frames: bool = False,
        noise: bool | None = None,
        mean: float = AUDIOSET_MEAN,
        std: float = AUDIOSET_STD,
        cache: CacheArrays | None = None,
        seed: int = 0,
    ):
        self.manifest = manifest
        self.config = config
        self.rows = rows
        self.train = train
        self.return_frames = frames
        self.noise = train if noise is None else noise
        self.mean, self.std = float(mean), float(std)
        self.cache = cache
        self.seed = int(seed)
        self.class_names = list(manifest.class_names)
        self.mids = list(manifest.mids)
        self._mid_index = {m: i for i, m in enumerate(self.mids)}
        self.video_ids = [manifest.entries[r]["video_id"] for r in rows]

    # ----- sizes and labels ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.rows)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def source(self) -> str:
        return "cache" if self.cache is not None else "raw"

    def label_indices(self, index: int) -> list[int]:
        entry = self.manifest.entries[self.rows[index]]
        return [self._mid_index[m] for m in split_labels(entry.get("labels", "")) if m in self._mid_index]

    @property
    def labels(self) -> np.ndarray:
        """First class index of every item (``-1`` when unlabelled), as an int64 array."""
        return np.array([(ls[0] if ls else -1) for ls in map(self.label_indices, range(len(self)))], np.int64)

    def num_frames(self, index: int) -> int:
        if self.cache is not None:
            return int(self.cache.num_frames[self.rows[index]])
        return self.manifest.num_frames(self.manifest.entries[self.rows[index]])

    # ----- items -----------------------------------------------------------------------------------------
    def _generator(self) -> torch.Generator:
        # drawn from torch's global RNG: reproducible under torch.manual_seed, distinct per DataLoader worker
        g = torch.Generator()
        g.manual_seed(int(torch.randint(0, 2**62, (1,))) ^ self.seed)
        return g

    def _audio(self, row: int) -> torch.Tensor:
        c = self.config
        if self.cache is not None:
            a = torch.from_numpy(np.asarray(self.cache.audio[row], dtype=np.float32))
            if (self.cache.mean, self.cache.std) != (self.mean, self.std):
                a = (a * self.cache.std + self.cache.mean - self.mean) / self.std
            return a
        return load_fbank(self.manifest.wav_path(self.manifest.entries[row]), c.audio_length, c.num_mel_bins,
                          self.mean, self.std)

    def _frame_uint8(self, row: int, i: int) -> np.ndarray:
        if self.cache is not None:
            return np.asarray(self.cache.frames[row, i])
        entry = self.manifest.entries[row]
        j = i
        while j >= 0 and not self.manifest.frame_path(entry, j).is_file():
            j -= 1  # the official loader's fallback: walk down to the nearest existing frame
        if j < 0:
            raise FileNotFoundError(f"{self.manifest.frame_path(entry, i)}: frame image missing")
        return resize_center_crop(load_image(self.manifest.frame_path(entry, j)), self.config.img_size)

    def clip_fbank(self, index: int) -> torch.Tensor:
        """(T, F) normalised fbank of clip ``index`` (T = ``config.audio_length``), without augmentation."""
        return self._audio(self.rows[index])

    def frame_uint8(self, index: int, i: int) -> np.ndarray:
        """(S, S, 3) uint8 stored frame ``i`` of clip ``index``, resized and centre-cropped."""
        return self._frame_uint8(self.rows[index], i)

    def item_generator(self) -> torch.Generator:
        """A generator for one item's random choices (seeded from torch's global RNG and ``seed``)."""
        return self._generator()

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index = index % len(self)
        row = self.rows[index]
        k = self.num_frames(index)
        g = self._generator() if self.train else None
        audio = self._audio(row)
        if self.noise:
            audio = add_noise_and_roll(audio, g or self._generator())
        fi = int(torch.randint(0, k, (1,), generator=g)) if self.train else k // 2
        item = {"audio": audio, "video": normalize_frame(self._frame_uint8(row, fi))}
        if self.return_frames:
            item["frames"] = normalize_frame(np.stack([self._frame_uint8(row, i) for i in range(k)]))
        ls = self.label_indices(index)
        multi = torch.zeros(self.num_classes)
        multi[ls] = 1.0
        item.update(label=ls[0] if ls else -1, labels=multi, video_id=self.video_ids[index], index=index)
        return item

    def __repr__(self) -> str:
        return (f"AVDataset({self.manifest.path}, {len(self)} clips, {self.num_classes} classes, "
                f"audio {self.config.audio_length}x{self.config.num_mel_bins}, {self.config.img_size} px, "
                f"{'train' if self.train else 'eval'}, from {self.source})")


def _stats(manifest: Manifest, norm) -> tuple[float, float]:
    if norm is None or norm == "audioset":
        return AUDIOSET_MEAN, AUDIOSET_STD
    if norm == "dataset":
        p = manifest.root / STATS_NAME
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found: run `cavmae-lite stats {manifest.root}` first")
        d = json.loads(p.read_text())
        return float(d["mean"]), float(d["std"])
    mean, std = norm
    return float(mean), float(std)


def load_dataset(
    data_dir: str | Path,
    config=None,
    split: str | None = None,
    train: bool = False,
    frames: bool = False,
    cache: bool | str = "auto",
    seed: int = 0,
    noise: bool | None = None,
    norm="audioset",
    label_csv: str | Path | None = None,
) -> AVDataset:
    """A ``torch.utils.data.Dataset`` over a prepared dataset folder (or an official datafile JSON).

    Items: ``audio`` (T, F) float32 normalised fbank; ``video`` (3, S, S) float32 normalised frame (middle
    frame ``K // 2`` when ``train=False``, a random one per access when ``train=True``); ``frames``
    (K, 3, S, S) when ``frames=True``; ``label`` (first class index, -1 if none); ``labels`` multi-hot (C,);
    ``video_id``; ``index``. Sizes from ``config`` (default ``CAVMAEConfig.base()``).

    split: "train" / "val" / "test" selects entries by their ``split`` key; None = every entry.
    noise: the spec's noise + time-roll augmentation (default: on iff ``train``).
    cache: "auto" reads the memory-mapped cache for these sizes when it exists and is current; True requires
      it; False reads raw files.
    norm: "audioset" (-5.081 / 4.4849), "dataset" (``stats.json`` written by ``cavmae-lite stats``) or (mean, std).
    """
    from ..config import CAVMAEConfig

    config = config or CAVMAEConfig.base()
    manifest = read_manifest(data_dir, label_csv)
    if split is None:
        rows = list(range(len(manifest.entries)))
    else:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        if not any("split" in e for e in manifest.entries):
            raise ValueError(f"{manifest.path} has no 'split' keys; use split=None (the whole manifest)")
        rows = [i for i, e in enumerate(manifest.entries) if e.get("split") == split]
        if not rows:
            raise ValueError(f"{manifest.path} has no entries in split {split!r}")
    mean, std = _stats(manifest, norm)
    arrays = None
    if cache is True or cache == "auto":
        arrays = open_cache(manifest, config, required=cache is True)
    elif cache not in (False, None):
        raise ValueError(f"cache must be 'auto', True or False, got {cache!r}")
    return AVDataset(manifest, config, rows, train, frames, noise, mean, std, arrays, seed)


def resolve_split(data_dir: str | Path, split: str | None, default: str) -> str | None:
    """The split to read from ``data_dir`` when a CLI user gave ``split`` (None = not given).

    Given: used as is ("all" = the whole manifest). Not given: ``default`` when the manifest has ``split`` keys
    (``prepare`` / ``make-data`` output), else None = every entry (an official datafile: one JSON per split).
    """
    if split == "all":
        return None
    if split is not None:
        return split
    return default if any("split" in e for e in read_manifest(data_dir).entries) else None


# ----- statistics ------------------------------------------------------------------------------------------


def fbank_stats(data_dir: str | Path, max_clips: int | None = 2000, num_mel_bins: int = 128, seed: int = 0) -> dict:
    """Mean and std of the raw log-mel fbank (unpadded) over the clips (a random subset of ``max_clips``)."""
    manifest = read_manifest(data_dir)
    rows = np.arange(len(manifest.entries))
    if max_clips and len(rows) > max_clips:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_clips, replace=False))
    s = s2 = n = 0.0
    for r in rows:
        fb = wav_to_fbank(load_audio(manifest.wav_path(manifest.entries[r])), num_mel_bins=num_mel_bins).double()
        s += float(fb.sum())
        s2 += float((fb * fb).sum())
        n += fb.numel()
    if n == 0:
        raise ValueError(f"{manifest.path}: no clips to compute statistics from")
    mean = s / n
    std = max(s2 / n - mean * mean, 0.0) ** 0.5
    return {"mean": round(mean, 4), "std": round(std, 4), "num_clips": len(rows)}


__all__ = ["STATS_NAME", "AVDataset", "fbank_stats", "load_dataset", "resolve_split"]
