"""The two CAV-MAE losses (spec §3.10): masked reconstruction L_r and contrastive InfoNCE L_c."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor


def normalize_patches(target: Tensor, eps: float = 1e-6) -> Tensor:
    """Standardise each patch over its own values: (t - mean) / sqrt(var + eps), var unbiased (N - 1).

    target: (B, L, P) -> (B, L, P). This is ``norm_pix_loss``'s target.
    """
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)  # unbiased, as the official code
    return (target - mean) / (var + eps) ** 0.5


def reconstruction_loss(pred: Tensor, target: Tensor, mask: Tensor, norm_pix_loss: bool = True) -> Tensor:
    """Mean squared error on masked patches only.

    L_r = sum_i mask_i * mean_p (pred_ip - target_ip)^2 / sum_i mask_i

    pred, target: (B, L, P) patches; mask: (B, L), 1 = masked (scored), 0 = visible (ignored).
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask must be (B, L) = {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
    if pred.device.type == "meta":  # shape checks without data: the dense form, no data-dependent sizes
        t = normalize_patches(target) if norm_pix_loss else target
        return (((pred - t) ** 2).mean(dim=-1) * mask).sum() / mask.sum().clamp(min=1)
    if mask.dtype != torch.bool:
        odd = mask[(mask != 0) & (mask != 1)]
        if odd.numel():
            raise ValueError(f"mask must hold only 0 and 1 (1 = masked), got {odd.numel()} other values, "
                             f"e.g. {odd[0].item():g}")
    scored = mask.bool()  # only masked patches enter the loss, so only they are normalised and compared
    if not scored.any():  # nothing masked: 0 (not NaN), still attached to the graph
        return pred.float().sum() * 0.0
    with torch.no_grad():  # the target is data: no graph for its normalisation
        target = target[scored].float()  # (N_masked, P)
        if norm_pix_loss:
            target = normalize_patches(target)
    per_patch = (pred[scored].float() - target).pow(2).mean(dim=-1)  # (N_masked,)
    # Same value as the official sum over all patches of mask * mse / sum(mask), with the work of the masked
    # patches only (15 % of them under the tiny preset).
    return per_patch.sum() / scored.sum()


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (B, D) from every rank along dim 0, keeping gradients (identity when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


@dataclass
class ContrastiveResult:
    """loss: InfoNCE (unweighted); accuracy: fraction of queries whose best match is their partner;
    logits: (N, N) similarities / tau, rows = audio, columns = video."""

    loss: Tensor
    accuracy: Tensor
    logits: Tensor


def _nce_over_dim0(logits: Tensor) -> tuple[Tensor, Tensor]:
    """For each column j: -log softmax_i(logits)[j, j]; accuracy = mean_j [argmax_i logits[i, j] == j]."""
    n = logits.shape[0]
    target = torch.arange(n, device=logits.device)
    loss = -torch.diagonal(F.log_softmax(logits, dim=0)).mean()
    accuracy = (logits.argmax(dim=0) == target).float().mean()
    return loss, accuracy


def info_nce(
    audio_emb: Tensor,
    video_emb: Tensor,
    temperature: float = 0.05,
    bidirectional: bool = False,
    gather: bool = False,
    groups: int = 1,
) -> ContrastiveResult:
    """InfoNCE between pooled audio and video embeddings, (N, D) each.

    S = norm(c_a) norm(c_v)^T / tau,   S[i, j] = similarity of audio i and video j.
    Single direction (official): L_c = -1/N sum_j log( exp(S[j, j]) / sum_i exp(S[i, j]) ), i.e. each video
    picks its audio among the batch. ``bidirectional`` averages that with the audio -> video direction.
    ``gather=True`` uses the embeddings of every torch.distributed rank as negatives (gradients kept).

    ``groups=G`` splits the N clips into G consecutive chunks of N / G; each chunk is its own InfoNCE (its clips
    are the only negatives) and loss and accuracy are the means over the chunks. This is what the official
    4-GPU ``DataParallel`` runs computed for a batch of 4 x 12 (their pretraining scripts). With ``gather``, group g holds chunk
    g of every rank (world * N / G clips). ``logits`` is then (G, n, n), one block per group.
    """
    if audio_emb.dim() != 2 or audio_emb.shape != video_emb.shape:
        raise ValueError(
            f"info_nce expects two (N, D) tensors of equal shape, got {tuple(audio_emb.shape)} and "
            f"{tuple(video_emb.shape)}"
        )
    n = audio_emb.shape[0]
    if groups < 1 or (groups > 1 and (n % groups or n // groups < 2)):
        raise ValueError(f"info_nce groups={groups} must divide the batch of {n} clips into chunks of at least 2")
    if gather:
        audio_emb, video_emb = all_gather_with_grad(audio_emb), all_gather_with_grad(video_emb)
    if groups == 1:
        return _info_nce_block(audio_emb, video_emb, temperature, bidirectional)
    world = audio_emb.shape[0] // n  # 1 unless gathered: rows are [rank 0's N | rank 1's N | ...]
    split = lambda x: x.reshape(world, groups, n // groups, -1).transpose(0, 1).reshape(groups, world * n // groups, -1)
    parts = [_info_nce_block(a, v, temperature, bidirectional) for a, v in zip(split(audio_emb), split(video_emb))]
    mean = lambda xs: torch.stack(xs).mean()
    return ContrastiveResult(mean([p.loss for p in parts]), mean([p.accuracy for p in parts]),
                             torch.stack([p.logits for p in parts]))


def _info_nce_block(audio_emb: Tensor, video_emb: Tensor, temperature: float, bidirectional: bool) -> ContrastiveResult:
    """InfoNCE of one (M, D) x (M, D) block, every other clip of the block a negative."""
    a = F.normalize(audio_emb, dim=-1)
    v = F.normalize(video_emb, dim=-1)
    logits = a @ v.T / temperature
    loss, acc = _nce_over_dim0(logits)
    if bidirectional:
        loss_t, acc_t = _nce_over_dim0(logits.T)
        loss, acc = (loss + loss_t) / 2, (acc + acc_t) / 2
    return ContrastiveResult(loss, acc, logits)
