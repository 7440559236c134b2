"""Retrieval and temporal localisation for CAV-MAE Sync, and CAV-MAE measured on the same clips.

    model = CAVMAESync.from_pretrained("runs/sync")
    ds = load_pair_dataset("data/synthetic-sync", model.config, split="test", mode="retrieval")
    report = sync_retrieval(model, ds)   # {"frame": ..., "clip": {strategy: ...}, "localisation": ...}

Each clip gives T (frame, segment) pairs; both models embed them all:

* **frame level**: every pair of every clip is a query among all N * T pairs (its own partner is the one right
  answer, the clip's other moments are negatives);
* **clip level**: the four clip scores of :mod:`.clip_scores` over the T x T frame similarities of two clips;
* **temporal localisation**: for each audio segment, the frame of its own clip that matches it best; the share
  that finds its own moment (chance 1 / T) and the mean distance in frames.

A CAV-MAE (mean-pooled ``embed``) is evaluated on the same pairs: its audio input is the segment, so give it a model
whose ``audio_length`` is the segment length, or pass ``clip_audio=True`` to feed it the whole clip for every frame
(the released baseline: full-clip audio against the 16 frames, similarities averaged).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..runtime import resolve_device
from .clip_scores import STRATEGIES, clip_scores, frame_localisation
from .metrics import retrieval_metrics


@torch.no_grad()
def pair_embeddings(model: nn.Module, dataset, batch_size: int = 8, device: str | torch.device = "auto",
                    clip_audio: bool = False) -> tuple[Tensor, Tensor]:
    """(N, T, D) audio and video embeddings (L2-normalised) of a ``mode="retrieval"`` pair dataset.

    clip_audio: embed each clip's whole fbank (``dataset.clips.clip_fbank``) once and use it for all T frames."""
    if getattr(dataset, "mode", None) != "retrieval":
        raise ValueError("pair_embeddings needs a pair dataset loaded with mode='retrieval' (all T pairs per clip)")
    dev = resolve_device(device)
    was_training = model.training
    model.eval().to(dev)
    A, V = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        audio, video = batch["audio"].to(dev), batch["video"].to(dev)  # (B, T, L, F), (B, T, 3, H, W)
        B, T = audio.shape[:2]
        if clip_audio:
            clips = torch.stack([dataset.clips.clip_fbank(int(i)) for i in batch["index"]]).to(dev)  # (B, S, F)
            a = model.embed(clips, None)[0][:, None].expand(B, T, -1)
        else:
            a = model.embed(audio.flatten(0, 1), None)[0].view(B, T, -1)
        v = model.embed(None, video.flatten(0, 1))[1].view(B, T, -1)
        A.append(a.float().cpu())
        V.append(v.float().cpu())
    model.train(was_training)
    return torch.cat(A), torch.cat(V)


def localisation_report(audio: Tensor, video: Tensor) -> dict[str, float]:
    """Share of segments whose best-matching frame of their own clip is their own moment, chance, mean distance."""
    T = audio.shape[1]
    found = frame_localisation(audio, video)  # (N, T)
    truth = torch.arange(T).expand_as(found)
    return {"accuracy": float((found == truth).float().mean()), "chance": 1 / T,
            "mean_frame_error": float((found - truth).abs().float().mean())}


def sync_retrieval(model: nn.Module, dataset, batch_size: int = 8, device: str | torch.device = "auto",
                   clip_audio: bool = False) -> dict[str, Any]:
    """Frame-level and clip-level retrieval (four strategies) and temporal localisation on a retrieval pair set."""
    audio, video = pair_embeddings(model, dataset, batch_size, device, clip_audio)
    N, T = audio.shape[:2]
    frame = retrieval_metrics(audio.flatten(0, 1) @ video.flatten(0, 1).T)
    clip = {s: retrieval_metrics(clip_scores(audio, video, s)) for s in STRATEGIES}
    return {"n_clips": N, "frames_per_clip": T, "frame": frame, "clip": clip,
            "localisation": localisation_report(audio, video)}


__all__ = ["localisation_report", "pair_embeddings", "sync_retrieval"]
