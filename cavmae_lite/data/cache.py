"""A prepared cache: memory-mapped arrays of normalised fbanks and resized frames, one per config size.

Layout, for a dataset folder D and a config with T fbank frames, F mel bins, S-px frames::

    D/cache/<manifest stem>-t<T>-f<F>-s<S>/
        audio.npy       float16 (N, T, F)        normalised fbank (padded/cropped to T, stats in meta.json)
        frames.npy      uint8   (N, K, S, S, 3)  K frames per clip, resized + centre-cropped to S
        num_frames.npy  int16   (N,)             the manifest's frame count per clip (<= K; the rest repeat)
        meta.json       sizes, mean/std used, video_ids, the manifest's fingerprint

Rows follow the manifest's entry order. A missing frame file is replaced by the nearest lower frame that
exists (the official loader's fallback) and the clip keeps its manifest frame count, so cached and raw items
pick the same frames (the evaluation frame is ``num_frames // 2`` either way). ``load_dataset(...,
cache="auto")`` uses a cache whose fingerprint and format version match and ignores a stale one (with a
warning). Build it with ``cavmae-lite cache D --config tiny`` or ``prepare --cache``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import AUDIOSET_MEAN, AUDIOSET_STD, load_fbank
from .manifest import Manifest, read_manifest
from .pool import resolve_workers, run_parallel
from .video import frame_transform, load_image, resize_center_crop

CACHE_VERSION = 2  # 2: num_frames.npy holds the manifest's count, not the frame files found


def cache_dir(manifest: Manifest, config) -> Path:
    key = f"{manifest.path.stem}-t{config.audio_length}-f{config.num_mel_bins}-s{config.img_size}"
    return manifest.root / "cache" / key


@dataclass
class CacheArrays:
    path: Path
    audio: np.ndarray  # float16 (N, T, F), memory-mapped
    frames: np.ndarray  # uint8 (N, K, S, S, 3), memory-mapped
    num_frames: np.ndarray  # int16 (N,)
    meta: dict

    def __getstate__(self) -> dict:  # pickle (spawned DataLoader workers) by path, never the array data
        return {"path": self.path, "meta": self.meta}

    def __setstate__(self, state: dict) -> None:
        d = state["path"]
        self.path, self.meta = d, state["meta"]
        self.audio = np.load(d / "audio.npy", mmap_mode="r")
        self.frames = np.load(d / "frames.npy", mmap_mode="r")
        self.num_frames = np.load(d / "num_frames.npy")

    @property
    def mean(self) -> float:
        return float(self.meta["mean"])

    @property
    def std(self) -> float:
        return float(self.meta["std"])


def open_cache(manifest: Manifest, config, required: bool = False) -> CacheArrays | None:
    """The cache for (manifest, config sizes) if present and current, else None (or an error if ``required``)."""
    d = cache_dir(manifest, config)
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        if required:
            raise FileNotFoundError(f"no cache at {d}: build it with `cavmae-lite cache {manifest.root} --config ...`")
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("fingerprint") != manifest.fingerprint() or meta.get("version") != CACHE_VERSION:
        why = ("the manifest changed since it was built" if meta.get("version") == CACHE_VERSION else
               f"built by another cavmae-lite version: cache format {meta.get('version')}, this one reads {CACHE_VERSION}")
        msg = f"cache {d} is stale ({why}); rebuild it with `cavmae-lite cache`"
        if required:
            raise ValueError(msg)
        warnings.warn(msg + "; reading raw files instead", stacklevel=3)
        return None
    return CacheArrays(
        d,
        np.load(d / "audio.npy", mmap_mode="r"),
        np.load(d / "frames.npy", mmap_mode="r"),
        np.load(d / "num_frames.npy"),
        meta,
    )


def _frames_of(manifest: Manifest, entry: dict, k_max: int, size: int) -> tuple[np.ndarray, int]:
    """((k_max, S, S, 3) uint8 frames, the manifest's frame count k) of one entry.

    Frame i < k is file i or, when that file is missing, the nearest lower one that exists (as the raw loader
    and the official loader do); rows i >= k repeat frame k - 1 (padding, never read through the dataset).
    """
    k = min(manifest.num_frames(entry), k_max)
    if k < 1:
        raise ValueError(f"clip {entry['video_id']}: num_frames must be >= 1, got {manifest.num_frames(entry)}")
    out = np.empty((k_max, size, size, 3), np.uint8)
    for i in range(k_max):
        j = min(i, k - 1)
        while j >= 0 and not manifest.frame_path(entry, j).is_file():
            j -= 1
        if j < 0:
            raise FileNotFoundError(
                f"{manifest.frame_path(entry, min(i, k - 1))}: frame image missing (clip {entry['video_id']})"
            )
        out[i] = resize_center_crop(load_image(manifest.frame_path(entry, j)), size)
    return out, k


def _fill(args) -> None:
    """Worker: rows ``lo:hi`` of the cache arrays in folder ``d`` (opened read-write, memory-mapped)."""
    mpath, csv, size_t, size_f, size_s, k_max, mean, std, d, lo, hi = args
    manifest = read_manifest(mpath, csv)
    audio = np.load(d / "audio.npy", mmap_mode="r+")
    frames = np.load(d / "frames.npy", mmap_mode="r+")
    nf = np.load(d / "num_frames.npy", mmap_mode="r+")
    for i in range(lo, hi):
        e = manifest.entries[i]
        audio[i] = load_fbank(manifest.wav_path(e), size_t, size_f, mean, std).numpy().astype(np.float16)
        frames[i], nf[i] = _frames_of(manifest, e, k_max, size_s)
    audio.flush()
    frames.flush()
    nf.flush()


def _allocate(folder: Path, n: int, k_max: int, t: int, f: int, s: int) -> None:
    """The three arrays, full size and zero, as .npy files the workers open memory-mapped."""
    np.lib.format.open_memmap(folder / "audio.npy", "w+", np.float16, (n, t, f)).flush()
    np.lib.format.open_memmap(folder / "frames.npy", "w+", np.uint8, (n, k_max, s, s, 3)).flush()
    np.lib.format.open_memmap(folder / "num_frames.npy", "w+", np.int16, (n,)).flush()


def _row_ranges(n: int, workers: int) -> list[tuple[int, int]]:
    """Rows split into about 4 jobs per worker (at most 256 rows each), so the bar moves and the load balances."""
    chunk = max(1, min(256, -(-n // (workers * 4))))
    return [(lo, min(n, lo + chunk)) for lo in range(0, n, chunk)]


def _install(tmp: Path, d: Path) -> None:
    """Replace ``d`` by the finished ``tmp`` folder."""
    shutil.rmtree(d, ignore_errors=True)
    try:
        tmp.rename(d)
    except OSError:  # a concurrent build of the same cache won the race: keep that one
        shutil.rmtree(tmp, ignore_errors=True)


def build_cache(
    data: str | Path,
    config,
    workers: int | None = None,
    mean: float = AUDIOSET_MEAN,
    std: float = AUDIOSET_STD,
    label_csv: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Build (or rebuild) the cache for ``config``'s sizes; returns its folder."""
    manifest = read_manifest(data, label_csv)
    if not manifest.entries:
        raise ValueError(f"{manifest.path}: the manifest has no entries; nothing to cache")
    d = cache_dir(manifest, config)
    tmp = d.with_name(f"{d.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n = len(manifest.entries)
    k_max = max(manifest.num_frames(e) for e in manifest.entries)
    t, f, s = config.audio_length, config.num_mel_bins, config.img_size
    _allocate(tmp, n, k_max, t, f, s)
    workers = resolve_workers(workers, n)
    ranges = _row_ranges(n, workers)
    jobs = [(manifest.path, label_csv, t, f, s, k_max, mean, std, tmp, lo, hi) for lo, hi in ranges]
    t0 = time.time()
    frame_transform(s, to_tensor=False)  # torchvision imported once here, not again in every forked worker
    run_parallel(_fill, jobs, workers, desc=f"cache {d.name}", unit="clip", progress=progress,
                 sizes=[hi - lo for lo, hi in ranges], torch_threads=1)
    meta = {
        "version": CACHE_VERSION,
        "manifest": manifest.path.name,
        "fingerprint": manifest.fingerprint(),
        "num_clips": n,
        "audio_length": t,
        "num_mel_bins": f,
        "img_size": s,
        "frames_per_clip": k_max,
        "mean": mean,
        "std": std,
        "build_seconds": round(time.time() - t0, 2),
        "video_ids": [e["video_id"] for e in manifest.entries],
    }
    (tmp / "meta.json").write_text(json.dumps(meta) + "\n")
    _install(tmp, d)
    return d


__all__ = ["CacheArrays", "build_cache", "cache_dir", "open_cache"]
