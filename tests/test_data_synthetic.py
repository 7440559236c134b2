"""The default synthetic dataset: layout, determinism (byte-identical builds), attribute rendering, CLI."""

import csv
import hashlib
import json

import numpy as np
import pytest
import torch

from cavmae_lite.cli import main
from cavmae_lite.config import CAVMAEConfig
from cavmae_lite.data import clip_to_inputs, load_dataset, make_synthetic, read_manifest
from cavmae_lite.data import synthetic as S


def _hashes(root):
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "syn"
    make_synthetic(out, seed=3, num_train=12, num_val=4, num_test=8, mp4=1, workers=2, progress=False)
    return out


def test_layout_is_what_prepare_writes(syn):
    m = read_manifest(syn)
    assert len(m.entries) == 24 and [e["split"] for e in m.entries].count("test") == 8
    assert len(m.class_names) == 16 and m.mids[0] == "circle_1" and m.class_names[5] == "2 squares"
    for e in m.entries:
        assert m.wav_path(e).is_file() and all(m.frame_path(e, i).is_file() for i in range(S.NUM_FRAMES))
    assert (syn / "mp4" / "test00000.mp4").is_file()
    info = json.loads((syn / "synthetic.json").read_text())
    assert info["seed"] == 3 and info["eval_frame"] == 2


def test_byte_identical_for_a_seed(syn, tmp_path):
    again = tmp_path / "again"
    make_synthetic(again, seed=3, num_train=12, num_val=4, num_test=8, mp4=1, workers=1, progress=False)
    assert _hashes(syn) == _hashes(again)  # same bytes, whatever the folder or the number of workers
    other = tmp_path / "other"
    make_synthetic(other, seed=4, num_train=12, num_val=4, num_test=8, mp4=0, workers=1, progress=False)
    assert _hashes(other)["audio/train00000.wav"] != _hashes(syn)["audio/train00000.wav"]


def test_items_for_tiny_and_base(syn):
    ds = load_dataset(syn, CAVMAEConfig.tiny(), split="test")
    item = ds[0]
    assert item["audio"].shape == (256, 64) and item["video"].shape == (3, 96, 96)
    assert 0 <= item["label"] < 16 and item["video_id"] == "test00000"
    base = load_dataset(syn, split="val", frames=True)[1]
    assert base["audio"].shape == (1024, 128) and base["frames"].shape == (5, 3, 224, 224)


def test_attributes_are_rendered_in_both_modalities(syn):
    rows = list(csv.DictReader((syn / "attributes.csv").read_text().splitlines()))
    hue = np.array([float(r["hue"]) for r in rows])
    f0 = np.array([float(r["f0_hz"]) for r in rows])
    assert np.corrcoef(hue, np.log(f0))[0, 1] > 0.99  # hue <-> pitch
    size = np.array([float(r["size"]) for r in rows])
    gain = np.array([float(r["gain_db"]) for r in rows])
    assert np.corrcoef(size, gain)[0, 1] > 0.9  # size <-> loudness
    for r in rows:
        assert S.TIMBRES[S.SHAPES.index(r["shape"])] == r["timbre"]  # shape <-> timbre
    # count <-> beeps: the audio envelope has `count` bursts
    for k in (0, 1, 2, 3):
        clip = S.make_clip(0, k)
        env = np.abs(clip["wave"]).reshape(-1, 160).max(1) > 0.5 * np.abs(clip["wave"]).max()
        bursts = int(np.sum(env[1:] & ~env[:-1]) + env[0])
        assert bursts == clip["attr"]["count"] or clip["attr"]["shape"] == 3  # bells decay fast; skip them


def test_mp4_matches_the_stored_clip(syn):
    ds = load_dataset(syn, CAVMAEConfig.tiny(), split="test", frames=True)
    x = clip_to_inputs(syn / "mp4" / "test00000.mp4", CAVMAEConfig.tiny(), num_frames=S.NUM_FRAMES)
    y = ds[0]
    assert x["frames"].shape == y["frames"].shape
    assert (x["video"] - y["video"]).abs().mean() < 0.35  # same scene (different pixel noise, h264)
    other = ds[1]["video"]
    assert (x["video"] - y["video"]).abs().mean() < (x["video"] - other).abs().mean()


def test_cli_make_data(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["make-data", "synthetic", str(out), "--num-train", "3", "--num-val", "1", "--num-test", "2",
                 "--mp4", "0", "--workers", "1", "--frames", "3", "--cache"]) == 0
    assert len(read_manifest(out).entries) == 6
    assert load_dataset(out, CAVMAEConfig.tiny()).source == "cache"
    assert main(["make-data", "synthetic", str(out)]) == 2  # exists: refuses without --force
    assert "exists" in capsys.readouterr().err


