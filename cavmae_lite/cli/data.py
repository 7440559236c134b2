"""The data commands: ``make-data``, ``prepare``, ``cache`` and ``stats`` (the work is in :mod:`cavmae_lite.data`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..data.audio import AUDIOSET_MEAN, AUDIOSET_STD
from ..data.datasets import STATS_NAME
from ..data.synthetic import FULL_SIZES, NUM_FRAMES
from .main import UserError

# ----- make-data ---------------------------------------------------------------------------------------------


def add_make_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=["synthetic"], help="which dataset (synthetic: the default procedural set)")
    p.add_argument("out", metavar="OUT", help="output folder (must not exist or be empty, unless --force)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=FULL_SIZES[0])
    p.add_argument("--num-val", type=int, default=FULL_SIZES[1])
    p.add_argument("--num-test", type=int, default=FULL_SIZES[2])
    p.add_argument("--frames", type=int, default=NUM_FRAMES, help=f"frames per clip (default {NUM_FRAMES})")
    p.add_argument("--mp4", type=int, default=4, metavar="K", help="also write K test clips as mp4 (default 4)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--cache", action="store_true", help="also build the tiny-config cache")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    p.add_argument("--events", action="store_true",
                   help="the events variant for CAV-MAE Sync: object b lights up while beep b sounds (use --frames 16)")


def run_make_data(args: argparse.Namespace) -> int:
    from ..config import CAVMAEConfig
    from ..data.cache import build_cache
    from ..data.synthetic import make_synthetic

    t0 = time.time()
    out = make_synthetic(args.out, args.seed, args.num_train, args.num_val, args.num_test, args.frames,
                         args.mp4, args.workers, force=args.force, events=args.events)
    n = args.num_train + args.num_val + args.num_test
    print(f"wrote {n} clips to {out} in {time.time() - t0:.1f} s")
    if args.cache:
        d = build_cache(out, CAVMAEConfig.tiny(), args.workers)
        print(f"cache: {d}")
    return 0


# ----- prepare -----------------------------------------------------------------------------------------------


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="folder of videos (mp4, mkv, webm, avi, mov, ...), searched recursively")
    p.add_argument("out", metavar="OUT", help="output folder (created; a rerun resumes)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: cores, at most 8)")
    p.add_argument("--frames", type=int, default=10, help="frames per clip, evenly spaced over the first 10 s")
    p.add_argument("--frame-size", type=int, default=224, help="stored frame size in px (default 224)")
    p.add_argument("--labels", default=None, metavar="CSV", help="CSV with columns file,labels (default: folders)")
    p.add_argument("--channel", default="0", help="audio channel index, or 'mean' (default 0, as official)")
    p.add_argument("--cache", action="store_true", help="also build the memory-mapped cache for --config")
    p.add_argument("--config", default="base", help="model sizes the data is for (--cache, short-audio warning): "
                   "base, tiny or a JSON config")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _channel(text: str) -> int | str:
    if text == "mean":
        return text
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--channel must be an index (0, 1, ...) or 'mean', got {text!r}") from None


def _print_prepare_report(report: dict, out: Path, seconds: float) -> None:
    from ..data.manifest import MANIFEST_NAME
    from ..data.prepare import REPORT_NAME

    n, s = len(report["prepared"]), len(report["skipped"])
    print(f"prepared {n} clip(s) ({report['resumed']} reused), skipped {s}, {len(report['warnings'])} warning(s) "
          f"in {seconds:.1f} s -> {out / MANIFEST_NAME}")
    for k in report["skipped"][:20]:
        print(f"  skipped {k['file']}: {k['reason']}")
    if s > 20:
        print(f"  ... and {s - 20} more (see {out / REPORT_NAME})")


def run_prepare(args: argparse.Namespace) -> int:
    from ..config import CAVMAEConfig
    from ..data.cache import build_cache
    from ..data.prepare import REPORT_NAME, prepare

    t0 = time.time()
    channel = _channel(args.channel)
    config = CAVMAEConfig.preset(args.config)
    report = prepare(args.src, args.out, args.frames, args.frame_size, args.workers, args.labels, channel,
                     progress=not args.quiet, audio_length=config.audio_length)
    _print_prepare_report(report, Path(args.out), time.time() - t0)
    if not report["prepared"]:
        raise UserError(f"no clip could be prepared from {args.src} (reasons in {Path(args.out) / REPORT_NAME})")
    if report["renamed"]:
        print(f"  {len(report['renamed'])} file name(s) not usable as ids verbatim (unsafe or shared): changed, "
              f"original kept as source_name in the manifest, e.g. {report['renamed'][0]}")
    if args.cache:
        print(f"cache: {build_cache(args.out, config, args.workers)}")
    return 0


# ----- cache -------------------------------------------------------------------------------------------------


def add_cache_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", metavar="DATA_DIR", help="a prepared dataset folder (or a datafile JSON)")
    p.add_argument("--config", default="tiny", help="base, tiny or a JSON config: sets the sizes (default tiny)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--mean", type=float, default=AUDIOSET_MEAN, help="fbank mean for normalisation")
    p.add_argument("--std", type=float, default=AUDIOSET_STD, help="fbank std for normalisation")
    p.add_argument("--labels", default=None, help="label CSV (default: labels.csv beside the manifest)")


def run_cache(args: argparse.Namespace) -> int:
    from ..config import CAVMAEConfig
    from ..data.cache import build_cache

    config = CAVMAEConfig.preset(args.config)
    t0 = time.time()
    d = build_cache(args.data_dir, config, args.workers, args.mean, args.std, args.labels)
    meta = json.loads((d / "meta.json").read_text())
    size = sum(p.stat().st_size for p in d.iterdir()) / 2**20
    print(f"cache {d}: {meta['num_clips']} clips, {size:.0f} MiB, {time.time() - t0:.1f} s")
    return 0


# ----- stats -------------------------------------------------------------------------------------------------


def add_stats_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", metavar="DATA_DIR", help="a prepared dataset folder (or a datafile JSON)")
    p.add_argument("--max-clips", type=int, default=2000, help="random subset size (0 = all; default 2000)")
    p.add_argument("--no-write", action="store_true", help=f"only print; do not write DATA_DIR/{STATS_NAME}")


def run_stats(args: argparse.Namespace) -> int:
    from ..data.datasets import fbank_stats
    from ..data.manifest import manifest_path

    stats = fbank_stats(args.data_dir, args.max_clips or None)
    print(f"fbank mean {stats['mean']}  std {stats['std']}  ({stats['num_clips']} clips; "
          f"AudioSet: {AUDIOSET_MEAN} / {AUDIOSET_STD})")
    if not args.no_write:
        out = manifest_path(args.data_dir).parent / STATS_NAME
        out.write_text(json.dumps(stats) + "\n")
        print(f"wrote {out}; use it with load_dataset(..., norm='dataset')")
    return 0
