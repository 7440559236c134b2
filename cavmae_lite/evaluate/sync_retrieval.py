"""Retrieval and temporal localisation for CAV-MAE Sync, and CAV-MAE measured on the same clips.

    model = CAVMAESync.from_pretrained("runs/sync")
    ds = load_pair_dataset("data/synthetic-sync", model.config, split="test", mode="retrieval")
    report = sync_retrieval(model, ds)   # {"frame": ..., "clip": {strategy: ...}, "localisation": ...}

Each clip gives T (frame, segment) pairs; both models embed them all:

* **frame level**: every pair of every clip is a query among all N * T pairs (its own partner is the one right
  answer, the clip's other moments are negatives);
* **clip level**: the four clip scores of :mod:`.clip_scores` over the T x T frame similarities of two clips;
* **temporal localisation**: for each audio segment, the frame of its own clip that matches it best; the share
  that finds its own moment (chance 1 / T), within one frame, the mean distance in frames and, where the data
  says what each moment shows (the events variant's lit object), the share whose best frame shows the same event.

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


def localisation_report(audio: Tensor, video: Tensor, events: Tensor | None = None) -> dict[str, Any]:
    """Temporal localisation of (N, T, D) pair embeddings: for each audio segment, the best frame of its own clip.

    ``accuracy``: the share that finds its own moment (``chance`` 1 / T); ``within_one``: within one frame of it
    (chance: the share of frames within one, 3 / T away from the edges); ``mean_frame_error`` in frames.
    events: (N, T) ints, what each moment shows (e.g. which object is lit, -1 for nothing:
    :func:`~cavmae_lite.data.synthetic.frame_events`). Then ``event`` reports, over the segments of a moment that
    shows something, the share whose best frame shows the same thing, and its chance (a random frame of the clip)."""
    N, T = audio.shape[:2]
    found = frame_localisation(audio, video)  # (N, T)
    truth = torch.arange(T).expand_as(found)
    near = (truth[:, :, None] - torch.arange(T)).abs() <= 1  # (N, T, T) frames within one of each moment
    out: dict[str, Any] = {
        "accuracy": float((found == truth).float().mean()), "chance": 1 / T,
        "within_one": float(((found - truth).abs() <= 1).float().mean()),
        "chance_within_one": float(near.float().mean(-1).mean()),
        "mean_frame_error": float((found - truth).abs().float().mean())}
    if events is not None:
        events = torch.as_tensor(events)
        if events.shape != (N, T):
            raise ValueError(f"events must be (N, T) = {(N, T)}, got {tuple(events.shape)}")
        shows = events >= 0  # (N, T) moments that show something
        same = events[:, :, None] == events[:, None, :]  # (N, T, T) frame l shows what moment k shows
        hit = same.gather(2, found[:, :, None])[..., 0]
        out["event"] = {"accuracy": float(hit[shows].float().mean()) if shows.any() else float("nan"),
                        "chance": float(same.float().mean(-1)[shows].mean()) if shows.any() else float("nan"),
                        "n": int(shows.sum())}
    return out


def sync_retrieval(model: nn.Module, dataset, batch_size: int = 8, device: str | torch.device = "auto",
                   clip_audio: bool = False, events: Tensor | None = None) -> dict[str, Any]:
    """Frame-level and clip-level retrieval (four strategies) and temporal localisation on a retrieval pair set
    (``events``: see :func:`localisation_report`)."""
    audio, video = pair_embeddings(model, dataset, batch_size, device, clip_audio)
    N, T = audio.shape[:2]
    frame = retrieval_metrics(audio.flatten(0, 1) @ video.flatten(0, 1).T)
    clip = {s: retrieval_metrics(clip_scores(audio, video, s)) for s in STRATEGIES}
    return {"n_clips": N, "frames_per_clip": T, "frame": frame, "clip": clip,
            "localisation": localisation_report(audio, video, events)}


__all__ = ["localisation_report", "pair_embeddings", "sync_retrieval"]
