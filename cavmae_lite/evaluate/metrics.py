"""Every metric in one place, in torch only.

Retrieval (spec §6.2): ranks are 1-based and **ties count against the query** (pessimistic): the rank of the true
partner is the number of candidates whose similarity is >= the partner's, itself included. A constant similarity
matrix thus gives rank N for every query, never a lucky 1. (The official script matches sorted values, which
double-counts ties.)

Classification, as the official fine-tuning prints them (src/utilities/stats.py):

* mAP: macro, ties as one threshold (matches scikit-learn's ``average_precision_score``), classes without a
  positive skipped — the official code averages scikit-learn's value over every class.
* accuracy: argmax of the scores against the argmax of the multi-hot target (the official definition; for a
  multi-label clip that is its lowest-index class); clips without any label are left out. ``accuracy`` takes
  class indices.
* AUC: per-class ROC AUC (Mann-Whitney U with tied scores counted as half), averaged over the classes having
  both positives and negatives (the official code averages in a -1 for the others).
* d-prime: ``sqrt(2) * Phi^-1(mean AUC)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

# ----- retrieval ---------------------------------------------------------------------------------------


def _rank_stats(ranks: Tensor) -> dict[str, float]:
    """ranks (N,) 1-based -> recalls (fractions), median rank (mean of the two middle ranks if N is even), mean."""
    r = ranks.double()
    s = r.sort().values
    n = len(s)
    median = float(s[n // 2]) if n % 2 else float((s[n // 2 - 1] + s[n // 2]) / 2)
    return {"r1": float((r <= 1).double().mean()), "r5": float((r <= 5).double().mean()),
            "r10": float((r <= 10).double().mean()), "median_rank": median, "mean_rank": float(r.mean())}


TILE = 32_768  # elements per CPU tile: ATen's grain size, below which an op runs on the calling thread alone
GPU_TILE = 1 << 24  # elements per tile on an accelerator: few, large kernels


def _check_similarity(sim: Tensor) -> None:
    if sim.dim() != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"similarity must be a square (N, N) matrix, got shape {tuple(sim.shape)}")
    if sim.is_complex():
        raise ValueError(f"similarity must be real, got {sim.dtype}")
    if sim.is_floating_point() and sim.numel():
        lo, hi = torch.aminmax(sim)  # one pass; NaN propagates to both, +-Inf shows in one
        if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
            raise ValueError("similarity matrix contains NaN or Inf")


@torch.no_grad()
def retrieval_ranks(sim: Tensor, chunk: int | None = None) -> tuple[Tensor, Tensor]:
    """1-based ranks of the true partners: (a2v (N,), v2a (N,)) int64 for ``sim`` (N, N), rows audio, columns video.

    a2v[i] = #{j : sim[i, j] >= sim[i, i]}  (audio i queries the videos);
    v2a[j] = #{i : sim[i, j] >= sim[j, j]}  (video j queries the audios).

    One pass over ``sim`` in tiles of ``chunk`` rows (by default as many as fit in ``TILE`` elements on CPU, a row
    longer than that cut into column tiles), each compared with both thresholds while it is in cache. Values are
    compared in ``sim``'s own dtype (float16 / bfloat16 as they are: a comparison never rounds) into 0.0 / 1.0
    floats (ATen vectorises a comparison whose output has the inputs' dtype, not one that writes bool) and
    summed: small integers, exact in float32 below 2^24. On CPU each op stays below ATen's grain size, so it runs
    on the calling thread without an OpenMP fork/join, which on a busy machine would cost a scheduler time slice
    per op; the loop is bound by memory and dispatch (~0.1 s for 10,000 x 10,000). NaN or Inf raises ValueError.
    """
    _check_similarity(sim)
    sim = sim.detach()
    n = sim.shape[0]
    per_tile = TILE if sim.device.type == "cpu" else GPU_TILE
    width = max(1, min(n, per_tile))  # a row longer than a tile is cut into column tiles
    rows = max(1, per_tile // width) if chunk is None else chunk
    if rows < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    rows = max(1, min(rows, n))
    dt = torch.float64 if sim.dtype == torch.float64 or n >= 2**24 else torch.float32
    diag = sim.diagonal().clone()
    a2v = torch.zeros(n, dtype=dt, device=sim.device)  # (summed into when a row spans several tiles)
    acc = torch.zeros(rows, n, dtype=dt, device=sim.device)  # column counts, one row per row of a tile
    buf = torch.empty(rows, width, dtype=dt, device=sim.device)
    diags, accs = diag.split(width), acc.split(width, 1)
    for block, thr, out in zip(sim.split(rows), diag[:, None].split(rows), a2v.split(rows)):
        for tile, d, col in zip(block.split(width, 1) if width < n else (block,), diags, accs):
            g = buf if tile.shape == buf.shape else buf[: tile.shape[0], : tile.shape[1]]
            torch.ge(tile, thr, out=g)  # audio queries: each row against its partner's similarity
            if width < n:
                out.add_(g.sum(1))
            else:  # one tile per row block: sum straight into a2v
                torch.sum(g, 1, out=out)
            torch.ge(tile, d, out=g)  # video queries: the same entries against their own partners' similarities
            (col if g is buf else col[: tile.shape[0]]).add_(g)
    return a2v.long(), acc.sum(0).long()


def retrieval_metrics(sim: Tensor) -> dict[str, Any]:
    """``{"a2v": {r1, r5, r10, median_rank, mean_rank}, "v2a": {...}, "n": N}`` for an (N, N) similarity."""
    sim = torch.as_tensor(sim)
    if tuple(sim.shape) == (0, 0):
        raise ValueError("similarity matrix is empty: no query to rank")
    a2v, v2a = retrieval_ranks(sim)
    return {"a2v": _rank_stats(a2v.cpu()), "v2a": _rank_stats(v2a.cpu()), "n": int(sim.shape[0])}


# ----- classification ----------------------------------------------------------------------------------


def average_precision(scores: Tensor, targets: Tensor) -> float:
    """AP of one class: scores (N,), targets (N,) in {0, 1}. Sum over thresholds of (R_k - R_{k-1}) P_k."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, t = scores[order].double(), targets[order].double()
    npos = t.sum()
    if npos == 0:
        return float("nan")
    tp = t.cumsum(0)
    # evaluate precision / recall only at the last element of each group of tied scores
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    tp_k, n_k = tp[last], torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
    precision, recall = tp_k / n_k, tp_k / npos
    dr = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((dr * precision).sum())


def mean_average_precision(scores: Tensor, targets: Tensor) -> float:
    """Macro mAP: scores (N, C) (logits or probabilities), targets (N, C) multi-hot; classes without positives
    are skipped."""
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(f"scores and targets must both be (N, C), got {tuple(scores.shape)}, {tuple(targets.shape)}")
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    aps = [a for a in aps if not math.isnan(a)]
    if not aps:
        raise ValueError("no class has a positive example")
    return sum(aps) / len(aps)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy of (N, C) scores against (N,) class indices."""
    return float((logits.argmax(dim=1) == labels).float().mean())


def _midranks(x: Tensor) -> Tensor:
    """1-based ranks of (N,) values, tied values sharing the mean of their ranks."""
    order = torch.argsort(x, stable=True)
    xs = x[order]
    _, inverse, counts = torch.unique_consecutive(xs, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mid = ends - (counts.double() - 1) / 2  # mean of ranks (end - count + 1) .. end
    ranks = torch.empty_like(x, dtype=torch.float64)
    ranks[order] = mid[inverse]
    return ranks


def roc_auc(scores: Tensor, targets: Tensor) -> float:
    """ROC AUC of one class: scores (N,), targets (N,) in {0, 1}; NaN when one of the two groups is empty."""
    t = targets > 0.5
    npos, nneg = int(t.sum()), int((~t).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    r = _midranks(scores.double())
    return float((r[t].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def d_prime(auc: float) -> float:
    """``sqrt(2) * Phi^-1(auc)``: the separation of two unit Gaussians that would give this AUC."""
    return math.sqrt(2.0) * float(torch.special.ndtri(torch.tensor(float(auc), dtype=torch.float64)))


def accuracy_vs_targets(scores: Tensor, targets: Tensor) -> float:
    """Top-1 accuracy of (N, C) scores against argmax of (N, C) targets, over the clips with a label."""
    keep = targets.amax(dim=1) > 0
    if not keep.any():
        raise ValueError("no clip has a label: accuracy is undefined")
    return float((scores[keep].argmax(1) == targets[keep].argmax(1)).double().mean())


def classification_metrics(scores: Tensor, targets: Tensor) -> dict[str, float]:
    """{"mAP", "accuracy", "AUC", "d_prime"} of (N, C) scores (probabilities or logits) and multi-hot targets."""
    if scores.shape != targets.shape or scores.dim() != 2:
        raise ValueError(f"scores and targets must both be (N, C), got {tuple(scores.shape)}, {tuple(targets.shape)}")
    scores, targets = scores.double(), (targets > 0.5).double()
    aucs = [roc_auc(scores[:, c], targets[:, c]) for c in range(scores.shape[1])]
    aucs = [a for a in aucs if not math.isnan(a)]
    auc = sum(aucs) / len(aucs) if aucs else float("nan")
    return {"mAP": mean_average_precision(scores, targets), "accuracy": accuracy_vs_targets(scores, targets),
            "AUC": auc, "d_prime": d_prime(auc) if aucs else float("nan")}


__all__ = ["accuracy", "accuracy_vs_targets", "average_precision", "classification_metrics", "d_prime",
           "mean_average_precision", "retrieval_metrics", "retrieval_ranks", "roc_auc"]
