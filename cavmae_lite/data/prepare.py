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

Ids: a clip's ``video_id`` is its file name without the extension, exactly as the official scripts take it
(``SRC/dog/--4gqARaEJE_.mp4`` -> ``--4gqARaEJE_``), whenever that name is filesystem-safe: only letters,
digits, ``-``, ``_`` and ``.``, in any position (YouTube, AudioSet and VGGSound ids are). A name that is not
(a space, a non-ASCII letter, ...), or that two files share (``dog/a.mp4`` and ``cat/a.mp4``; on a
case-insensitive OUT also ``A.mp4`` and ``a.mp4``), is changed to its safe characters plus a hash of its path
(``my clip.mp4`` -> ``my_clip-<6 hex>``), unique among all the clips; its entry then records the original name
as ``source_name``. Every entry records its path relative to SRC as ``source``.

Labels: the first sub-folder of a file (``SRC/dog/a.mp4`` -> ``dog``), or ``--labels CSV`` with columns
``file`` (path relative to SRC, or its stem) and ``labels`` (comma-separated). Splits: if SRC's top-level
folders are ``train``/``val``/``test``, they set each clip's ``split`` and classes come from the next level;
otherwise no entry has a ``split`` key, and the commands that read the manifest take it as a whole.

Short audio: a clip whose fbank fills less than three quarters of ``audio_length`` frames (the size of the
model it is meant for; ``--config``, default base = 1024 frames = 10.24 s) is kept with a warning that states
how much of the model's input will be padding.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import warnings
from pathlib import Path

from .audio import SAMPLE_RATE, MediaError, load_audio, num_fbank_frames, padding_fraction, write_wav
from .manifest import LABELS_NAME, MANIFEST_NAME, SPLITS, write_labels, write_manifest
from .pool import resolve_workers, run_parallel
from .video import VIDEO_SUFFIXES, frame_transform, load_frames, resize_center_crop

REPORT_NAME = "prepare_report.json"
STATE_DIR = ".prepare"
SHORT_AUDIO_PADDING = 0.25  # warn when more than this fraction of the model's fbank would be padding


_SAFE = re.compile(r"[A-Za-z0-9._-]+")
MAX_ID_CHARS = 200  # + ".wav" / ".jpg" and a temporary suffix stays under the usual 255-byte name limit


def source_name(rel: str) -> str:
    """The official id of a file: its name without the (last) extension, ``dir/ab_c.mp4`` -> ``ab_c``."""
    return Path(rel).stem


def is_safe_id(name: str) -> bool:
    """Letters, digits, ``-``, ``_``, ``.`` only (any position), not ``.`` / ``..``, at most 200 characters."""
    return bool(_SAFE.fullmatch(name)) and name not in (".", "..") and len(name) <= MAX_ID_CHARS


def _changed_id(rel: str, taken: set[str], fold) -> str:
    """Safe characters of the name + a hash of the path, lengthened until no other clip has it."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", source_name(rel))[: MAX_ID_CHARS - 50].lstrip(".") or "clip"
    digest = hashlib.sha1(os.fsencode(rel)).hexdigest()
    for n in range(6, len(digest) + 1, 2):
        vid = f"{base}-{digest[:n]}"
        if fold(vid) not in taken:
            return vid
    k = 2
    while fold(f"{base}-{digest}-{k}") in taken:  # a full sha1 clash: practically never
        k += 1
    return f"{base}-{digest}-{k}"


def assign_video_ids(rels: list[str], case_insensitive: bool = False) -> dict[str, str]:
    """path relative to SRC -> video_id, for all the files of one run (see the module docstring).

    A name is kept verbatim when it is safe (:func:`is_safe_id`) and no other file has the same name (compared
    without case when ``case_insensitive``); every other file gets a changed id, unique among all of them.
    """
    fold = str.casefold if case_insensitive else (lambda x: x)
    count: dict[str, int] = {}
    for rel in rels:
        count[fold(source_name(rel))] = count.get(fold(source_name(rel)), 0) + 1
    ids = {rel: source_name(rel) for rel in rels
           if is_safe_id(source_name(rel)) and count[fold(source_name(rel))] == 1}
    taken = {fold(v) for v in ids.values()}
    for rel in sorted(set(rels) - set(ids)):
        ids[rel] = _changed_id(rel, taken, fold)
        taken.add(fold(ids[rel]))
    return ids


def video_id_for(rel: str) -> str:
    """The id of one file when no other file shares its name: verbatim if safe, else changed (see above)."""
    return assign_video_ids([rel])[rel]


def _case_insensitive(folder: Path) -> bool:
    """Whether ``folder``'s filesystem treats ``A`` and ``a`` as the same name (macOS, Windows defaults)."""
    probe = folder / f".CaseProbe-{os.getpid()}"
    probe.touch()
    try:
        return (folder / probe.name.lower()).exists()
    finally:
        probe.unlink()


