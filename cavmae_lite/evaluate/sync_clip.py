"""One video through CAV-MAE Sync: file -> T frames and their audio segments -> embeddings -> similarity curve.

    from cavmae_lite import zoo
    from cavmae_lite.evaluate import sync_clip_inputs, sync_clip_similarity
    model = zoo.pretrained_tiny_sync()
    x = sync_clip_inputs("clip.mp4", model.config)        # audio (T, L, F), video (T, 3, H, W), times ...
    s = sync_clip_similarity(model, x)                    # similarity (T, T), curve (T,), best_frame (T,)

The steps are the training data's (:mod:`cavmae_lite.data.pairs`): the clip's fbank at ``config.clip_length``
frames (padded or cut, normalised like a training clip), T = ``config.num_frames`` frames at floor(i * N / T) of
the video's N frames (the first ``max_seconds``), and the segment of L = ``config.audio_length`` fbank frames that
:func:`~cavmae_lite.data.segments.segment_window` cuts around each frame's moment. Feeding a model a segment cut
another way, or frames picked at other times, gives pairs it never saw in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.audio import AUDIOSET_MEAN, AUDIOSET_STD, load_fbank
from ..data.segments import cut_segments, segment_windows
from ..data.video import load_frames, normalize_frame, resize_center_crop

FBANK_HOP_S = 0.01  # s per fbank frame (10 ms hop)


def sync_clip_inputs(path: str | Path, config, channel: int | str = 0, max_seconds: float | None = 10.0,
                     mean: float = AUDIOSET_MEAN, std: float = AUDIOSET_STD) -> dict[str, Any]:
    """A video file -> CAV-MAE Sync's inputs for all T moments of the clip.

    Returns ``audio`` (T, L, F) segments, ``video`` (T, 3, H, W) normalised frames, ``fbank`` (S, F) the whole clip,
    ``windows`` [(start, end)] fbank frames of each segment, ``frame_indices`` (which video frames, T),
    ``segment_times`` (T, 2) seconds. Raises :class:`~cavmae_lite.data.video.MediaError` for a file without audio
    or video."""
    if not hasattr(config, "clip_length"):
        raise ValueError(f"sync_clip_inputs needs a CAVMAESyncConfig (with clip_length), got {type(config).__name__}")
    T, S, L = config.num_frames, config.clip_length, config.audio_length
    fbank = load_fbank(path, S, config.num_mel_bins, mean, std, channel=channel)  # (S, F)
    raw, indices = load_frames(path, T, max_seconds=max_seconds, return_indices=True)  # (T, h, w, 3) uint8
    video = normalize_frame(np.stack([resize_center_crop(f, config.img_size) for f in raw]))
    windows = segment_windows(T, S, L)
    return {"audio": cut_segments(fbank, T, L), "video": video, "fbank": fbank, "windows": windows,
            "frame_indices": list(indices),
            "segment_times": torch.tensor(windows, dtype=torch.float32) * FBANK_HOP_S}


@torch.no_grad()
def sync_clip_similarity(model: nn.Module, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
    """Embeddings and similarities of one clip's T (frame, segment) pairs.

    inputs: ``audio`` (T, L, F) and ``video`` (T, 3, H, W), e.g. from :func:`sync_clip_inputs` or a
    ``mode="retrieval"`` pair dataset item. Returns ``audio`` and ``video`` (T, D) L2-normalised embeddings,
    ``similarity`` (T, T) cosine of segment k (rows) and frame l (columns), ``curve`` (T,) each frame against its
    own segment (the diagonal), ``best_frame`` (T,) the frame each segment matches best (temporal localisation)."""
    audio, video = inputs["audio"], inputs["video"]
    if audio.dim() != 3 or video.dim() != 4 or audio.shape[0] != video.shape[0]:
        raise ValueError(f"sync_clip_similarity expects audio (T, L, F) and video (T, 3, H, W) of one clip, got "
                         f"{tuple(audio.shape)} and {tuple(video.shape)}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    a, v = model.embed(audio.to(device), video.to(device))
    model.train(was_training)
    a, v = a.float().cpu(), v.float().cpu()
    sim = a @ v.T  # (T, T)
    return {"audio": a, "video": v, "similarity": sim, "curve": sim.diagonal().clone(), "best_frame": sim.argmax(1)}


__all__ = ["FBANK_HOP_S", "sync_clip_inputs", "sync_clip_similarity"]
