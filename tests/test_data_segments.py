"""CAV-MAE Sync's audio segments, exactly as the released loader cuts them (window table of the Sync spec)."""

import pytest
import torch

from cavmae_lite.data.segments import cut_segments, segment_window, segment_windows
from cavmae_lite.data.video import frame_indices


def test_released_windows_clamp_inward():
    w = segment_windows(16, 1024, 416)
    assert w[:4] == [(0, 416)] * 4 and w[4] == (48, 464) and w[12] == (560, 976)
    assert w[13:] == [(608, 1024)] * 3 and len(set(w)) == 11
    assert all(e - s == 416 for s, e in w)
    assert len(set(segment_windows(16, 1024, 96))) == 16
    assert segment_windows(16, 1024, 1024) == [(0, 1024)] * 16  # L = S: CAV-MAE's input


def test_centres_round_half_to_even_like_the_loader():
    # 3 * 10 / 4 = 7.5 -> 8, 1 * 10 / 4 = 2.5 -> 2 (Python's round)
    assert segment_window(3, 4, 10, 2) == (7, 9) and segment_window(1, 4, 10, 2) == (1, 3)


def test_cut_segments_gathers_the_windows():
    fbank = torch.arange(1024.0)[:, None].expand(1024, 3)
    seg = cut_segments(fbank, 16, 416)
    assert seg.shape == (16, 416, 3)
    assert seg[4, 0, 0] == 48 and seg[15, -1, 2] == 1023 and torch.equal(seg[0], fbank[:416])
    assert torch.equal(cut_segments(fbank, 16, 416, frames=[12]), seg[12:13])


def test_frame_indices_spread_over_the_clip():
    assert frame_indices(250, 16) == [i * 250 // 16 for i in range(16)] and frame_indices(250, 16)[-1] == 234
    assert frame_indices(10, 16) == [0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 6, 7, 8, 8, 9]


def test_bad_arguments_are_errors():
    with pytest.raises(ValueError, match="frame must be"):
        segment_window(16, 16, 1024, 416)
    with pytest.raises(ValueError, match="segment_length"):
        segment_window(0, 16, 256, 416)
    with pytest.raises(ValueError, match=r"\(S, F\)"):
        cut_segments(torch.zeros(2, 1024, 128), 16, 416)


def test_events_variant_lights_the_object_of_each_beep(tmp_path):
    """The events variant keeps every sound and every frame between beeps; frames during beep b show object b lit."""
    import numpy as np

    from cavmae_lite.data import make_synthetic
    from cavmae_lite.data.synthetic_clip import frame_times, lit_object, make_clip

    from cavmae_lite.data.synthetic_clip import EVENTS, SR, object_positions

    plain, lit = make_clip(0, 11, 16), make_clip(0, 11, 16, events=True)  # three beeps of a sine
    assert plain["beeps"] == lit["beeps"] and len(lit["beeps"]) == 3
    during = np.zeros(plain["wave"].size, bool)
    for start, dur in lit["beeps"]:
        during[int(round(start * SR)) : int(round((start + dur) * SR))] = True
    assert np.array_equal(plain["wave"][~during], lit["wave"][~during])  # the same noise between beeps
    # beep b sounds higher the higher object b sits (smaller y): the zero-crossing rate orders them
    pitch, height = [], []
    for b, (start, dur) in enumerate(lit["beeps"]):
        seg = lit["wave"][int(start * SR) : int((start + dur) * SR)]
        pitch.append(np.mean(np.diff(np.sign(seg)) != 0))
        height.append(-object_positions(lit["layout"], start)[b, 1])
    assert np.argsort(pitch).tolist() == np.argsort(height).tolist()
    which = [lit_object(lit["beeps"], t) for t in frame_times(16)]
    assert any(b is not None for b in which) and any(b is None for b in which)
    for b, f0, f1 in zip(which, plain["frames"], lit["frames"]):
        assert np.array_equal(f0, f1) == (b is None)
        if b is not None:
            assert f1.astype(float).mean() > f0.astype(float).mean()  # lit up: brighter
    out = make_synthetic(tmp_path / "ev", 0, 2, 1, 1, num_frames=16, mp4=1, workers=1, progress=False, events=True)
    import json

    assert json.loads((out / "synthetic.json").read_text())["events"] == EVENTS


def test_pair_dataset_cuts_each_frames_segment(tmp_path):
    from cavmae_lite.config import CAVMAESyncConfig
    from cavmae_lite.data import cut_segments, load_dataset, make_synthetic
    from cavmae_lite.data.pairs import load_pair_dataset

    out = make_synthetic(tmp_path / "ev", 0, 3, 1, 1, num_frames=8, mp4=0, workers=1, progress=False, events=True)
    c = CAVMAESyncConfig.tiny(num_frames=16, audio_length=48)
    retr = load_pair_dataset(out, c, split="train", mode="retrieval", cache=False)
    item = retr[1]
    assert item["audio"].shape == (16, 48, 64) and item["video"].shape == (16, 3, 96, 96)
    clips = load_dataset(out, c.replace(audio_length=c.clip_length), "train", cache=False)
    torch.testing.assert_close(item["audio"], cut_segments(clips.clip_fbank(1), 16, 48))
    # 8 stored frames for 16 moments: moment i shows stored frame floor(i / 2)
    assert retr.stored_frame(1, 15) == 7 and torch.equal(item["video"][14], item["video"][15])
    ev = load_pair_dataset(out, c, split="train", mode="eval", cache=False)[0]
    assert ev["audio"].shape == (48, 64) and int(ev["frame"]) == 8
    torch.manual_seed(0)
    frames = {int(load_pair_dataset(out, c, split="train", cache=False)[0]["frame"]) for _ in range(20)}
    assert len(frames) > 3  # a random frame per access in training
    with pytest.raises(ValueError, match="CAVMAESyncConfig"):
        from cavmae_lite.config import CAVMAEConfig

        load_pair_dataset(out, CAVMAEConfig.tiny())
