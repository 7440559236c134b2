"""The default dataset: procedural audio-visual clips, generated offline from a seed in seconds.

Each clip draws hidden attributes and renders every one of them in both modalities:

=============  ===============================  ========================================================
attribute      picture                          sound
=============  ===============================  ========================================================
shape          circle / square / triangle /     timbre: sine / odd harmonics ("square") / all harmonics
               star                             ("saw") / inharmonic partials ("bell")
hue            object colour, hue in [0, 0.8)   pitch: 200 Hz x 2^(3 hue / 0.8), 200-1600 Hz
size           object radius 8-16 px            loudness: -24 to -6 dBFS peak
count          1-4 objects                      1-4 beeps
aspect         objects stretched wide or tall   pitch glide per beep: up (wide) or down (tall), +-0.5 oct
=============  ===============================  ========================================================

Nuisances (independent of the pairing): object positions and drift across frames, a textured
low-saturation background, brightness flicker, pixel and JPEG noise; beep onset, spacing and duration,
background noise colour and level, an occasional hum, small pitch/loudness/colour jitter. Labels for probing:
``shape x count`` (16 classes, e.g. ``star_3`` = "3 stars"); every attribute is also in ``attributes.csv``.

Output: exactly what ``cavmae-lite prepare`` writes (``audio/<id>.wav`` 16 kHz mono 16-bit,
``frame_<i>/<id>.jpg``, ``manifest.json`` with ``split`` keys, ``labels.csv``) plus ``attributes.csv``,
``synthetic.json`` and, with ``mp4 > 0``, ``mp4/<id>.mp4`` real videos (h264 + AAC, 128 x 96: the scene with
16-px side margins, so a centre crop gives back the frame) for the first test clips; their audio starts
64 ms late (AAC encoder delay; PyAV writes no edit list). Every byte depends only on the seed and the sizes.

One clip is rendered in :mod:`.synthetic_clip` (the waveform, the frames, the mp4); this module writes sets of them.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

from .manifest import write_labels, write_manifest
from .pool import resolve_workers, run_parallel
from .synthetic_clip import (
    DURATION,
    EVENTS,
    IMG,
    MAX_COUNT,
    NUM_FRAMES,
    SHAPES,
    SR,
    TIMBRES,
    draw_attributes,
    frame_times,
    lit_object,
    make_clip,
    render_audio,
    write_mp4,
)

GENERATOR = "cavmae-lite synthetic v2"  # bump when the bytes change: ensure_default_dataset rebuilds
# The generator numbers its clips in blocks: train 0-2,999, val 3,000-3,299, test 3,300-3,899, further train clips
# after that (first_indices, train_index). Any set drawn from it, of any size, so has the same val and test clips.
BLOCK_SIZES = (3000, 300, 600)
# The default set: 15,000 train clips. On 3,000 the ten-minute recipe and the retrieval model learn the training
# pairs better than held-out ones (docs/training.md); val and test are the blocks' clips.
FULL_SIZES = (15000, 300, 600)
FAST_SIZES = (480, 60, 120)
SPLIT_NAMES = ("train", "val", "test")
CLIPS_PER_JOB = 50


# ----- writing clips -----------------------------------------------------------------------------------------


def _write_clips(job) -> list[dict]:
    out, seed, num_frames, items, mp4_ids, events = job
    from PIL import Image

    from .audio import write_wav

    rows = []
    for index, vid, split in items:
        clip = make_clip(seed, index, num_frames, events)
        write_wav(out / "audio" / f"{vid}.wav", clip["wave"])
        for i, f in enumerate(clip["frames"]):
            Image.fromarray(f).save(out / f"frame_{i}" / f"{vid}.jpg", quality=90)
        if vid in mp4_ids:
            write_mp4(out / "mp4" / f"{vid}.mp4", clip)
        a = clip["attr"]
        rows.append({"video_id": vid, "split": split, "shape": SHAPES[a["shape"]], "count": a["count"],
                     "hue": round(a["hue"], 4), "size": round(a["size"], 4), "aspect": round(a["aspect"], 4),
                     **clip["info"]})
    return rows


# ----- the dataset -------------------------------------------------------------------------------------------


def class_mids() -> tuple[list[str], list[str]]:
    mids = [f"{s}_{c}" for s in SHAPES for c in range(1, MAX_COUNT + 1)]
    names = [f"{c} {s}{'s' if c > 1 else ''}" for s in SHAPES for c in range(1, MAX_COUNT + 1)]
    return mids, names


def first_indices(num_train: int, num_val: int) -> dict[str, int]:
    """Generator index of each split's first clip: train from 0, val after the train block (``BLOCK_SIZES``), test
    after the val block (or after a larger val split). A smaller set (the fast one) is so a subset of a larger one
    split by split: its test clips are the default set's test clips, never clips a shipped model was trained on. A
    train split larger than the train block continues after the test block (:func:`train_index`), so val and test
    stay the same clips."""
    val = BLOCK_SIZES[0]
    return {"train": 0, "val": val, "test": val + max(num_val, BLOCK_SIZES[1])}


def train_index(k: int, num_val: int, num_test: int) -> int:
    """Generator index of train clip ``k``: ``k`` within the train block; beyond it, after the test block."""
    if k < BLOCK_SIZES[0]:
        return k
    return first_indices(k, num_val)["test"] + max(num_test, BLOCK_SIZES[2]) + k - BLOCK_SIZES[0]


def plan_clips(num_train: int, num_val: int, num_test: int, only: str | None = None,
               mp4: int = 0) -> tuple[list[tuple[int, str, str]], set[str]]:
    """The clips of a build, ``[(generator index, video_id, split)]``, and the ids also written as mp4 (the
    first ``mp4`` test clips)."""
    first = first_indices(num_train, num_val)
    items = [(train_index(k, num_val, num_test), f"train{k:05d}", "train") for k in range(num_train)]
    for split, n in (("val", num_val), ("test", num_test)):
        items += [(first[split] + k, f"{split}{k:05d}", split) for k in range(n)]
    if only is not None:
        items = [it for it in items if it[2] == only]
    mp4_ids = sorted(vid for _, vid, split in items if split == "test")
    return items, set(mp4_ids[:mp4]) if mp4 else set()


def _check_arguments(num_train: int, num_val: int, num_test: int, num_frames: int, only: str | None) -> None:
    if num_frames < 1 or min(num_train, num_val, num_test) < 0 or num_train + num_val + num_test == 0:
        raise ValueError(f"need num_frames >= 1 and at least one clip (no split below 0), got num_frames={num_frames},"
                         f" splits {num_train} / {num_val} / {num_test}")
    if only is not None and only not in SPLIT_NAMES:
        raise ValueError(f"only must be 'train', 'val' or 'test', got {only!r}")
    if only is not None and dict(zip(SPLIT_NAMES, (num_train, num_val, num_test)))[only] == 0:
        raise ValueError(f"only={only!r} asks for a split of 0 clips; give it at least one")


def _fresh_build_dir(out: Path, force: bool, num_frames: int, mp4: bool) -> Path:
    """Empty ``out`` (only with ``force``) and make the temporary sibling folder the build is written into."""
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ValueError(f"{out} exists and is not empty (use --force to replace it)")
        shutil.rmtree(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ["audio", *(f"frame_{i}" for i in range(num_frames))] + (["mp4"] if mp4 else []):
        (tmp / sub).mkdir(parents=True)
    return tmp


def _write_index(tmp: Path, rows: list[dict], info: dict) -> None:
    """labels.csv, attributes.csv, synthetic.json, then manifest.json (last: its presence marks a complete build)."""
    mids, names = class_mids()
    entries = [{"video_id": r["video_id"], "wav": f"audio/{r['video_id']}.wav", "video_path": ".",
                "labels": f"{r['shape']}_{r['count']}", "split": r["split"], "num_frames": info["num_frames"]}
               for r in rows]
    write_labels(tmp / "labels.csv", mids, names)
    cols = list(rows[0])
    (tmp / "attributes.csv").write_text(
        ",".join(cols) + "\n" + "".join(",".join(str(r[c]) for c in cols) + "\n" for r in rows))
    (tmp / "synthetic.json").write_text(json.dumps(info, indent=1) + "\n")
    write_manifest(tmp / "manifest.json", entries)


def _move_into_place(tmp: Path, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if out.exists():
            out.rmdir()  # empty (checked before the build)
        tmp.rename(out)
    except OSError:
        if (out / "manifest.json").is_file():  # a concurrent build of the same folder finished first
            shutil.rmtree(tmp, ignore_errors=True)
            return out
        raise
    return out


def make_synthetic(
    out: str | Path,
    seed: int = 0,
    num_train: int = FULL_SIZES[0],
    num_val: int = FULL_SIZES[1],
    num_test: int = FULL_SIZES[2],
    num_frames: int = NUM_FRAMES,
    mp4: int = 4,
    workers: int | None = None,
    progress: bool = True,
    force: bool = False,
    only: str | None = None,
    events: bool = False,
) -> Path:
    """Generate the dataset into ``out`` (built in a temporary sibling folder, then renamed). Returns ``out``.

    only: write just that split ("train", "val" or "test") of the full-size set, clip for clip the same as in a
    complete build (clip content depends on the seed and the clip's generator index, :func:`first_indices`).
    events: the events variant for CAV-MAE Sync (object b lights up while beep b sounds; use ``num_frames=16``):
    the same clips otherwise, sound for sound.
    """
    out = Path(out)
    _check_arguments(num_train, num_val, num_test, num_frames, only)
    tmp = _fresh_build_dir(out, force, num_frames, bool(mp4))
    items, mp4_ids = plan_clips(num_train, num_val, num_test, only, mp4)
    jobs = [(tmp, seed, num_frames, items[i : i + CLIPS_PER_JOB], mp4_ids, events)
            for i in range(0, len(items), CLIPS_PER_JOB)]
    chunks = run_parallel(_write_clips, jobs, resolve_workers(workers, len(jobs)), desc=f"make-data {out.name}",
                          unit="clip", progress=progress, sizes=[len(job[3]) for job in jobs])
    info = {"generator": GENERATOR, "seed": seed, "splits": {"train": num_train, "val": num_val, "test": num_test},
            "first_index": first_indices(num_train, num_val),
            "train_beyond_full_from": train_index(BLOCK_SIZES[0], num_val, num_test),
            "only": only, "events": EVENTS if events else False,
            "num_frames": num_frames, "eval_frame": num_frames // 2, "img_size": IMG, "sample_rate": SR,
            "duration_s": DURATION, "label": "shape x count", "mp4": sorted(mp4_ids)}
    _write_index(tmp, [row for chunk in chunks for row in chunk], info)
    return _move_into_place(tmp, out)


def fast_mode() -> bool:
    return os.environ.get("CAVMAE_FAST", "") not in ("", "0", "false", "False")


def default_data_dir() -> Path:
    """``$CAVMAE_DATA`` if set, else the repository's ``data/synthetic`` (``data/synthetic-fast`` when
    ``CAVMAE_FAST=1``); outside a source checkout, ``~/.cache/cavmae-lite/data/...``."""
    env = os.environ.get("CAVMAE_DATA")
    if env:
        return Path(env).expanduser()
    name = "synthetic-fast" if fast_mode() else "synthetic"
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file():
        return repo / "data" / name
    return Path.home() / ".cache" / "cavmae-lite" / "data" / name


def ensure_default_dataset(path: str | Path | None = None, cache: bool = True, quiet: bool = True) -> Path:
    """Build the default synthetic dataset at ``path`` (default :func:`default_data_dir`) if it is missing.

    Full size: 15,000 / 300 / 600 clips (train / val / test; 4.2 GB with the cache); with ``CAVMAE_FAST=1``:
    480 / 60 / 120. A set with fewer train clips (made before the default grew) is used as it is, with a warning.
    A set made by an older generator version (``synthetic.json``) is rebuilt; a folder holding some other
    dataset (a manifest but no ``synthetic.json``) is used as is; a non-empty folder without a manifest is an
    error (never deleted). With ``cache`` it also builds the tiny-config cache. Returns the dataset folder.
    """
    out = Path(path) if path is not None else default_data_dir()
    stamp = out / "synthetic.json"
    have = (out / "manifest.json").is_file()
    if have and not stamp.is_file():
        return out  # a dataset that is not ours (e.g. CAVMAE_DATA -> prepared videos): use it as is
    info = json.loads(stamp.read_text()) if have else {}
    stale = have and (info.get("generator") != GENERATOR or "first_index" not in info)  # older numbering too
    if not have or stale:
        if out.exists() and any(out.iterdir()) and not stale:
            raise ValueError(f"{out} exists, is not empty and holds no manifest.json: not touching it "
                             "(remove it, or point CAVMAE_DATA elsewhere)")
        sizes = FAST_SIZES if fast_mode() else FULL_SIZES
        if not quiet:
            why = "rebuilding (older generator)" if stale else "building"
            print(f"{why} the synthetic dataset in {out} ({sum(sizes)} clips)...", flush=True)
        # build beside it, then swap: readers that already opened the old files/caches keep them
        new = make_synthetic(out.with_name(f".{out.name}.new-{os.getpid()}"), 0, *sizes, progress=not quiet,
                             force=True)
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        if out.exists():
            out.rename(old)
        new.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    elif not fast_mode() and info.get("splits", {}).get("train", FULL_SIZES[0]) < FULL_SIZES[0]:
        warnings.warn(f"{out} has {info['splits']['train']:,} training clips, the default set now {FULL_SIZES[0]:,}: "
                      "the ten-minute recipe's numbers are for the larger set. Rebuild it with `cavmae-lite make-data "
                      f"synthetic {out} --cache --force` (val and test stay the same clips)", stacklevel=2)
    if cache:
        from ..config import CAVMAEConfig
        from .cache import build_cache, open_cache
        from .manifest import read_manifest

        config = CAVMAEConfig.tiny()
        if open_cache(read_manifest(out), config) is None:
            build_cache(out, config, progress=not quiet)
    return out


def frame_events(data_dir: str | Path, video_ids: list[str], num_frames: int) -> "np.ndarray":
    """(N, T) int: which object is lit in moment t of T = ``num_frames`` of each clip of an events-variant synthetic
    set (-1: none), from the generator (the beep times are redrawn, nothing is rendered). Moment t shows stored frame
    floor(t * K / T) of the K written, as :class:`~.pairs.PairDataset` reads it."""
    import numpy as np

    from .video import frame_indices

    stamp = Path(data_dir) / "synthetic.json"
    info = json.loads(stamp.read_text()) if stamp.is_file() else {}
    if not info.get("events"):
        raise ValueError(f"{data_dir} is not an events-variant synthetic set (make-data synthetic --events): its "
                         "clips have no lit moments to localise")
    index = {vid: i for i, vid, _ in plan_clips(*(info["splits"][k] for k in SPLIT_NAMES))[0]}
    missing = [v for v in video_ids if v not in index]
    if missing:
        raise ValueError(f"{len(missing)} video ids are not clips of {data_dir}, e.g. {missing[:3]}")
    K = info["num_frames"]
    times = [frame_times(K)[s] for s in frame_indices(K, num_frames)]
    out = np.full((len(video_ids), num_frames), -1, dtype=np.int64)
    for n, vid in enumerate(video_ids):
        rng = np.random.default_rng([info["seed"], index[vid]])
        _, _, beeps = render_audio(draw_attributes(rng), rng)  # the same draws, in order, as make_clip's
        for t, time in enumerate(times):
            lit = lit_object(beeps, time)
            out[n, t] = -1 if lit is None else lit
    return out


__all__ = ["BLOCK_SIZES", "FAST_SIZES", "FULL_SIZES", "GENERATOR", "MAX_COUNT", "NUM_FRAMES", "SHAPES", "TIMBRES", "class_mids",
           "default_data_dir", "draw_attributes", "ensure_default_dataset", "fast_mode", "first_indices", "frame_events", "make_clip",
           "make_synthetic", "plan_clips", "train_index"]
