"""Embeddings of a dataset, audio <-> video retrieval on them (spec §6.2) and linear probes of them.

    model = load_pretrained("runs/tiny")
    emb = compute_embeddings(model, load_dataset("data/synthetic", model.config, split="test"))
    metrics = retrieval_metrics(emb.similarity())      # {"a2v": {...}, "v2a": {...}, "n": N}; see .metrics
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..runtime import autocast, resolve_device
from .metrics import retrieval_metrics
from .probe import linear_probe

# ---------------------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Embeddings:
    """L2-normalised mean-pooled ``forward_features`` (spec §6.2): audio (N, D), video (N, D); labels (N,);
    ``labels_multi`` (N, C) when the dataset gives multi-hot labels; ``video_ids``.

    ``joint`` (N, D), only with ``compute_embeddings(..., joint=True)``: the joint stream's output — audio and
    video tokens together through the joint blocks with the joint LayerNorm set and ``norm_joint`` — mean-pooled
    over all audio + video tokens and L2-normalised: the vector the ``multimodal`` classifier's head sees.
    """

    audio: Tensor
    video: Tensor
    labels: Tensor
    labels_multi: Tensor | None = None
    video_ids: list[str] = field(default_factory=list)
    joint: Tensor | None = None

    def similarity(self) -> Tensor:
        """(N, N) cosine similarities, rows audio, columns video."""
        return self.audio @ self.video.T


def _encode(model: nn.Module, audio: Tensor, video: Tensor, joint: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Token features of the audio and the video stream, and the joint stream's mean-pooled output (or None)."""
    if not joint:
        a, _ = model.forward_features(audio, None)
        _, v = model.forward_features(None, video)
        return a, v, None
    enc = getattr(model, "encoder", None)
    if enc is None:
        raise ValueError("joint=True needs a CAVMAE or CAVMAEClassifier (a model with .encoder)")
    e = enc.encode(audio, video)
    h_a, h_v = e.audio, e.video
    a, v = enc.audio_stream(h_a), enc.video_stream(h_v)
    per_clip = h_v.shape[0] // h_a.shape[0]  # frames per clip (1, or K for frame averaging): the same audio beside each
    j = enc.joint_stream(h_a.repeat_interleave(per_clip, dim=0) if per_clip > 1 else h_a, h_v).float().mean(dim=1)
    return a, v, j


@torch.no_grad()
def compute_embeddings(
    model: nn.Module,
    dataset: Dataset,
    frames: str = "middle",
    batch_size: int = 64,
    device: str | torch.device | None = "auto",
    num_workers: int = 0,
    amp: str = "none",
    joint: bool = False,
) -> Embeddings:
    """Retrieval / probe features for every clip of ``dataset`` with a CAVMAE (or CAVMAEClassifier).

    frames: "middle" uses each item's ``video`` (the middle frame of an eval dataset); "average" embeds every
    frame of ``frames`` (load the dataset with ``frames=True``), averages the pooled features and normalises.
    amp: "bf16" / "fp16" autocast for speed on GPU (features are returned in float32).
    joint: also fill ``Embeddings.joint`` (see :class:`Embeddings`); with "average" the joint stream runs once
    per frame with the clip's audio, and the pooled outputs are averaged.
    """
    if frames not in ("middle", "average"):
        raise ValueError(f"frames must be 'middle' or 'average', got {frames!r}")
    dev = resolve_device("auto" if device is None else device)
    was_training = model.training
    model.eval().to(dev)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    ctx = autocast(amp, dev)
    A, V, J, Y, YM, ids = [], [], [], [], [], []
    for batch in loader:
        audio = batch["audio"].to(dev)
        with ctx:
            if frames == "middle":
                a, v, j = _encode(model, audio, batch["video"].to(dev), joint)
                v = v.float().mean(dim=1)
            else:
                if "frames" not in batch:
                    raise ValueError("frames='average' needs items with 'frames': load the dataset with frames=True")
                fr = batch["frames"].to(dev)  # (B, K, 3, H, W)
                B, K = fr.shape[:2]
                a, v, j = _encode(model, audio, fr.flatten(0, 1), joint)
                v = v.float().mean(dim=1).view(B, K, -1).mean(dim=1)
                j = None if j is None else j.view(B, K, -1).mean(dim=1)
        A.append(F.normalize(a.float().mean(dim=1), dim=-1).cpu())
        V.append(F.normalize(v, dim=-1).cpu())
        if j is not None:
            J.append(F.normalize(j, dim=-1).cpu())
        Y.append(torch.as_tensor(batch.get("label", torch.full((audio.shape[0],), -1))))
        if "labels" in batch:
            YM.append(batch["labels"].float())
        ids += list(batch.get("video_id", []))
    model.train(was_training)
    return Embeddings(torch.cat(A), torch.cat(V), torch.cat(Y), torch.cat(YM) if YM else None, ids,
                      torch.cat(J) if J else None)


def retrieval(model: nn.Module, dataset: Dataset, frames: str = "middle", batch_size: int = 64,
              device: str | torch.device | None = "auto") -> dict[str, Any]:
    """Embed ``dataset`` and return :func:`retrieval_metrics` of its audio x video cosine similarities."""
    emb = compute_embeddings(model, dataset, frames, batch_size, device)
    return retrieval_metrics(emb.similarity())


FEATURES = ("a", "v", "av", "joint")


def probe_features(emb: Embeddings, features: str) -> Tensor:
    """The (N, d) probe input: "a" c_a, "v" c_v, "av" [c_a; c_v] (the two single-modality streams side by side),
    "joint" the joint stream's pooled output (compute the embeddings with ``joint=True``)."""
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    if features == "joint":
        if emb.joint is None:
            raise ValueError("features='joint' needs joint-stream embeddings: compute_embeddings(..., joint=True)")
        return emb.joint
    if features == "av":
        return torch.cat([emb.audio, emb.video], dim=1)
    return emb.audio if features == "a" else emb.video


def probe_embeddings(train: Embeddings, test: Embeddings, features: str = "av", **kwargs: Any) -> dict[str, float]:
    """Linear probe on frozen embeddings, features as in :func:`probe_features`. See :func:`linear_probe`."""
    x_tr, x_te = probe_features(train, features), probe_features(test, features)
    multilabel = kwargs.pop("multilabel", False)
    ytr = train.labels_multi if multilabel else train.labels
    yte = test.labels_multi if multilabel else test.labels
    return linear_probe(x_tr, ytr, x_te, yte, multilabel=multilabel, **kwargs)


__all__ = ["FEATURES", "Embeddings", "compute_embeddings", "probe_embeddings", "probe_features", "retrieval"]
