"""``find_videos``: the video files of a folder as ``prepare`` reads them (sub-folders too, their names the labels),
with errors that name the path and what is expected (notebook 08 lists your folder with it)."""

import pytest

from cavmae_lite.data import load_dataset
from cavmae_lite.data.prepare import find_videos, prepare
from tests.helpers import micro_config
from tests.media import moving_frames, tone, write_video


def test_sub_folders_hidden_files_and_suffixes(tmp_path):
    for rel in ("top.mp4", "dog/b.MOV", "dog/a.mp4", "cat/deeper/c.webm", "cat/notes.txt", ".hidden/x.mp4",
                "dog/.y.mp4", "README.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).touch()
    found = find_videos(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "cat/deeper/c.webm", "dog/a.mp4", "dog/b.MOV", "top.mp4"]


def test_clear_errors_name_the_path_and_what_is_expected(tmp_path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError, match=r"no_such_folder: no such folder; expected a folder of video files"):
        find_videos(missing)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        prepare(missing, tmp_path / "out")
    (tmp_path / "clip.mp4").touch()
    with pytest.raises(NotADirectoryError, match=r"clip.mp4: a file, not a folder.*sub-folders whose names"):
        find_videos(tmp_path / "clip.mp4")
    empty = tmp_path / "empty"
    (empty / "dog").mkdir(parents=True)
    (empty / "dog" / "notes.txt").touch()
    with pytest.raises(ValueError, match=r"no video file in it or its sub-folders \(1 other file\(s\)\)"):
        find_videos(empty)


def test_sub_folder_names_become_the_labels_of_the_prepared_dataset(tmp_path):
    micro = micro_config()
    src = tmp_path / "src"
    for rel in ("dog/a.mp4", "dog/b.mp4", "cat/c.mp4"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(src / rel, moving_frames(8, 32, 32), audio=tone(0.6, 16000)[None])
    videos = find_videos(src)
    report = prepare(src, tmp_path / "out", num_frames=2, frame_size=micro.img_size, workers=1, progress=False,
                     audio_length=micro.audio_length)
    assert sorted(report["prepared"]) == sorted(p.stem for p in videos) and not report["skipped"]
    ds = load_dataset(tmp_path / "out", config=micro)
    assert ds.class_names == ["cat", "dog"]
    labels = {ds.video_ids[i]: ds.class_names[ds[i]["label"]] for i in range(len(ds))}
    assert labels == {p.stem: p.parent.name for p in videos}
