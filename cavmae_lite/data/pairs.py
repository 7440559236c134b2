"""CAV-MAE Sync's dataset: (frame, audio segment) pairs cut from the clips of any prepared dataset.

A clip of the manifest gives its padded fbank (S = ``config.clip_length`` frames) and its stored frames; frame i of
T = ``config.num_frames`` is paired with the segment :func:`~.segments.segment_window` cuts around i * S / T. A clip
that stores K != T frames (CAV-MAE's extraction keeps 10) uses stored frame floor(i * K / T), the frame nearest
below that moment (the released loader instead reads missing files as zeros or repeats frame 9).

Modes, as the released loader's: ``"train"`` one random frame per clip and access, ``"eval"`` frame T // 2,
``"retrieval"`` all T pairs of a clip stacked: audio (T, L, F), video (T, 3, H, W). ``pairs_per_clip`` P > 1 (train
mode, this project's option, not the release's) draws P distinct moments of a clip, stacked (P, L, F) and
(P, 3, H, W): the clip's other moments are then negatives of the contrastive loss, which is what asks a model to
tell the moments of one clip apart.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import add_noise_and_roll
from .datasets import load_dataset
from .segments import cut_segments
from .video import frame_indices, normalize_frame

MODES = ("train", "eval", "retrieval")


class PairDataset(Dataset):
    """(frame, segment) pairs of the clips of an :class:`~.datasets.AVDataset` read at the clip length."""

    def __init__(self, clips, config, mode: str = "train", pairs_per_clip: int = 1):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 1 <= pairs_per_clip <= config.num_frames or (pairs_per_clip > 1 and mode != "train"):
            raise ValueError(f"pairs_per_clip must be in [1, num_frames={config.num_frames}] and > 1 only in train "
                             f"mode, got {pairs_per_clip} in mode {mode!r}")
        self.clips, self.config, self.mode, self.pairs_per_clip = clips, config, mode, pairs_per_clip
        self.video_ids = clips.video_ids

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_classes(self) -> int:
        return self.clips.num_classes

    @property
    def labels(self):
        return self.clips.labels

    def stored_frame(self, index: int, frame: int) -> int:
        """Which stored frame of clip ``index`` shows moment ``frame`` of T."""
        return frame_indices(self.clips.num_frames(index), self.config.num_frames)[frame]

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        index, T = index % len(self), self.config.num_frames
        fbank = self.clips.clip_fbank(index)  # (S, F) normalised clip fbank, cache or raw
        if self.clips.noise:
            fbank = add_noise_and_roll(fbank, self.clips.item_generator())
        if self.mode == "retrieval":
            frames = list(range(T))
        elif self.mode == "train":
            frames = torch.randperm(T, generator=self.clips.item_generator())[: self.pairs_per_clip].tolist()
        else:
            frames = [T // 2]
        audio = cut_segments(fbank, T, self.config.audio_length, frames)  # (T', L, F)
        video = normalize_frame(np.stack([self.clips.frame_uint8(index, self.stored_frame(index, f)) for f in frames]))
        stacked = self.mode == "retrieval" or self.pairs_per_clip > 1
        if not stacked:
            audio, video = audio[0], video[0]
        first = self.clips.label_indices(index)[:1]  # one clip's label (``clips.labels`` builds all N)
        label = first[0] if first else -1
        return {"audio": audio, "video": video, "frame": torch.tensor(frames if stacked else frames[0]),
                "label": int(label), "video_id": self.video_ids[index], "index": index}


def load_pair_dataset(data_dir, config, split: str | None = None, mode: str = "train", cache="auto", seed: int = 0,
                      noise: bool = False, norm="audioset", pairs_per_clip: int = 1) -> PairDataset:
    """(frame, segment) pairs of ``data_dir`` for a :class:`~cavmae_lite.config.CAVMAESyncConfig`.

    The clips are read at ``config.clip_length`` fbank frames (so a tiny-config cache at that length is used).
    noise: CAV-MAE's noise + roll on the clip fbank before cutting (off by default: the released loader applies
    none)."""
    for field in ("clip_length", "num_frames"):
        if not hasattr(config, field):
            raise ValueError(f"load_pair_dataset needs a CAVMAESyncConfig (with {field}), got {type(config).__name__}")
    clip_config = config.replace(audio_length=config.clip_length)
    clips = load_dataset(data_dir, clip_config, split, train=mode == "train", cache=cache, seed=seed, noise=noise,
                         norm=norm)
    return PairDataset(clips, config, mode, pairs_per_clip)


__all__ = ["MODES", "PairDataset", "load_pair_dataset"]
