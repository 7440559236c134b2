"""Manifests in the official datafile format, and the label CSV.

``manifest.json`` = ``{"data": [{"video_id", "wav", "video_path", "labels"}, ...]}`` where ``wav`` is the
audio file, ``video_path`` the folder holding ``frame_<i>/<video_id>.jpg`` and ``labels`` a comma-separated
list of label ``mid``s. cavmae-lite writes paths **relative to the manifest's folder** (so a dataset can be
moved, and builds are byte-identical wherever they are made) and adds optional keys the official code
ignores: ``split`` ("train"/"val"/"test"), ``num_frames`` (default 10, the official count), and from
``prepare`` ``source`` (the video's path relative to its folder) and ``source_name`` (the original file name,
only where it could not be the id verbatim). Absolute paths (as the official scripts write them) are read
unchanged; a relative path is resolved against the JSON's folder (the official loader resolves it against its
working directory).

``labels.csv`` = header ``index,mid,display_name`` then one row per class, as the official label CSVs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.csv"
SPLITS = ("train", "val", "test")
OFFICIAL_NUM_FRAMES = 10


@dataclass
class Manifest:
    """A read manifest: entries with paths resolved, class list, and where it came from."""

    path: Path
    entries: list[dict]
    mids: list[str] = field(default_factory=list)
    class_names: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.path.parent

    def fingerprint(self) -> str:
        return hashlib.sha1(self.path.read_bytes()).hexdigest()[:16]

    def wav_path(self, entry: dict) -> Path:
        return resolve(self.root, entry["wav"])

    def frame_path(self, entry: dict, i: int) -> Path:
        return resolve(self.root, entry.get("video_path", ".")) / f"frame_{i}" / f"{entry['video_id']}.jpg"

    def num_frames(self, entry: dict) -> int:
        return int(entry.get("num_frames", OFFICIAL_NUM_FRAMES))


def resolve(root: Path, p: str) -> Path:
    q = Path(p)
    return q if q.is_absolute() else root / q


def manifest_path(data: str | Path) -> Path:
    """A dataset folder (holding manifest.json) or a datafile JSON -> the JSON's path."""
    p = Path(data)
    if p.is_dir():
        p = p / MANIFEST_NAME
    if not p.is_file():
        raise FileNotFoundError(
            f"no dataset at {data}: expected a folder with {MANIFEST_NAME} (from `cavmae-lite prepare` or "
            "`cavmae-lite make-data`) or an official datafile JSON"
        )
    return p


def read_labels(path: str | Path) -> tuple[list[str], list[str]]:
    """``labels.csv`` -> (mids, display names) in index order."""
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    if rows and not {"index", "mid", "display_name"} <= set(rows[0]):
        raise ValueError(f"{path}: a label CSV needs the columns index,mid,display_name; got {list(rows[0])}")
    rows.sort(key=lambda r: int(r["index"]))
    return [r["mid"] for r in rows], [r["display_name"] for r in rows]


def write_labels(path: str | Path, mids: list[str], names: list[str] | None = None) -> None:
    names = names or mids
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["index", "mid", "display_name"])
    for i, (m, n) in enumerate(zip(mids, names)):
        w.writerow([i, m, n])
    Path(path).write_text(buf.getvalue())


def read_manifest(data: str | Path, label_csv: str | Path | None = None) -> Manifest:
    """Read a dataset folder or datafile JSON; the label CSV defaults to ``labels.csv`` beside the JSON.

    Without any label CSV, the classes are the sorted set of mids found in the entries.
    """
    path = manifest_path(data)
    try:
        obj = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    entries = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'{path}: expected {{"data": [{{"video_id", "wav", "video_path", "labels"}}, ...]}}')  # noqa: TRY004
    for k, e in enumerate(entries):
        missing = [key for key in ("video_id", "wav") if key not in e]
        if missing:
            raise ValueError(f"{path}: entry {k} lacks {missing}")
    csv_path = Path(label_csv) if label_csv else path.parent / LABELS_NAME
    if csv_path.is_file():
        mids, names = read_labels(csv_path)
    else:
        mids = sorted({m for e in entries for m in split_labels(e.get("labels", ""))})
        names = list(mids)
    return Manifest(path, entries, mids, names)


def split_labels(labels: str) -> list[str]:
    return [m.strip() for m in str(labels or "").split(",") if m.strip()]


def write_manifest(path: str | Path, entries: list[dict]) -> None:
    """Write ``{"data": entries}``, one entry per line (diff-friendly, deterministic)."""
    lines = ",\n".join("  " + json.dumps(e, sort_keys=False) for e in entries)
    Path(path).write_text('{"data": [\n' + lines + ("\n" if entries else "") + "]}\n")


__all__ = [
    "LABELS_NAME",
    "MANIFEST_NAME",
    "SPLITS",
    "Manifest",
    "manifest_path",
    "read_labels",
    "read_manifest",
    "split_labels",
    "write_labels",
    "write_manifest",
]