def _problem(e: Exception, path: Path) -> str:
    msg = str(e)
    prefix = f"{path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else f"{type(e).__name__}: {msg}"


def padding_warning(num_samples: int, audio_length: int, sample_rate: int = SAMPLE_RATE) -> str | None:
    """The warning for audio whose fbank fills less than 3/4 of ``audio_length`` frames, else None."""
    frac = padding_fraction(num_samples, audio_length, sample_rate)
    if frac <= SHORT_AUDIO_PADDING:
        return None
    return (f"audio is {num_samples / sample_rate:.2f} s ({num_fbank_frames(num_samples, sample_rate)} fbank frames "
            f"of {audio_length}): {100 * frac:.0f} % of the {audio_length / 100:.2f}-s fbank is padding")


def process_file(src: Path, rel: str, out: Path, num_frames: int, frame_size: int, channel,
                 video_id: str | None = None, audio_length: int = 1024) -> dict:
    """Prepare one file; returns ``{"status": "ok"|"skipped", ...}`` (never raises for bad media).

    ``video_id`` defaults to :func:`video_id_for` of ``rel``; ``audio_length`` (fbank frames) sets the
    short-audio warning.
    """
    from PIL import Image

    vid = video_id or video_id_for(rel)
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
    short = padding_warning(wave.numel(), audio_length)
    if short:
        result["warnings"].append(short)
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
                  frame_size=frame_size, audio_length=audio_length, seconds=round(wave.numel() / SAMPLE_RATE, 3))
    (out / STATE_DIR / f"{vid}.json").write_text(json.dumps(result) + "\n")
    return result


def _previous(src: Path, rel: str, out: Path, vid: str, settings: tuple) -> dict | None:
    """The result of an earlier run for this file, if its source, id and settings are unchanged."""
    marker = out / STATE_DIR / f"{vid}.json"
    if not marker.is_file():
        return None
    try:
        prev = json.loads(marker.read_text())
        st = (src / rel).stat()
    except (OSError, ValueError):
        return None
    same = (prev.get("file"), prev.get("size"), prev.get("mtime_ns"), prev.get("num_frames"), prev.get("frame_size"),
            prev.get("audio_length")) == (rel, st.st_size, st.st_mtime_ns, *settings)
    return prev if same and (out / "audio" / f"{vid}.wav").is_file() else None


def _job(args) -> dict:
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


def _expected(folder: Path) -> str:
    return (f"expected a folder of video files ({', '.join(sorted(VIDEO_SUFFIXES))}), directly in it or in "
            f"sub-folders whose names become the labels (e.g. {folder / 'dog' / 'clip1.mp4'})")


