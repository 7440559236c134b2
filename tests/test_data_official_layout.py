"""Data laid out for the official code: absolute and relative paths, ten frames with one file missing, the cache."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cavmae_lite.config import CAVMAEConfig
from cavmae_lite.data import build_cache, load_dataset, read_manifest, write_wav
from cavmae_lite.data.cache import CACHE_VERSION, cache_dir
from tests.media import tone

TINY = CAVMAEConfig.tiny()
IDS = ["--4gqARaEJE", "DWKN92ewsJ_"]


def _official_tree(root, missing=()):
    """AudioSet-style tree: audio/<id>.flac-like wavs, frames/frame_<i>/<id>.jpg with frame i filled with grey 20 i.

    ``missing``: (id, i) frame files not written. Returns the (audio folder, frame folder).
    """
    audio, frames = root / "audio", root / "frames"
    audio.mkdir(parents=True)
    for k, vid in enumerate(IDS):
        write_wav(audio / f"{vid}.wav", tone(1.0, freq=300.0 + 200 * k))
        for i in range(10):
            (frames / f"frame_{i}").mkdir(parents=True, exist_ok=True)
            if (vid, i) not in missing:
                Image.fromarray(np.full((40, 50, 3), 20 * i + k, np.uint8)).save(frames / f"frame_{i}" / f"{vid}.jpg",
                                                                                  quality=100)
    return audio, frames


def _datafile(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": entries}))
    return path


def _frame_value(video: torch.Tensor) -> float:
    """The grey level (0..255) of a normalised frame filled with one value."""
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return float(((video.mean(dim=(1, 2)) * std + mean) * 255).mean())


def test_absolute_and_relative_paths_give_the_same_items(tmp_path):
    audio, frames = _official_tree(tmp_path / "as")
    absolute = _datafile(tmp_path / "lists" / "abs.json", [
        {"video_id": v, "wav": str(audio / f"{v}.wav"), "video_path": str(frames) + "/", "labels": "/m/09x0r"}
        for v in IDS])
    relative = _datafile(tmp_path / "lists" / "rel.json", [  # relative to the JSON's folder
        {"video_id": v, "wav": f"../as/audio/{v}.wav", "video_path": "../as/frames", "labels": "/m/09x0r"} for v in IDS])
    a, r = load_dataset(absolute, TINY, cache=False), load_dataset(relative, TINY, cache=False)
    assert a.video_ids == r.video_ids == IDS and a.class_names == ["/m/09x0r"]
    for i in range(2):
        assert torch.equal(a[i]["audio"], r[i]["audio"]) and torch.equal(a[i]["video"], r[i]["video"])
        assert round(_frame_value(a[i]["video"])) == 20 * 5 + i  # no num_frames key: 10 frames, middle = 5
    moved = tmp_path / "elsewhere" / "abs.json"  # absolute paths do not depend on where the JSON is
    _datafile(moved, json.loads(absolute.read_text())["data"])
    assert torch.equal(load_dataset(moved, TINY, cache=False)[1]["video"], a[1]["video"])


@pytest.mark.parametrize(("missing", "expected"), [(8, 5), (5, 4), (9, 5)])
def test_cache_keeps_the_manifest_frame_count_so_cached_and_raw_items_agree(tmp_path, missing, expected):
    audio, frames = _official_tree(tmp_path / "as", missing={(IDS[0], missing)})
    data = _datafile(tmp_path / "as" / "train.json", [
        {"video_id": v, "wav": str(audio / f"{v}.wav"), "video_path": str(frames), "labels": "x"} for v in IDS])
    d = build_cache(data, TINY, workers=1, progress=False)
    assert np.load(d / "num_frames.npy").tolist() == [10, 10]  # the manifest's count, not the 9 files found
    assert json.loads((d / "meta.json").read_text())["version"] == CACHE_VERSION
    raw = load_dataset(data, TINY, cache=False, frames=True)
    cached = load_dataset(data, TINY, cache=True, frames=True)
    assert cached.source == "cache" and raw.num_frames(0) == cached.num_frames(0) == 10
    assert round(_frame_value(raw[0]["video"])) == round(_frame_value(cached[0]["video"])) == 20 * expected
    assert raw[0]["frames"].shape == cached[0]["frames"].shape == (10, 3, 96, 96)
    assert torch.allclose(raw[0]["frames"], cached[0]["frames"], atol=1e-6)
    # the missing file's stand-in is the nearest lower frame, in both
    assert round(_frame_value(cached[0]["frames"][missing])) == 20 * (missing - 1)


def test_cache_of_an_older_format_is_stale(tmp_path):
    audio, frames = _official_tree(tmp_path / "as")
    data = _datafile(tmp_path / "as" / "train.json", [
        {"video_id": v, "wav": str(audio / f"{v}.wav"), "video_path": str(frames), "labels": "x"} for v in IDS])
    d = build_cache(data, TINY, workers=1, progress=False)
    assert d == cache_dir(read_manifest(data), TINY)
    meta = json.loads((d / "meta.json").read_text())
    (d / "meta.json").write_text(json.dumps({**meta, "version": CACHE_VERSION - 1}))
    with pytest.warns(UserWarning, match=f"cache format {CACHE_VERSION - 1}"):
        assert load_dataset(data, TINY).source == "raw"


def test_cli_reads_an_official_datafile_with_absolute_paths_and_no_split(tmp_path, capsys):
    from cavmae_lite.cli import main

    audio, frames = _official_tree(tmp_path / "as")
    lists = tmp_path / "lists"
    data = _datafile(lists / "eval.json", [
        {"video_id": v, "wav": str(audio / f"{v}.wav"), "video_path": str(frames), "labels": "/m/a,/m/b"} for v in IDS])
    (lists / "class_labels_indices.csv").write_text('index,mid,display_name\n0,/m/a,"Speech"\n1,/m/b,"Dog"\n')
    weights = "cavmae_lite/weights/tiny.safetensors"
    assert main(["evaluate", "retrieval", "--checkpoint", weights, "--data", str(data), "--labels",
                 str(lists / "class_labels_indices.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 2
    assert main(["embed", str(data), str(tmp_path / "emb.npz"), "--checkpoint", weights]) == 0
    emb = np.load(tmp_path / "emb.npz")
    assert emb["video_ids"].tolist() == IDS and emb["audio"].shape[0] == 2
