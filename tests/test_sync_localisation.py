"""Temporal localisation for CAV-MAE Sync: what each moment of an events clip shows, the localisation report,
and training with several moments of a clip per step (the clip's other moments as negatives)."""

from __future__ import annotations

import json

import pytest
import torch

from cavmae_lite.cli.main import main
from cavmae_lite.config import CAVMAESyncConfig
from cavmae_lite.data import make_synthetic
from cavmae_lite.data.pairs import load_pair_dataset
from cavmae_lite.data.synthetic import frame_events, plan_clips
from cavmae_lite.data.synthetic_clip import frame_times, lit_object, make_clip
from cavmae_lite.evaluate.sync_retrieval import localisation_report


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("ev") / "d", 0, 6, 2, 3, num_frames=16, mp4=0, workers=1,
                          progress=False, events=True)


def test_frame_events_are_the_rendered_lit_objects(events):
    ids = ["train00004", "val00001", "test00002"]
    got = frame_events(events, ids, 16)
    index = {vid: i for i, vid, _ in plan_clips(6, 2, 3)[0]}
    for row, vid in zip(got, ids):
        clip = make_clip(0, index[vid], 16, events=True)
        want = [lit_object(clip["beeps"], t) for t in frame_times(16)]
        assert row.tolist() == [-1 if w is None else w for w in want]
    assert (got >= 0).any()
    # 8 moments of 16 stored frames: moment t shows stored frame 2t
    assert frame_events(events, ids, 8).tolist() == got[:, ::2].tolist()
    with pytest.raises(ValueError, match="not clips of"):
        frame_events(events, ["test09999"], 16)


def test_frame_events_needs_the_events_variant(tmp_path):
    plain = make_synthetic(tmp_path / "p", 0, 2, 1, 1, num_frames=4, mp4=0, workers=1, progress=False)
    with pytest.raises(ValueError, match="events-variant"):
        frame_events(plain, ["train00000"], 4)


def test_localisation_report_by_hand():
    T = 4
    video = torch.eye(T)[None].repeat(2, 1, 1)  # (N=2, T, D=T): frame l is basis vector l
    perfect = localisation_report(video.clone(), video)
    assert perfect["accuracy"] == 1 and perfect["within_one"] == 1 and perfect["mean_frame_error"] == 0
    assert perfect["chance"] == 0.25 and perfect["chance_within_one"] == pytest.approx((2 + 3 + 3 + 2) / 16)
    # one audio vector for every moment (CAV-MAE's whole-clip audio): it always picks frame 2
    same = torch.zeros(2, T, T)
    same[..., 2] = 1
    events = torch.tensor([[-1, 0, 0, 1], [1, -1, 1, -1]])
    rep = localisation_report(same, video, events)
    assert rep["accuracy"] == pytest.approx(2 / 8) and rep["mean_frame_error"] == pytest.approx((2 + 1 + 0 + 1) / 4)
    # clip 0: moments 1, 2 show object 0 (frame 2 does too), moment 3 object 1 (frame 2 does not);
    # clip 1: moments 0, 2 show object 1, frame 2 shows it -> 4 of 5
    assert rep["event"]["n"] == 5 and rep["event"]["accuracy"] == pytest.approx(4 / 5)
    assert rep["event"]["chance"] == pytest.approx((2 / 4 + 2 / 4 + 1 / 4 + 2 / 4 + 2 / 4) / 5)
    with pytest.raises(ValueError, match="events must be"):
        localisation_report(same, video, events[:, :3])


def test_several_moments_of_a_clip_per_item(events):
    c = CAVMAESyncConfig.tiny()
    ds = load_pair_dataset(events, c, split="train", cache=False, pairs_per_clip=4)
    item = ds[0]
    assert item["audio"].shape == (4, 64, 64) and item["video"].shape == (4, 3, 96, 96)
    assert len(set(item["frame"].tolist())) == 4  # distinct moments
    single = load_pair_dataset(events, c, split="train", cache=False)[0]
    assert single["audio"].shape == (64, 64) and single["frame"].dim() == 0  # the release: one pair per clip
    with pytest.raises(ValueError, match="pairs_per_clip"):
        load_pair_dataset(events, c, split="train", mode="eval", cache=False, pairs_per_clip=2)
    with pytest.raises(ValueError, match="pairs_per_clip"):
        load_pair_dataset(events, c, split="train", cache=False, pairs_per_clip=17)


