"""Reconstruction in input units, and how good it is: un-normalising ``norm_pix_loss`` predictions, and the
masked-patch errors of a model on a dataset next to trivial baselines.

    report = reconstruction_report(model, load_dataset("data/synthetic", model.config, split="test"))
    # {"rec_a": ..., "rec_a_zero": ..., "mse_a": ..., "mse_a_mean": ..., same for video}

``rec_*`` is the training loss (masked-patch MSE on per-patch standardised targets); predicting 0 there scores
``rec_*_zero`` (about (P - 1) / P). ``mse_*`` is the error in model-input units after un-normalising with the
statistics of the *visible* patches only (what is known at test time); predicting the mean of the clip's visible
patches for every removed patch scores ``mse_*_mean``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..losses import normalize_patches
from ..tokenizers import patchify_audio, patchify_video

STATS = ("visible", "target", "none")


def _grid_distances(grid: tuple[int, int], device=None) -> Tensor:
    rows, cols = grid
    idx = torch.arange(rows * cols, device=device)
    r, c = (idx // cols).float(), (idx % cols).float()
    return (r[:, None] - r[None]) ** 2 + (c[:, None] - c[None]) ** 2  # (L, L) squared distance in patches


def unnormalize_patches(pred: Tensor, target: Tensor, mask: Tensor, grid: tuple[int, int],
                        stats: str = "visible", eps: float = 1e-6) -> Tensor:
    """Undo ``norm_pix_loss``: the decoder predicts each patch standardised, p_hat = (p - mu_p) / sigma_p.

    pred, target: (B, L, P); mask: (B, L) with 1 = removed. Returns pred * sigma + mu, where (mu, sigma) is
      ``"target"``  the true patch's own statistics (it peeks at removed patches: for comparison only),
      ``"visible"`` the patch's own statistics if visible, else an inverse-squared-distance average over the
                    *visible* patches of the grid (only information the model was given),
      ``"none"``    nothing: the prediction is already in input space (a model trained without norm_pix, e.g.
                    the official NoNorm checkpoint, loaded with ``from_official(..., norm_pix_loss=False)``).
    """
    if stats not in STATS:
        raise ValueError(f"stats must be one of {STATS}, got {stats!r}")
    if stats == "none":
        return pred
    mu = target.mean(dim=-1, keepdim=True)  # (B, L, 1)
    sigma = (target.var(dim=-1, keepdim=True) + eps).sqrt()  # unbiased, as in the loss
    if stats == "visible":
        vis = (1 - mask.float())  # (B, L)
        w = vis[:, None, :] / _grid_distances(grid, pred.device).clamp(min=1)[None]  # (B, L, L), 1 / d^2
        w = w / w.sum(dim=-1, keepdim=True).clamp(min=1e-12)
        removed = mask.bool()[..., None]
        mu = torch.where(removed, w @ mu, mu)
        sigma = torch.where(removed, w @ sigma, sigma)
    return pred * sigma + mu


def _masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[float, float]:
    """(sum over removed patches of the per-patch MSE, number of removed patches)."""
    per_patch = ((pred - target) ** 2).mean(dim=-1)
    return float((per_patch * mask).sum()), float(mask.sum())


def _mean_visible_patch(target: Tensor, mask: Tensor) -> Tensor:
    """(B, L, P) -> (B, L, P): every position holds the mean of the clip's visible patches."""
    vis = (1 - mask.float())[..., None]
    mean = (target * vis).sum(dim=1, keepdim=True) / vis.sum(dim=1, keepdim=True).clamp(min=1)
    return mean.expand_as(target)


@torch.no_grad()
def reconstruction_report(model, dataset: Dataset, mask_ratio: float = 0.75, seed: int = 0, batch_size: int = 64,
                          max_clips: int | None = None) -> dict[str, float]:
    """Masked-patch errors of a pretraining ``CAVMAE`` on ``dataset`` (eval items), with fixed masking noise.

    Returns ``rec_a, rec_v`` (model, normalised targets when the model uses norm_pix, else input units),
    ``rec_a_zero, rec_v_zero`` (predicting 0 on the same targets), ``mse_a, mse_v`` (model, input units, visible
    statistics) and ``mse_a_mean, mse_v_mean`` (predicting the mean visible patch), each averaged over removed patches.
    """
    c = model.config
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    sums: dict[str, list[float]] = {}
    seen = 0
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        audio, video = batch["audio"], batch["video"]
        if max_clips is not None:
            audio, video = audio[: max_clips - seen], video[: max_clips - seen]
        B = audio.shape[0]
        noise_a = torch.rand(B, c.num_audio_tokens, generator=gen)
        noise_v = torch.rand(B, c.num_video_tokens, generator=gen)
        out = model(audio, video, mask_ratio, mask_ratio, noise_a=noise_a, noise_v=noise_v)
        for m, pred, target, mask, grid in (("a", out.pred_a, patchify_audio(audio, c.patch_size), out.mask_a,
                                             c.audio_grid),
                                            ("v", out.pred_v, patchify_video(video, c.patch_size), out.mask_v,
                                             c.video_grid)):
            tgt_n = normalize_patches(target) if c.norm_pix_loss else target
            in_units = unnormalize_patches(pred, target, mask, grid, "visible" if c.norm_pix_loss else "none")
            for key, (p, t) in {f"rec_{m}": (pred, tgt_n), f"rec_{m}_zero": (torch.zeros_like(pred), tgt_n),
                                f"mse_{m}": (in_units, target),
                                f"mse_{m}_mean": (_mean_visible_patch(target, mask), target)}.items():
                s, n = _masked_mse(p, t, mask)
                acc = sums.setdefault(key, [0.0, 0.0])
                acc[0] += s
                acc[1] += n
        seen += B
        if max_clips is not None and seen >= max_clips:
            break
    model.train(was_training)
    return {k: s / max(n, 1.0) for k, (s, n) in sums.items()}


__all__ = ["STATS", "reconstruction_report", "unnormalize_patches"]