def find_videos(folder: str | Path) -> list[Path]:
    """The video files under ``folder``, as :func:`prepare` reads them: recursively (a file's first sub-folder
    is its label: ``folder/dog/a.mp4`` -> ``dog``; a file directly in ``folder`` has none), hidden files and
    folders skipped, a suffix in ``VIDEO_SUFFIXES`` (any case); sorted by path.

    A clear error names the path and what is expected: ``FileNotFoundError`` when it does not exist,
    ``NotADirectoryError`` when it is a file, ``ValueError`` when it holds no video file."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no such folder; {_expected(folder)}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: a file, not a folder; {_expected(folder)}")
    found, others = [], 0
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.suffix.lower() in VIDEO_SUFFIXES:
            found.append(p)
        else:
            others += 1
    if not found:
        raise ValueError(f"{folder}: no video file in it or its sub-folders ({others} other file(s)); "
                         f"{_expected(folder)}")
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def _list_files(src: Path, out: Path, labels_csv) -> list[str]:
    """Paths relative to ``src`` of every non-hidden file, sorted; the labels CSV and ``out`` left out."""
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
    if not files:
        raise ValueError(f"{src}: no files found")
    return sorted(files)


def _run_jobs(todo: list[tuple], workers: int | None, progress: bool) -> dict[str, dict]:
    """Run :func:`process_file` on every job (in worker processes when more than one); rel -> result."""
    results = run_parallel(_job, todo, resolve_workers(workers, len(todo), cap=8), desc="prepare", unit="file",
                           progress=progress, ordered=False, leave=True, torch_threads=1)
    return {r["file"]: r for r in results}


def _entry(rel: str, r: dict, csv_labels: dict | None, num_frames: int) -> dict:
    """The manifest entry of one prepared file (labels from the CSV or the folders, split from the top folder)."""
    parts = Path(rel).parts
    split = parts[0] if len(parts) > 1 and parts[0] in SPLITS else None
    if csv_labels is not None:
        lab = csv_labels.get(rel, csv_labels.get(Path(rel).stem, ""))
    else:
        cls_parts = parts[1:] if split else parts
        lab = cls_parts[0] if len(cls_parts) > 1 else ""
    entry = {"video_id": r["video_id"], "wav": f"audio/{r['video_id']}.wav", "video_path": ".",
             "labels": ",".join(m.strip() for m in lab.split(",") if m.strip()), "num_frames": num_frames}
    if split:
        entry["split"] = split
    entry["source"] = rel
    if r["video_id"] != source_name(rel):
        entry["source_name"] = source_name(rel)
    return entry


def prepare(
    src: str | Path,
    out: str | Path,
    num_frames: int = 10,
    frame_size: int = 224,
    workers: int | None = None,
    labels_csv: str | Path | None = None,
    channel: int | str = 0,
    progress: bool = True,
    audio_length: int = 1024,
) -> dict:
    """Prepare every file under ``src`` into ``out``; returns the report (also written to ``out``).

    ``audio_length``: fbank frames of the model the data is for (base 1024, tiny 256); only the short-audio
    warning depends on it.
    """
    src, out = Path(src), Path(out)
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such folder; {_expected(src)}")
    if not src.is_dir():
        raise NotADirectoryError(f"{src}: not a folder of videos; {_expected(src)}")
    if num_frames < 1 or frame_size < 1 or audio_length < 1:
        raise ValueError(f"--frames, --frame-size and audio_length must be >= 1, got {num_frames}, {frame_size}, "
                         f"{audio_length}")
    files = _list_files(src, out, labels_csv)
    csv_labels = _labels_from_csv(Path(labels_csv)) if labels_csv else None
    for sub in ["audio", STATE_DIR, *(f"frame_{i}" for i in range(num_frames))]:
        (out / sub).mkdir(parents=True, exist_ok=True)
    ids = assign_video_ids(files, case_insensitive=_case_insensitive(out / STATE_DIR))
    results: dict[str, dict] = {}
    todo = []
    for rel in files:
        prev = _previous(src, rel, out, ids[rel], (num_frames, frame_size, audio_length))
        if prev is not None:
            results[rel] = {**prev, "resumed": True}
        else:
            todo.append((src, rel, out, num_frames, frame_size, channel, ids[rel], audio_length))
    if todo:
        frame_transform(frame_size, to_tensor=False)  # torchvision imported once here, not in every forked worker
    results.update(_run_jobs(todo, workers, progress))

    ok = [rel for rel in files if results[rel]["status"] == "ok"]
    entries = [_entry(rel, results[rel], csv_labels, num_frames) for rel in ok]
    write_manifest(out / MANIFEST_NAME, entries)
    mids = sorted({m for e in entries for m in e["labels"].split(",") if m})
    write_labels(out / LABELS_NAME, mids, mids)
    report = {"prepared": [ids[rel] for rel in ok],
              "skipped": [{"file": rel, "reason": results[rel]["reason"]} for rel in files
                          if results[rel]["status"] != "ok"],
              "warnings": [{"file": rel, "warning": w} for rel in ok for w in results[rel].get("warnings", [])],
              "resumed": sum(1 for r in results.values() if r.get("resumed")),
              "renamed": [{"file": rel, "video_id": ids[rel]} for rel in ok if ids[rel] != source_name(rel)],
              "settings": {"num_frames": num_frames, "frame_size": frame_size, "sample_rate": SAMPLE_RATE,
                           "channel": channel, "audio_length": audio_length}}
    (out / REPORT_NAME).write_text(json.dumps(report, indent=1) + "\n")
    return report


__all__ = ["REPORT_NAME", "assign_video_ids", "find_videos", "is_safe_id", "padding_warning", "prepare", "process_file", "source_name",
           "video_id_for"]