def test_pretrain_with_pairs_per_clip_and_localisation_in_evaluate(events, tmp_path, capsys):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    assert main(["pretrain", "--model", "sync", "--config", "tiny", "--data", str(events), "--out", str(run),
                 "--batch-size", "3", "--pairs-per-clip", "2", "--no-progress", "--threads", "1",
                 "--max-steps", "2"]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["pairs_per_clip"] == 2
    capsys.readouterr()
    assert main(["evaluate", "retrieval", "--checkpoint", str(run), "--data", str(events), "--split", "test",
                 "--json"]) == 0
    loc = json.loads(capsys.readouterr().out)["sync"]["localisation"]
    assert set(loc) >= {"accuracy", "within_one", "event"} and 0 <= loc["event"]["accuracy"] <= 1


def test_single_clip_path_matches_the_pair_dataset(tmp_path):
    """A video file through sync_clip_inputs gives the pairs the training data gives for that clip."""
    from cavmae_lite import CAVMAESync
    from cavmae_lite.evaluate import sync_clip_inputs, sync_clip_similarity

    out = make_synthetic(tmp_path / "ev", 0, 1, 1, 1, num_frames=16, mp4=1, workers=1, progress=False, events=True)
    c = CAVMAESyncConfig.tiny()
    mp4 = next((out / "mp4").glob("*.mp4"))
    x = sync_clip_inputs(mp4, c)
    assert x["audio"].shape == (16, 64, 64) and x["video"].shape == (16, 3, 96, 96)
    assert x["frame_indices"] == [i * 26 // 16 for i in range(16)]  # floor(i N / T) of the 26 frames
    assert x["segment_times"][5].tolist() == pytest.approx([0.48, 1.12])  # centre 5 * 256 / 16 = 80, L 64
    item = load_pair_dataset(out, c, split="test", mode="retrieval", cache=False)[0]
    assert item["video_id"] == mp4.stem
    # its audio is AAC-coded and starts 64 ms (6 fbank frames) late: the same clip, shifted
    clip = load_pair_dataset(out, c, split="test", mode="retrieval", cache=False).clips.clip_fbank(0)
    err = [float((x["fbank"][k:200] - clip[: 200 - k]).abs().mean()) for k in range(10)]
    assert min(range(10), key=err.__getitem__) == 6 and err[6] < 0.12
    torch.manual_seed(0)
    s = sync_clip_similarity(CAVMAESync(c), x)
    assert s["similarity"].shape == (16, 16) and torch.allclose(s["curve"], s["similarity"].diagonal())
    assert torch.equal(s["best_frame"], s["similarity"].argmax(1))
    with pytest.raises(ValueError, match="CAVMAESyncConfig"):
        from cavmae_lite.config import CAVMAEConfig

        sync_clip_inputs(mp4, CAVMAEConfig.tiny())
    with pytest.raises(ValueError, match="one clip"):
        sync_clip_similarity(CAVMAESync(c), {"audio": x["audio"][0], "video": x["video"]})


def test_an_item_reads_one_clips_label_not_all(events, monkeypatch):
    """Reading one pair must not build every clip's label (O(N) per item made training on 15,000 clips 3x slower)."""
    from cavmae_lite.data.datasets import AVDataset

    ds = load_pair_dataset(events, CAVMAESyncConfig.tiny(), split="train", cache=False)
    want = int(ds.clips.labels[3])
    monkeypatch.setattr(AVDataset, "labels", property(lambda self: pytest.fail("an item read every label")))
    assert ds[3]["label"] == want
