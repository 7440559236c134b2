"""`prepare`: mixed real-world-like videos plus every kind of bad input (issue §5), built on the fly."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from cavmae_lite.cli import main
from cavmae_lite.config import CAVMAEConfig
from cavmae_lite.data import load_dataset, read_manifest
from cavmae_lite.data.prepare import assign_video_ids, is_safe_id, padding_warning, prepare, source_name, video_id_for
from tests.media import moving_frames, tone, write_video

GOOD = {
    # 44.1 kHz stereo AAC + h264, landscape
    "dog/a.mp4": {"frames": moving_frames(20, 48, 64), "audio": np.stack([tone(2, 44100), tone(2, 44100, 880)]),
                      "sample_rate": 44100},
    # RGBA frames (png codec), odd portrait size 37x61, 8 kHz 16-bit PCM
    "dog/b.mov": {"frames": moving_frames(12, 61, 37, 4), "audio": tone(1.5, 8000)[None], "sample_rate": 8000,
                      "vcodec": "png", "pix_fmt": "rgba", "frame_format": "rgba", "acodec": "pcm_s16le"},
    # grayscale frames (ffv1), 22.05 kHz
    "cat/c.avi": {"frames": moving_frames(12, 33, 45, 1), "audio": tone(1.5, 22050)[None], "sample_rate": 22050,
                      "vcodec": "ffv1", "pix_fmt": "gray", "frame_format": "gray", "acodec": "pcm_s16le"},
    # vp9 + opus 48 kHz stereo in webm
    "cat/d.webm": {"frames": moving_frames(12, 64, 48), "audio": np.stack([tone(1.5, 48000)] * 2), "sample_rate": 48000,
                       "vcodec": "libvpx-vp9", "acodec": "libopus"},
    # tiny 6x8 frames, 6-channel 24-bit PCM at 48 kHz
    "cat/e.mov": {"frames": moving_frames(12, 8, 6), "audio": np.stack([tone(1.5, 48000)] * 6), "sample_rate": 48000,
                      "vcodec": "mpeg4", "acodec": "pcm_s24le"},
    # only 3 frames (fewer than asked): kept, frames repeat, with a warning
    "bird/f.mkv": {"frames": moving_frames(3, 32, 32), "audio": tone(1.0)[None], "vcodec": "mpeg4", "acodec": "pcm_s16le"},
    # silent audio: kept, with a warning
    "bird/silent.mp4": {"frames": moving_frames(10, 32, 32), "audio": np.zeros((1, 16000), np.float32)},
}
BAD = {
    "bird/noaudio.mp4": ({"frames": moving_frames(5, 32, 32), "audio": None}, "has no audio track"),
    "bird/short.mkv": ({"frames": moving_frames(5, 32, 32), "audio": tone(0.01)[None], "vcodec": "mpeg4",
                            "acodec": "pcm_s16le"}, "shorter than one 25 ms fbank window"),
    "bird/nan.mkv": ({"frames": moving_frames(5, 32, 32), "vcodec": "mpeg4", "acodec": "pcm_f32le",
                          "audio": np.where(np.arange(16000) % 100 == 0, np.nan, tone(1.0))[None].astype(np.float32)},
                     "non-finite"),
    "bird/audio_only.m4a": ({"frames": None, "audio": tone(1.0)[None]}, "has no video stream"),
}


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    for rel, kw in {**GOOD, **{k: v[0] for k, v in BAD.items()}}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / rel, fps=10, **kw)
    good = (root / "dog/a.mp4").read_bytes()
    (root / "dog/truncated.mp4").write_bytes(good[: len(good) // 2])
    webm = (root / "cat/d.webm").read_bytes()
    (root / "cat/cut.webm").write_bytes(webm[: len(webm) * 2 // 3])  # truncated but readable: kept, warned
    (root / "dog/corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    (root / "dog/empty.mkv").write_bytes(b"")
    sf.write(root / "bird/sound.wav", tone(1.0), 16000)  # audio-only wav
    (root / "notes.txt").write_text("not a video\n")
    (root / ".hidden.mp4").write_bytes(good)  # hidden files are ignored
    return root


@pytest.fixture(scope="module")
def prepared(src, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    report = prepare(src, out, num_frames=4, frame_size=64, workers=2, progress=False)
    return out, report


def test_every_good_clip_prepared_every_bad_file_reported(src, prepared):
    out, report = prepared
    assert sorted(report["prepared"]) == sorted(video_id_for(r) for r in [*GOOD, "cat/cut.webm"])
    skipped = {s["file"]: s["reason"] for s in report["skipped"]}
    for rel, (_, reason) in BAD.items():
        assert reason in skipped[rel], (rel, skipped[rel])
    assert "file is empty" in skipped["dog/empty.mkv"]
    assert "cannot open" in skipped["dog/corrupt.mp4"]
    assert "dog/truncated.mp4" in skipped  # mp4 cut before its index: unreadable
    assert "has no video stream" in skipped["bird/sound.wav"]
    assert "notes.txt" in skipped
    assert ".hidden.mp4" not in skipped and len(skipped) + len(report["prepared"]) == len(GOOD) + len(BAD) + 6
    assert all(str(src) not in r for r in skipped.values())  # reasons do not repeat the path
    warn = {(w["file"], w["warning"].split(" ")[0]) for w in report["warnings"]}
    assert ("bird/f.mkv", "only") in warn
    assert any(w["file"] == "bird/silent.mp4" and "silent" in w["warning"] for w in report["warnings"])
    assert any(f == "cat/cut.webm" for f, _ in warn), report["warnings"]
    on_disk = json.loads((out / "prepare_report.json").read_text())
    assert on_disk["prepared"] == report["prepared"]


def test_outputs_are_official_layout_and_load(prepared):
    out, _ = prepared
    m = read_manifest(out)
    assert m.class_names == ["bird", "cat", "dog"]
    assert len(m.entries) == len(GOOD) + 1
    assert (out / "labels.csv").read_text().splitlines()[0] == "index,mid,display_name"
    for e in m.entries:
        assert set(e) >= {"video_id", "wav", "video_path", "labels"}
        info = sf.info(str(m.wav_path(e)))
        assert info.samplerate == 16000 and info.channels == 1
        for i in range(4):
            assert m.frame_path(e, i).is_file()
    ds = load_dataset(out, frames=True)
    for i in range(len(ds)):
        item = ds[i]
        assert item["audio"].shape == (1024, 128) and torch.isfinite(item["audio"]).all()
        assert item["video"].shape == (3, 224, 224) and item["frames"].shape == (4, 3, 224, 224)
        assert ds.class_names[item["label"]] == m.entries[i]["labels"]
    # no constant tensors: every prepared clip has real picture content varying over frames
    vid = ds.video_ids.index(video_id_for("dog/a.mp4"))
    fr = ds[vid]["frames"]
    assert fr[0].mean() < fr[-1].mean()


def test_resume_reuses_finished_clips(src, prepared, tmp_path):
    out, first = prepared
    again = prepare(src, out, num_frames=4, frame_size=64, workers=1, progress=False)
    assert again["resumed"] == len(first["prepared"]) and again["prepared"] == first["prepared"]


def test_labels_csv_and_split_folders(tmp_path):
    src = tmp_path / "src"
    for rel in ("train/x/one.mp4", "test/y/two.mp4"):
        (src / rel).parent.mkdir(parents=True)
        write_video(src / rel, moving_frames(5, 32, 32), audio=tone(1.0)[None])
    m = read_manifest(prepare_and_path(src, tmp_path / "o1"))
    assert {e["split"] for e in m.entries} == {"train", "test"} and m.class_names == ["x", "y"]
    assert len(load_dataset(tmp_path / "o1", CAVMAEConfig.tiny(), split="test")) == 1
    (tmp_path / "labels.csv").write_text('file,labels\ntrain/x/one.mp4,"a,b"\ntwo,c\n')
    prepare(src, tmp_path / "o2", num_frames=2, frame_size=32, workers=1, labels_csv=tmp_path / "labels.csv",
            progress=False)
    ds = load_dataset(tmp_path / "o2", CAVMAEConfig.tiny())
    assert ds.class_names == ["a", "b", "c"]
    assert ds[ds.video_ids.index(video_id_for("train/x/one.mp4"))]["labels"].tolist() == [1, 1, 0]


def prepare_and_path(src, out):
    prepare(src, out, num_frames=2, frame_size=32, workers=1, progress=False)
    return out


def test_cli_exit_status(src, tmp_path, capsys):
    assert main(["prepare", str(src / "cat"), str(tmp_path / "ok"), "--frames", "2", "--frame-size", "32",
                 "--workers", "1", "--quiet", "--cache", "--config", "tiny"]) == 0
    assert (tmp_path / "ok" / "manifest.json").is_file()
    assert load_dataset(tmp_path / "ok", CAVMAEConfig.tiny()).source == "cache"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.mp4").write_bytes(b"junk")
    assert main(["prepare", str(bad), str(tmp_path / "none"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "no clip could be prepared" in err
    assert json.loads((tmp_path / "none" / "prepare_report.json").read_text())["skipped"][0]["file"] == "x.mp4"
    assert main(["prepare", str(bad), str(tmp_path / "none"), "--channel", "left"]) == 2
    assert "--channel must be an index (0, 1, ...) or 'mean', got 'left'" in capsys.readouterr().err


# ----- ids: verbatim when safe, changed (and recorded) only when unsafe or shared ----------------------------

YOUTUBE_STYLE = ["DWKN92ewsJ_", "--4gqARaEJE", "_-x-_", "-a_b-", "a.b_30.000", "Zz9_-.", "0"]


def _clip(path, seconds=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, moving_frames(4, 16, 16), audio=tone(seconds)[None], vcodec="mpeg4", acodec="pcm_s16le")


def test_youtube_style_ids_kept_verbatim_and_the_cli_reads_the_manifest_without_splits(tmp_path, capsys):
    for name in YOUTUBE_STYLE:
        _clip(tmp_path / "src" / f"{name}.mkv")
    report = prepare(tmp_path / "src", tmp_path / "out", num_frames=2, frame_size=32, workers=1, progress=False)
    m = read_manifest(tmp_path / "out")
    assert sorted(e["video_id"] for e in m.entries) == sorted(YOUTUBE_STYLE) == sorted(report["prepared"])
    assert all("source_name" not in e and "split" not in e for e in m.entries) and report["renamed"] == []
    for e in m.entries:
        assert m.wav_path(e).name == e["video_id"] + ".wav" and m.frame_path(e, 1).is_file()
    weights = "cavmae_lite/weights/tiny.safetensors"
    assert main(["evaluate", "retrieval", "--checkpoint", weights, "--data", str(tmp_path / "out" / "manifest.json"),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == len(YOUTUBE_STYLE)


def test_unsafe_or_shared_names_changed_uniquely_with_the_original_recorded(tmp_path):
    rels = ["my clip.mp4", "my?clip.mp4", "my_clip.mp4", "café.mp4", "a\\b.mp4", "dog/a.mp4", "cat/a.mp4",
            "ok-id_.mp4", "x" * 250 + ".mp4"]
    ids = assign_video_ids(rels)
    assert ids["ok-id_.mp4"] == "ok-id_" and ids["my_clip.mp4"] == "my_clip"  # safe and unshared: verbatim
    changed = [r for r in rels if r not in ("ok-id_.mp4", "my_clip.mp4")]
    assert all(ids[r] != source_name(r) and is_safe_id(ids[r]) for r in changed), ids
    assert len(set(ids.values())) == len(rels)  # "my clip" and "my?clip" both sanitise to my_clip: no collision
    assert ids["my clip.mp4"].startswith("my_clip-") and ids["dog/a.mp4"].startswith("a-")
    assert assign_video_ids(rels) == ids  # deterministic
    folded = assign_video_ids(["Ab.mp4", "ab.mp4", "CD.mp4"], case_insensitive=True)  # e.g. macOS
    assert folded["CD.mp4"] == "CD" and len({v.casefold() for v in folded.values()}) == 3
    assert assign_video_ids(["Ab.mp4", "ab.mp4"]) == {"Ab.mp4": "Ab", "ab.mp4": "ab"}  # case-sensitive OUT

    for rel in ("my clip.mp4", "my?clip.mp4", "café.mp4", "dog/a.mp4", "cat/a.mp4", "keep_me-.mp4"):
        _clip(tmp_path / "src" / rel)
    report = prepare(tmp_path / "src", tmp_path / "out", num_frames=2, frame_size=32, workers=1, progress=False)
    m = read_manifest(tmp_path / "out")
    by_source = {e["source"]: e for e in m.entries}
    assert by_source["keep_me-.mp4"]["video_id"] == "keep_me-" and "source_name" not in by_source["keep_me-.mp4"]
    for rel in ("my clip.mp4", "my?clip.mp4", "café.mp4", "dog/a.mp4", "cat/a.mp4"):
        assert by_source[rel]["source_name"] == source_name(rel) and by_source[rel]["video_id"] != source_name(rel)
    assert len({e["video_id"] for e in m.entries}) == 6 and len(report["renamed"]) == 5
    assert {c for c in m.class_names} == {"cat", "dog"}


# ----- short clips: the warning says how much of the model's fbank is padding --------------------------------


@pytest.mark.parametrize(("audio_length", "expected"), [(1024, "97 % of the 10.24-s fbank is padding"),
                                                       (256, "89 % of the 2.56-s fbank is padding")])
def test_short_clip_warning_states_the_padding_fraction(tmp_path, audio_length, expected):
    _clip(tmp_path / "src" / "short.mkv", seconds=0.3)  # 4800 samples -> 28 fbank frames
    _clip(tmp_path / "src" / "long.mkv", seconds=2.6)  # 258 frames: fills the tiny size, 75 % padding at base
    report = prepare(tmp_path / "src", tmp_path / "out", num_frames=2, frame_size=32, workers=1, progress=False,
                     audio_length=audio_length)
    warned = {w["file"]: w["warning"] for w in report["warnings"] if "padding" in w["warning"]}
    assert expected in warned["short.mkv"] and "0.30 s (28 fbank frames" in warned["short.mkv"]
    if audio_length == 1024:
        assert "75 % of the 10.24-s fbank is padding" in warned["long.mkv"]
    else:
        assert "long.mkv" not in warned  # 258 >= 256 frames: nothing padded
    assert padding_warning(160000, 1024) is None  # a 10-s clip: 2.5 % padding, no warning


def test_cli_short_clip_warning_uses_the_config_size(tmp_path, capsys):
    _clip(tmp_path / "src" / "short.mkv", seconds=0.3)
    assert main(["prepare", str(tmp_path / "src"), str(tmp_path / "out"), "--frames", "2", "--frame-size", "32",
                 "--workers", "1", "--quiet", "--config", "tiny"]) == 0
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert any("89 % of the 2.56-s fbank is padding" in w["warning"] for w in report["warnings"])
    assert report["settings"]["audio_length"] == 256
