"""CAV-MAE Sync's pairing: frame i of T paired with the fbank segment of L frames around its moment in the clip.

The released loader (``dataloader_sync.py``) cuts, from the clip's padded fbank of S frames (S = 1024 there):

    centre p_i = round(i * S / T)                       (Python's round: ties to even)
    start = max(0, p_i - L // 2),  end = start + L
    if end > S: end = S, start = max(0, S - L)          (clamped inward: no padding at the edges)

so edge frames get off-centre audio and the last windows repeat (S 1024, L 416, T 16: 11 distinct windows).
Frames are extracted at floor(i * N / T) of the clip's N video frames (:func:`.video.frame_indices`, as ``prepare``
does), so frame i sits near i * S / T. Each segment is normalised like a CAV-MAE clip and gets its own positional grid in the model.
"""

from __future__ import annotations

import torch
from torch import Tensor


def segment_window(frame: int, num_frames: int, clip_length: int, segment_length: int) -> tuple[int, int]:
    """(start, end) fbank frames of the segment paired with ``frame`` (0-based) of ``num_frames`` per clip."""
    if not 0 <= frame < num_frames:
        raise ValueError(f"frame must be in [0, num_frames={num_frames}), got {frame}")
    if not 0 < segment_length <= clip_length:
        raise ValueError(f"segment_length must be in (0, clip_length={clip_length}], got {segment_length}")
    centre = int(round(frame * clip_length / num_frames))
    start = max(0, centre - segment_length // 2)
    end = start + segment_length
    if end > clip_length:
        end, start = clip_length, max(0, clip_length - segment_length)
    return start, end


def segment_windows(num_frames: int, clip_length: int, segment_length: int) -> list[tuple[int, int]]:
    """Every frame's (start, end), e.g. 16 windows for the released model, 11 of them distinct."""
    return [segment_window(i, num_frames, clip_length, segment_length) for i in range(num_frames)]


def cut_segments(fbank: Tensor, num_frames: int, segment_length: int, frames: Tensor | list[int] | None = None
                 ) -> Tensor:
    """(S, F) clip fbank -> (T', L, F) segments of ``frames`` (default all T = ``num_frames``), one gather."""
    if fbank.dim() != 2:
        raise ValueError(f"cut_segments expects one clip's fbank (S, F), got shape {tuple(fbank.shape)}")
    frames = range(num_frames) if frames is None else [int(f) for f in frames]
    starts = torch.tensor([segment_window(f, num_frames, fbank.shape[0], segment_length)[0] for f in frames])
    rows = starts[:, None] + torch.arange(segment_length)  # (T', L) fbank rows
    return fbank[rows]


__all__ = ["cut_segments", "segment_window", "segment_windows"]
