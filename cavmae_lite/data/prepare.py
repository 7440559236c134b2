"""``cavmae-lite prepare SRC OUT``: a folder of videos -> a prepared dataset (official layout) + a report.

For every file under SRC (recursively; hidden files skipped) it writes

* ``OUT/audio/<video_id>.wav``  — 16 kHz mono 16-bit PCM (channel 0 by default, resampled, spec §2.1);
* ``OUT/frame_<i>/<video_id>.jpg`` for i < N — N evenly spaced frames of the first 10 s, shorter side resized
  to ``--frame-size`` (bicubic) and centre-cropped (default 224, the official size);

then ``manifest.json`` (official datafile format, paths relative to OUT), ``labels.csv`` and
``prepare_report.json`` = ``{"prepared": [ids], "skipped": [{"file", "reason"}], "warnings": [{"file",
"warning"}]}``. A file that cannot give both a decodable audio track and at least one frame is skipped with
its reason (the run never stops for one file, and nothing is replaced by a constant). Files are processed
by parallel workers; a second run reuses every clip whose source file is unchanged (resumable).

Labels: the first sub-folder of a file (``SRC/dog/a.mp4`` -> ``dog``), or ``--labels CSV`` with columns
``file`` (path relative to SRC, or its stem) and ``labels`` (comma-separated). Splits: if SRC's top-level
folders are ``train``/``val``/``test``, they set each clip's ``split`` and classes come from the next level.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

from .audio import SAMPLE_RATE, MediaError, load_audio, write_wav
from .manifest import LABELS_NAME, MANIFEST_NAME, SPLITS, write_labels, write_manifest
from .video import load_frames, resize_center_crop

REPORT_NAME = "prepare_report.json"
STATE_DIR = ".prepare"


def video_id_for(rel: str) -> str:
    """A filesystem-safe id from the path relative to SRC, unique per path (a short hash when sanitised)."""
    stem = str(Path(rel).with_suffix("")).replace(os.sep, "__")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "clip"
    if safe != stem:
        safe += "-" + hashlib.sha1(rel.encode()).hexdigest()[:6]
    return safe


def _problem(e: Exception, path: Path) -> str:
    msg = str(e)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else f"{type(e).__name__}: {msg}"


def process_file(src: Path, rel: str, out: Path, num_frames: int, frame_size: int, channel) -> dict:
    """Prepare one file; returns ``{"status": "ok"|"skipped", ...}`` (never raises for bad media)."""
    from PIL import Image

    vid = video_id_for(rel)
    path = src / rel
    result = {"file": rel, "video_id": vid, "warnings": []}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            wave = load_audio(path, SAMPLE_RATE, channel=channel)
            frames, idx = load_frames(path, num_frames, return_indices=True)
            frames = [resize_center_crop(f, frame_size) for f in frames]
        mine = [str(w.message) for w in caught if str(w.message).startswith(f"{path}: ")]
        result["warnings"] += [m[len(f"{path}: "):] for m in mine]
    except (MediaError, OSError, ValueError, RuntimeError) as e:
        return {**result, "status": "skipped", "reason": _problem(e, path)}
    except Exception as e:  # noqa: BLE001 — anything a broken file may throw from inside PyAV/soundfile
        return {**result, "status": "skipped", "reason": f"{type(e).__name__}: {e}"}
    peak = float(wave.abs().max())
    if peak == 0.0:
        result["warnings"].append("audio is silent (all samples zero): kept as is")
    elif peak > 1.0:
        result["warnings"].append(f"audio peak {peak:.2f} > 1: clipped to [-1, 1] in the 16-bit wav")
    distinct = len(set(idx))
    if distinct < num_frames:
        result["warnings"].append(f"only {distinct} distinct frame(s) for {num_frames} asked: frames repeat")
    tmp = f".tmp-{os.getpid()}"
    wav = out / "audio" / f"{vid}.wav"
    write_wav(wav.with_name(vid + tmp + ".wav"), wave.numpy())  # temp name + rename: never a half file
    os.replace(wav.with_name(vid + tmp + ".wav"), wav)
    for i, f in enumerate(frames):
        jpg = out / f"frame_{i}" / f"{vid}.jpg"
        Image.fromarray(f).save(jpg.with_name(jpg.name + tmp), format="JPEG", quality=95)
        os.replace(jpg.with_name(jpg.name + tmp), jpg)
    st = path.stat()
    result.update(status="ok", size=st.st_size, mtime_ns=st.st_mtime_ns, num_frames=num_frames,
                  frame_size=frame_size, seconds=round(wave.numel() / SAMPLE_RATE, 3))
    (out / STATE_DIR / f"{vid}.json").write_text(json.dumps(result) + "\n")
    return result


def _job(args) -> dict:
    import torch

    torch.set_num_threads(1)
    return process_file(*args)


def _labels_from_csv(csv_path: Path) -> dict[str, str]:
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return {}
    key = "file" if "file" in rows[0] else "video_id" if "video_id" in rows[0] else None
    col = "labels" if "labels" in rows[0] else "label" if "label" in rows[0] else None
    if key is None or col is None:
        raise ValueError(f"{csv_path}: a labels CSV needs a 'file' (or 'video_id') and a 'labels' column")
    return {r[key]: r[col] for r in rows}


def _is_candidate(p: Path, src: Path, exclude: list[Path]) -> bool:
    rel = p.relative_to(src)
    if any(part.startswith(".") for part in rel.parts) or not p.is_file():
        return False
    return not any(p == e or e in p.parents for e in exclude)


def prepare(
    src: str | Path,
    out: str | Path,
    num_frames: int = 10,
    frame_size: int = 224,
    workers: int | None = None,
    labels_csv: str | Path | None = None,
    channel: int | str = 0,
    progress: bool = True,
) -> dict:
    """Prepare every file under ``src`` into ``out``; returns the report (also written to ``out``)."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise NotADirectoryError(f"{src}: not a folder of videos")
    if num_frames < 1 or frame_size < 1:
        raise ValueError("--frames and --frame-size must be >= 1")
    out_r = out.resolve()
    skip = {Path(labels_csv).resolve()} if labels_csv else set()
    files = []
    for p in src.rglob("*"):
        rel = p.relative_to(src)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        rp = p.resolve()
        if rp in skip or out_r in rp.parents:
            continue
        files.append(str(rel))
    files.sort()
    if not files:
        raise ValueError(f"{src}: no files found")
    csv_labels = _labels_from_csv(Path(labels_csv)) if labels_csv else None
    for sub in ["audio", STATE_DIR, *(f"frame_{i}" for i in range(num_frames))]:
        (out / sub).mkdir(parents=True, exist_ok=True)

    results: dict[str, dict] = {}
    todo = []
    for rel in files:
        vid = video_id_for(rel)
        marker = out / STATE_DIR / f"{vid}.json"
        if marker.is_file():
            try:
                prev = json.loads(marker.read_text())
                st = (src / rel).stat()
                if (prev.get("size"), prev.get("mtime_ns"), prev.get("num_frames"), prev.get("frame_size")) == (
                        st.st_size, st.st_mtime_ns, num_frames, frame_size) and (out / "audio" / f"{vid}.wav").is_file():
                    results[rel] = {**prev, "resumed": True}
                    continue
            except (OSError, ValueError):
                pass
        todo.append((src, rel, out, num_frames, frame_size, channel))
    workers = max(1, min(workers or min(os.cpu_count() or 1, 8), len(todo) or 1))
    from tqdm.auto import tqdm

    with tqdm(total=len(todo), desc="prepare", unit="file", disable=not progress or not todo) as bar:
        if workers == 1 or len(todo) <= 1:
            for job in todo:
                results[job[1]] = _job(job)
                bar.update(1)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            with ctx.Pool(workers) as pool:
                for r in pool.imap_unordered(_job, todo):
                    results[r["file"]] = r
                    bar.update(1)

    entries, prepared, skipped, warnings, classes = [], [], [], [], set()
    for rel in files:
        r = results[rel]
        if r["status"] != "ok":
            skipped.append({"file": rel, "reason": r["reason"]})
            continue
        parts = Path(rel).parts
        split = parts[0] if len(parts) > 1 and parts[0] in SPLITS else None
        if csv_labels is not None:
            lab = csv_labels.get(rel, csv_labels.get(Path(rel).stem, ""))
        else:
            cls_parts = parts[1:] if split else parts
            lab = cls_parts[0] if len(cls_parts) > 1 else ""
        mids = [m.strip() for m in lab.split(",") if m.strip()]
        classes.update(mids)
        entry = {"video_id": r["video_id"], "wav": f"audio/{r['video_id']}.wav", "video_path": ".",
                 "labels": ",".join(mids), "num_frames": num_frames}
        if split:
            entry["split"] = split
        entry["source"] = rel
        entries.append(entry)
        prepared.append(r["video_id"])
        warnings += [{"file": rel, "warning": w} for w in r.get("warnings", [])]
    write_manifest(out / MANIFEST_NAME, entries)
    mids = sorted(classes)
    write_labels(out / LABELS_NAME, mids, mids)
    report = {"prepared": prepared, "skipped": skipped, "warnings": warnings,
              "resumed": sum(1 for r in results.values() if r.get("resumed")),
              "settings": {"num_frames": num_frames, "frame_size": frame_size, "sample_rate": SAMPLE_RATE,
                           "channel": channel}}
    (out / REPORT_NAME).write_text(json.dumps(report, indent=1) + "\n")
    return report


