"""load_dataset: items, splits, train/eval frames, the memory-mapped cache, official datafiles, stats."""

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cavmae_lite.cli import main
from cavmae_lite.config import CAVMAEConfig
from cavmae_lite.data import (
    AUDIOSET_MEAN,
    build_cache,
    load_dataset,
    load_fbank,
    load_image,
    make_synthetic,
    preprocess_frame,
    read_manifest,
)

TINY = CAVMAEConfig.tiny()


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    out = tmp_path_factory.mktemp("d") / "syn"
    make_synthetic(out, seed=1, num_train=10, num_val=2, num_test=6, mp4=0, workers=1, progress=False)
    return out


def test_contract_attributes(syn):
    ds = load_dataset(syn, TINY, split="train", cache=False)
    assert len(ds) == 10 and ds.num_classes == 16 and len(ds.class_names) == 16
    assert ds.video_ids[0] == "train00000" and ds.config is TINY and ds.source == "raw"
    assert ds.labels.shape == (10,)
    assert len(load_dataset(syn, TINY, split="test")) == 6 and len(load_dataset(syn, TINY)) == 18
    with pytest.raises(ValueError, match="split"):
        load_dataset(syn, TINY, split="dev")


def test_eval_item_is_the_processed_middle_frame(syn):
    ds = load_dataset(syn, TINY, split="test", cache=False)
    item = ds[2]
    m = read_manifest(syn)
    e = m.entries[ds.rows[2]]
    assert item["index"] == 2 and item["video_id"] == e["video_id"]
    assert torch.equal(item["video"], preprocess_frame(load_image(m.frame_path(e, 2)), 96))
    assert torch.allclose(item["audio"], load_fbank(m.wav_path(e), 256, TINY.num_mel_bins))
    assert item["labels"].sum() == 1 and item["labels"][item["label"]] == 1
    assert torch.equal(ds[2]["video"], item["video"]) and torch.equal(ds[2]["audio"], item["audio"])


def test_train_items_vary_and_are_reproducible(syn):
    ds = load_dataset(syn, TINY, split="train", train=True, cache=False)
    torch.manual_seed(0)
    a = [ds[0] for _ in range(8)]
    assert len({round(float(x["video"].sum()), 2) for x in a}) > 1  # random frame per access
    assert not torch.equal(a[0]["audio"], a[1]["audio"])  # noise + roll
    torch.manual_seed(0)
    b = [ds[0] for _ in range(8)]
    assert all(torch.equal(x["audio"], y["audio"]) and torch.equal(x["video"], y["video"]) for x, y in zip(a, b))
    quiet = load_dataset(syn, TINY, split="train", train=True, noise=False, cache=False)
    assert torch.equal(quiet[0]["audio"], load_dataset(syn, TINY, split="train", cache=False)[0]["audio"])


def test_cache_matches_raw_and_is_used_automatically(syn):
    raw = load_dataset(syn, TINY, frames=True, cache=False)
    with pytest.raises(FileNotFoundError, match="no cache"):
        load_dataset(syn, TINY, cache=True)
    d = build_cache(syn, TINY, workers=2, progress=False)
    assert np.load(d / "audio.npy", mmap_mode="r").dtype == np.float16
    assert np.load(d / "frames.npy", mmap_mode="r").shape == (18, 5, 96, 96, 3)
    cached = load_dataset(syn, TINY, frames=True)
    assert cached.source == "cache"
    for i in (0, 7, 17):
        r, c = raw[i], cached[i]
        assert torch.allclose(r["audio"], c["audio"], atol=4e-3)
        assert torch.equal(r["video"], c["video"]) and torch.equal(r["frames"], c["frames"])
        assert r["label"] == c["label"] and r["video_id"] == c["video_id"]
    # other normalisation statistics are applied on the fly
    other = load_dataset(syn, TINY, norm=(-4.0, 3.0))
    assert torch.allclose(other[0]["audio"], (raw[0]["audio"] * 4.4849 + AUDIOSET_MEAN + 4.0) / 3.0, atol=1e-2)
    # base sizes have no cache yet: raw files
    assert load_dataset(syn).source == "raw"
    batch = next(iter(DataLoader(load_dataset(syn, TINY, split="train", train=True), batch_size=4)))
    assert batch["audio"].shape == (4, 256, 64) and batch["video"].shape == (4, 3, 96, 96)
    assert batch["label"].dtype == torch.int64 and batch["video_id"] == [f"train{k:05d}" for k in range(4)]
    default = next(iter(DataLoader(load_dataset(syn, TINY, split="train"), batch_size=2)))
    assert default["video"].shape == (2, 3, 96, 96)
    # spawned workers receive the dataset by pickle: the cache travels by path, not by value
    blob = pickle.dumps(cached)
    assert len(blob) < 100_000
    again = pickle.loads(blob)
    assert again.source == "cache" and torch.equal(again[3]["video"], cached[3]["video"])


def test_stale_cache_is_ignored(syn, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(syn, copy)
    build_cache(copy, TINY, workers=1, progress=False)
    m = json.loads((copy / "manifest.json").read_text())
    m["data"] = m["data"][:5]
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.warns(UserWarning, match="stale"):
        ds = load_dataset(copy, TINY)
    assert ds.source == "raw" and len(ds) == 5


def test_official_datafile_with_absolute_paths(syn, tmp_path):
    m = read_manifest(syn)
    entries = [{"video_id": e["video_id"], "wav": str(m.wav_path(e)), "video_path": str(syn),
                "labels": e["labels"]} for e in m.entries[:4]]
    (tmp_path / "eval.json").write_text(json.dumps({"data": entries}))
    (syn / "frame_4" / f"{entries[0]['video_id']}.jpg").rename(tmp_path / "moved.jpg")  # a missing frame
    try:
        ds = load_dataset(tmp_path / "eval.json", TINY, label_csv=syn / "labels.csv", frames=True)
        assert len(ds) == 4 and ds.num_classes == 16
        item = ds[0]  # official default: 10 frames -> middle frame 5 (missing) walks down to frame 4 -> 3
        assert item["frames"].shape == (10, 3, 96, 96)
        assert torch.equal(item["video"], item["frames"][3])
    finally:
        (tmp_path / "moved.jpg").rename(syn / "frame_4" / f"{entries[0]['video_id']}.jpg")


def test_missing_inputs_raise_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no dataset"):
        load_dataset(tmp_path)
    (tmp_path / "manifest.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="expected"):
        load_dataset(tmp_path)


def test_stats_command(syn, capsys):
    assert main(["stats", str(syn), "--max-clips", "5"]) == 0
    s = json.loads((syn / "stats.json").read_text())
    assert s["num_clips"] == 5 and -20 < s["mean"] < 5 and s["std"] > 0
    ds = load_dataset(syn, TINY, norm="dataset", cache=False)
    assert (ds.mean, ds.std) == (s["mean"], s["std"])
    assert "fbank mean" in capsys.readouterr().out
    assert main(["cache", str(syn), "--config", "tiny", "--workers", "1"]) == 0
