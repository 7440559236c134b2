"""Clip-level retrieval for CAV-MAE Sync: T per-frame embeddings per clip, four ways to score a pair of clips.

For audio clip i and video clip j with L2-normalised frame embeddings a_i,k and v_j,l (k, l = 0..T-1, frame k of a
clip paired with the audio segment around it), the released retrieval script's scores are:

    diagonal_mean  mean_k  cos(a_i,k, v_j,k)      time-aligned slots (the README's example)
    diagonal_max   max_k   cos(a_i,k, v_j,k)
    mean           mean_kl cos(a_i,k, v_j,l)      = cos-sum of the clip means: ignores order
    max            max_kl  cos(a_i,k, v_j,l)

S[i, j] has audio on the rows and video on the columns, so :func:`~.metrics.retrieval_metrics` reads audio->video
from its rows and video->audio from its columns, as for CAV-MAE. Computed with batched matrix products over blocks of
query clips (no Python loop over pairs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

STRATEGIES = ("diagonal_mean", "diagonal_max", "mean", "max")
_BLOCK_ELEMENTS = 1 << 24  # (rows, N, T, T) floats per block of query clips for the "max" score


@torch.no_grad()
def clip_scores(audio: Tensor, video: Tensor, strategy: str = "diagonal_mean") -> Tensor:
    """audio (N, T, D), video (M, T, D) frame embeddings (normalised here) -> S (N, M) clip-pair scores."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if audio.dim() != 3 or video.dim() != 3 or audio.shape[1:] != video.shape[1:]:
        raise ValueError(f"clip_scores expects audio (N, T, D) and video (M, T, D) with the same T and D, got "
                         f"{tuple(audio.shape)} and {tuple(video.shape)}")
    a, v = F.normalize(audio.float(), dim=-1), F.normalize(video.float(), dim=-1)
    if strategy == "mean":  # the mean of all T x T cosines is the dot product of the two mean vectors
        return a.mean(dim=1) @ v.mean(dim=1).T
    if strategy.startswith("diagonal"):
        per_slot = torch.einsum("ikd,jkd->kij", a, v)  # (T, N, M): slot k of clip i against slot k of clip j
        return per_slot.mean(dim=0) if strategy == "diagonal_mean" else per_slot.amax(dim=0)
    T, M = a.shape[1], v.shape[0]
    rows = max(1, _BLOCK_ELEMENTS // max(1, M * T * T))
    out = [torch.einsum("ikd,jld->ijkl", block, v).flatten(2).amax(dim=2) for block in a.split(rows)]
    return torch.cat(out) if out else a.new_zeros(0, M)


@torch.no_grad()
def frame_localisation(audio: Tensor, video: Tensor) -> Tensor:
    """Temporal localisation within clips: for each clip and audio segment k, the frame l (of the same clip) whose
    embedding is most similar. audio, video (N, T, D) -> (N, T) long; the right answer is l = k."""
    if audio.shape != video.shape or audio.dim() != 3:
        raise ValueError(f"frame_localisation expects audio and video (N, T, D) of one shape, got "
                         f"{tuple(audio.shape)} and {tuple(video.shape)}")
    sim = torch.einsum("nkd,nld->nkl", F.normalize(audio.float(), dim=-1), F.normalize(video.float(), dim=-1))
    return sim.argmax(dim=-1)


__all__ = ["STRATEGIES", "clip_scores", "frame_localisation"]