# ----- CLI -----------------------------------------------------------------------------------------------


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="folder of videos (mp4, mkv, webm, avi, mov, ...), searched recursively")
    p.add_argument("out", metavar="OUT", help="output folder (created; a rerun resumes)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: cores, at most 8)")
    p.add_argument("--frames", type=int, default=10, help="frames per clip, evenly spaced over the first 10 s")
    p.add_argument("--frame-size", type=int, default=224, help="stored frame size in px (default 224)")
    p.add_argument("--labels", default=None, metavar="CSV", help="CSV with columns file,labels (default: folders)")
    p.add_argument("--channel", default="0", help="audio channel index, or 'mean' (default 0, as official)")
    p.add_argument("--cache", action="store_true", help="also build the memory-mapped cache for --config")
    p.add_argument("--config", default="base", help="sizes for --cache: base, tiny or a JSON config")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_prepare(args: argparse.Namespace) -> int:
    t0 = time.time()
    channel = args.channel if args.channel == "mean" else int(args.channel)
    report = prepare(args.src, args.out, args.frames, args.frame_size, args.workers, args.labels, channel,
                     progress=not args.quiet)
    n, s = len(report["prepared"]), len(report["skipped"])
    dt = time.time() - t0
    print(f"prepared {n} clip(s) ({report['resumed']} reused), skipped {s}, {len(report['warnings'])} warning(s) "
          f"in {dt:.1f} s -> {Path(args.out) / MANIFEST_NAME}")
    for k in report["skipped"][:20]:
        print(f"  skipped {k['file']}: {k['reason']}")
    if s > 20:
        print(f"  ... and {s - 20} more (see {Path(args.out) / REPORT_NAME})")
    if n == 0:
        raise ValueError(f"no clip could be prepared from {args.src} (reasons in {Path(args.out) / REPORT_NAME})")
    if args.cache:
        from ..config import CAVMAEConfig
        from .cache import build_cache

        print(f"cache: {build_cache(args.out, CAVMAEConfig.preset(args.config), args.workers)}")
    return 0


__all__ = ["prepare", "process_file", "video_id_for"]
