"""Evaluation: audio <-> video retrieval (spec §6.2), embeddings, and the entry points of probes and fine-tuning.

    model = load_pretrained("runs/tiny")
    emb = compute_embeddings(model, load_dataset("data/synthetic", model.config, split="test"))
    metrics = retrieval_metrics(emb.audio @ emb.video.T)      # {"a2v": {...}, "v2a": {...}, "n": N}

Ranks are 1-based and **ties count against the query** (pessimistic): the rank of the true partner is the
number of candidates whose similarity is >= the partner's, itself included. A constant similarity matrix thus
gives rank N for every query, never a lucky 1. (The official script matches sorted values, which double-counts
ties; spec §6.2.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from .model import _check_inputs
from .probe import linear_probe, mean_average_precision


def _rank_stats(ranks: Tensor) -> dict[str, float]:
    """ranks (N,) 1-based -> recalls (fractions), median rank (mean of the two middle ranks if N is even), mean."""
    r = ranks.double()
    s = r.sort().values
    n = len(s)
    median = float(s[n // 2]) if n % 2 else float((s[n // 2 - 1] + s[n // 2]) / 2)
    return {"r1": float((r <= 1).double().mean()), "r5": float((r <= 5).double().mean()),
            "r10": float((r <= 10).double().mean()), "median_rank": median, "mean_rank": float(r.mean())}


@torch.no_grad()
def retrieval_ranks(sim: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """1-based ranks of the true partners: (a2v (N,), v2a (N,)) for ``sim`` (N, N), rows audio, columns video.

    a2v[i] = #{j : sim[i, j] >= sim[i, i]}  (audio i queries the videos);
    v2a[j] = #{i : sim[i, j] >= sim[j, j]}  (video j queries the audios). Vectorised in row chunks.
    """
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be a square (N, N) matrix, got shape {tuple(sim.shape)}")
    if not torch.isfinite(sim).all():
        raise ValueError("similarity matrix contains NaN or Inf")
    n = sim.shape[0]
    diag = sim.diagonal().clone()
    a2v = torch.empty(n, dtype=torch.long, device=sim.device)
    v2a = torch.zeros(n, dtype=torch.long, device=sim.device)
    for s in range(0, n, chunk):
        block = sim[s:s + chunk]  # (c, N)
        a2v[s:s + chunk] = (block >= diag[s:s + chunk, None]).sum(dim=1)
        v2a += (block >= diag[None, :]).sum(dim=0)
    return a2v, v2a


def retrieval_metrics(sim: Tensor) -> dict[str, Any]:
    """``{"a2v": {r1, r5, r10, median_rank, mean_rank}, "v2a": {...}, "n": N}`` for an (N, N) similarity."""
    sim = torch.as_tensor(sim)
    a2v, v2a = retrieval_ranks(sim.float() if sim.dtype in (torch.float16, torch.bfloat16) else sim)
    return {"a2v": _rank_stats(a2v.cpu()), "v2a": _rank_stats(v2a.cpu()), "n": int(sim.shape[0])}


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


def _device(device: str | torch.device | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _encode(model: nn.Module, audio: Tensor, video: Tensor, joint: bool) -> tuple[Tensor, Tensor, Tensor | None]:
    """Token features of the audio and the video stream, and the joint stream's mean-pooled output (or None)."""
    if not joint:
        a, _ = model.forward_features(audio, None)
        _, v = model.forward_features(None, video)
        return a, v, None
    enc = getattr(model, "encoder", None)
    if enc is None:
        raise ValueError("joint=True needs a CAVMAE or CAVMAEClassifier (a model with .encoder)")
    _check_inputs(enc.config, audio, None)
    _check_inputs(enc.config, None, video)
    h_a = enc.audio_specific(enc.embed_audio(audio))
    h_v = enc.video_specific(enc.embed_video(video))
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
    dev = _device(device)
    was_training = model.training
    model.eval().to(dev)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    ctx = (torch.autocast(dev.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
           if amp in ("bf16", "fp16") else torch.autocast(dev.type, enabled=False))
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


__all__ = ["FEATURES", "Embeddings", "compute_embeddings", "linear_probe", "mean_average_precision", "probe_embeddings",
           "probe_features", "retrieval", "retrieval_metrics", "retrieval_ranks"]