def test_default_dir_and_ensure(tmp_path, monkeypatch):
    monkeypatch.setenv("CAVMAE_DATA", str(tmp_path / "env"))
    assert S.default_data_dir() == tmp_path / "env"
    monkeypatch.delenv("CAVMAE_DATA")
    monkeypatch.setenv("CAVMAE_FAST", "1")
    assert S.default_data_dir().name == "synthetic-fast"
    monkeypatch.setenv("CAVMAE_FAST", "0")
    assert S.default_data_dir().name == "synthetic"
    monkeypatch.setattr(S, "FULL_SIZES", (4, 1, 2))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("someone's folder")
    with pytest.raises(ValueError, match="not touching it"):
        S.ensure_default_dataset(tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").is_file()
    p = S.ensure_default_dataset(tmp_path / "d", cache=True)
    ds = load_dataset(p, CAVMAEConfig.tiny(), split="test")
    assert len(ds) == 2 and ds.source == "cache"
    stamp = (p / "manifest.json").stat().st_mtime_ns
    assert S.ensure_default_dataset(p) == p and (p / "manifest.json").stat().st_mtime_ns == stamp
    monkeypatch.setattr(S, "FULL_SIZES", (5, 1, 2))  # the default grew: the old set is kept, with a warning
    with pytest.warns(UserWarning, match="has 4 training clips, the default set now 5"):
        assert S.ensure_default_dataset(p) == p
    assert (p / "manifest.json").stat().st_mtime_ns == stamp
    assert torch.isfinite(ds[0]["audio"]).all()
    # a set from an older generator is rebuilt in place; a foreign dataset is left alone
    info = json.loads((p / "synthetic.json").read_text())
    (p / "synthetic.json").write_text(json.dumps({**info, "generator": "old"}))
    S.ensure_default_dataset(p, cache=False)
    assert json.loads((p / "synthetic.json").read_text())["generator"] == S.GENERATOR
    assert sorted(x.name for x in tmp_path.iterdir()) == ["d", "other"]
    (p / "synthetic.json").unlink()
    stamp = (p / "manifest.json").stat().st_mtime_ns
    assert S.ensure_default_dataset(p, cache=False) == p and (p / "manifest.json").stat().st_mtime_ns == stamp


def test_a_smaller_set_is_the_full_set_split_by_split(tmp_path, monkeypatch):
    """The fast set's test clips are the full set's first test clips (never clips the shipped model trained on)."""
    monkeypatch.setattr(S, "BLOCK_SIZES", (6, 2, 4))
    assert S.first_indices(3, 1) == S.first_indices(6, 2) == {"train": 0, "val": 6, "test": 8}
    assert S.first_indices(10, 1) == {"train": 0, "val": 6, "test": 8}  # a larger train split moves nothing
    # ... its extra clips continue after the full test block: no extra train clip is a val or test clip
    assert [S.train_index(k, 1, 2) for k in (0, 5, 6, 9)] == [0, 5, 12, 15]
    items, _ = S.plan_clips(10, 2, 4)
    assert len({index for index, _, _ in items}) == len(items) == 16
    small = make_synthetic(tmp_path / "small", seed=0, num_train=3, num_val=1, num_test=2, mp4=0, workers=1,
                           progress=False)
    full_test = make_synthetic(tmp_path / "full", seed=0, num_train=6, num_val=2, num_test=4, mp4=0, workers=1,
                               progress=False, only="test")
    large = make_synthetic(tmp_path / "large", seed=0, num_train=8, num_val=2, num_test=4, mp4=0, workers=1,
                           progress=False)
    hs, hf, hl = _hashes(small), _hashes(full_test), _hashes(large)
    assert all(hl[name] == h for name, h in hf.items() if name.endswith((".wav", ".jpg")))
    assert hl["audio/train00002.wav"] == hs["audio/train00002.wav"]
    assert hl["audio/train00007.wav"] not in {h for n, h in hl.items() if "test" in n or "val" in n}
    for name in ("audio/test00000.wav", "audio/test00001.wav", "frame_2/test00001.jpg"):
        assert hs[name] == hf[name]
    assert hs["audio/train00000.wav"] != hs["audio/test00000.wav"]
    # a set stamped with the older numbering (no first_index) is rebuilt
    info = json.loads((small / "synthetic.json").read_text())
    assert info["first_index"] == {"train": 0, "val": 6, "test": 8}
    (small / "synthetic.json").write_text(json.dumps({k: v for k, v in info.items() if k != "first_index"}))
    S.ensure_default_dataset(small, cache=False)
    assert "first_index" in json.loads((small / "synthetic.json").read_text())
