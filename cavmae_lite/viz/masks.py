"""Masks and reconstructions: masked inputs, the mask grid, the four MAE panels of one clip."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import matplotlib
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ..evaluate import unnormalize_patches
from ..tokenizers import patchify_audio, patchify_video, unpatchify_audio, unpatchify_video
from .audio import plot_fbank
from .grids import HOP_S, figure_and_axes, plot_frame, to_numpy

# ---------------------------------------------------------------------------------------------------------
# masking
# ---------------------------------------------------------------------------------------------------------


def masked_fbank(fbank: Tensor, mask: Tensor, patch_size: int) -> Tensor:
    """(T, F) fbank and its (L,) mask (1 = removed) -> the fbank with removed patches set to NaN."""
    T, F = fbank.shape
    patches = patchify_audio(fbank[None].float(), patch_size)[0]
    patches = torch.where(mask.bool()[:, None], torch.nan, patches)
    return unpatchify_audio(patches[None], patch_size, (F // patch_size, T // patch_size))[0]


def masked_frame(frame: Tensor, mask: Tensor, patch_size: int) -> Tensor:
    """(3, H, W) frame and its (L,) mask -> the frame with removed patches set to NaN (drawn grey)."""
    C, H, W = frame.shape
    patches = patchify_video(frame[None].float(), patch_size)[0]
    patches = torch.where(mask.bool()[:, None], torch.nan, patches)
    return unpatchify_video(patches[None], patch_size, (H // patch_size, W // patch_size), C)[0]


def plot_mask(mask: Tensor, grid: tuple[int, int], ax=None, title: str | None = None, origin: str = "upper",
              xlabel: str = "patch column", ylabel: str = "patch row"):
    """A (L,) 0/1 mask as its rows x cols grid: dark = removed (1), light = visible (0)."""
    m = to_numpy(mask).reshape(grid)
    fig, ax = figure_and_axes(ax, (max(3, grid[1] / 6), max(2, grid[0] / 4)))
    cmap = matplotlib.colors.ListedColormap(["#f4f1de", "#3d405b"])
    im = ax.imshow(m, cmap=cmap, vmin=0, vmax=1, origin=origin, aspect="auto", interpolation="nearest")
    cb = fig.colorbar(im, ax=ax, ticks=[0.25, 0.75], pad=0.01)
    cb.ax.set_yticklabels(["visible (0)", "masked (1)"])
    k = int((m == 0).sum())
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or f"mask: {k} of {m.size} tokens visible")
    return fig


def plot_masking(fbank: Tensor | None, frame: Tensor | None, mask_a: Tensor | None = None,
                 mask_v: Tensor | None = None, patch_size: int = 16, indices: bool = False):
    """Masked spectrogram (left) and masked frame (right); removed patches in grey; K and L in the titles."""
    panels = [x for x in (fbank, frame) if x is not None]
    widths = [3.0 if fbank is not None else 0, 1.0 if frame is not None else 0]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 4 * (fbank is not None), 3.4),
                             width_ratios=[w for w in widths if w], layout="constrained", squeeze=False)
    axes = list(axes[0])
    if fbank is not None:
        ax = axes.pop(0)
        shown = fbank if mask_a is None else masked_fbank(fbank, mask_a, patch_size)
        title = "audio" if mask_a is None else f"audio: K = {int((mask_a == 0).sum())} of {mask_a.numel()} visible"
        plot_fbank(shown, ax=ax, patch_size=patch_size, indices=indices, title=title)
    if frame is not None:
        ax = axes.pop(0)
        shown = frame if mask_v is None else masked_frame(frame, mask_v, patch_size)
        title = "video" if mask_v is None else f"video: K = {int((mask_v == 0).sum())} of {mask_v.numel()} visible"
        plot_frame(shown, ax=ax, patch_size=patch_size, indices=indices, title=title)
    return fig


# ---------------------------------------------------------------------------------------------------------
# reconstruction
# ---------------------------------------------------------------------------------------------------------

@dataclass
class Reconstruction:
    """The four MAE panels for one clip, all in model-input units (normalised fbank / normalised frame).

    audio_*: (T, F); video_*: (3, H, W); masked panels hold NaN in removed patches.
    """

    audio: Tensor
    audio_masked: Tensor
    audio_recon: Tensor
    audio_recon_visible: Tensor
    video: Tensor
    video_masked: Tensor
    video_recon: Tensor
    video_recon_visible: Tensor
    mask_a: Tensor
    mask_v: Tensor
    loss_a: float
    loss_v: float
    stats: str
    patch_size: int
    norm_pix_loss: bool = True  # the model's: its loss_a / loss_v are on per-patch normalised targets

    def errors(self) -> dict[str, float]:
        """Mean squared error over removed patches, in input units, for each modality (after un-normalising)."""
        out = {}
        for name, orig, rec, mask, p in (("audio", self.audio[None], self.audio_recon[None], self.mask_a, 0),
                                         ("video", self.video[None], self.video_recon[None], self.mask_v, 1)):
            f = patchify_audio if p == 0 else patchify_video
            err = ((f(rec, self.patch_size) - f(orig, self.patch_size)) ** 2).mean(-1)[0]
            out[name] = float((err * mask).sum() / mask.sum().clamp(min=1))
        return out


@torch.no_grad()
def reconstruct(model, audio: Tensor, video: Tensor, mask_ratio_a: float = 0.75, mask_ratio_v: float = 0.75,
                seed: int = 0, mask_mode: str = "unstructured", stats: str | None = None) -> Reconstruction:
    """Run a pretraining ``CAVMAE`` on one clip and build the four panels (original, masked, recon, recon+visible).

    audio (T, F) or (1, T, F), video (3, H, W) or (1, 3, H, W). The masking noise comes from
    ``torch.Generator().manual_seed(seed)``, so the same seed gives the same mask. ``stats`` defaults to
    ``"visible"`` for a norm_pix model and ``"none"`` otherwise (see :func:`unnormalize_patches`): a model
    trained without norm_pix_loss (``config.norm_pix_loss=False``, e.g. the official NoNorm checkpoint loaded
    with ``from_official(..., norm_pix_loss=False)``) predicts input units, and asking to un-normalise its
    predictions anyway warns (the result is then wrong; it is computed as asked, for comparison).
    """
    c = model.config
    if stats not in (None, "none") and not c.norm_pix_loss:
        warnings.warn(f"stats={stats!r} un-normalises predictions as norm_pix_loss ones, but this model was trained "
                      "without norm_pix_loss: its predictions are already in input units, so the result is wrong "
                      "(use stats='none', the default for such a model)", stacklevel=2)
    audio = audio[None] if audio.dim() == 2 else audio[:1]
    video = video[None] if video.dim() == 3 else video[:1]
    device = next(model.parameters()).device
    audio, video = audio.to(device).float(), video.to(device).float()
    stats = stats or ("visible" if c.norm_pix_loss else "none")
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(int(seed))
    out = model(audio, video, mask_ratio_a, mask_ratio_v, mask_mode=mask_mode, generator=gen)
    model.train(was_training)
    if out.pred_a is None:
        raise ValueError("this model has mae_weight = 0 (contrastive only): it has no decoder output to show")
    p = c.patch_size
    tgt_a, tgt_v = patchify_audio(audio, p), patchify_video(video, p)
    rec_a = unnormalize_patches(out.pred_a, tgt_a, out.mask_a, c.audio_grid, stats)
    rec_v = unnormalize_patches(out.pred_v, tgt_v, out.mask_v, c.video_grid, stats)
    keep_a, keep_v = out.mask_a.bool()[..., None], out.mask_v.bool()[..., None]
    mix_a, mix_v = torch.where(keep_a, rec_a, tgt_a), torch.where(keep_v, rec_v, tgt_v)
    ua = lambda x: unpatchify_audio(x, p, c.audio_grid)[0].cpu()
    uv = lambda x: unpatchify_video(x, p, c.video_grid, c.in_chans)[0].cpu()
    return Reconstruction(
        audio[0].cpu(), masked_fbank(audio[0].cpu(), out.mask_a[0].cpu(), p), ua(rec_a), ua(mix_a),
        video[0].cpu(), masked_frame(video[0].cpu(), out.mask_v[0].cpu(), p), uv(rec_v), uv(mix_v),
        out.mask_a[0].cpu(), out.mask_v[0].cpu(), float(out.loss_rec_a), float(out.loss_rec_v), stats, p,
        bool(c.norm_pix_loss))


def plot_reconstruction(rec: Reconstruction, title: str | None = None, hop_s: float = HOP_S):
    """MAE-style panels: original / masked / reconstruction / reconstruction + visible, frame and spectrogram."""
    fig = plt.figure(figsize=(15, 6.4), layout="constrained")
    sub_v, sub_a = fig.subfigures(2, 1, height_ratios=[1.1, 1])
    names = ["original", "masked", "reconstruction", "reconstruction + visible"]
    ax_v = sub_v.subplots(1, 4)
    for ax, img, name in zip(ax_v, (rec.video, rec.video_masked, rec.video_recon, rec.video_recon_visible), names):
        plot_frame(img, ax=ax, patch_size=None, title=name)
        ax.set(xlabel="x (pixels)", ylabel="y (pixels)" if ax is ax_v[0] else "")
    kv = int((rec.mask_v == 0).sum())
    unit = "per-patch normalised targets" if rec.norm_pix_loss else "input units"
    sub_v.suptitle(f"video: {kv}/{rec.mask_v.numel()} patches visible, training loss on removed patches {rec.loss_v:.3f} "
                   f"({unit})", fontsize=10)
    ax_a = sub_a.subplots(1, 4, sharey=True)
    finite = rec.audio[torch.isfinite(rec.audio)]
    lo, hi = float(finite.quantile(0.01)), float(finite.quantile(0.99))
    for ax, img, name in zip(ax_a, (rec.audio, rec.audio_masked, rec.audio_recon, rec.audio_recon_visible), names):
        plot_fbank(img, ax=ax, patch_size=None, title=name, colorbar=False, vmin=lo, vmax=hi, hop_s=hop_s)
        if ax is not ax_a[0]:
            ax.set_ylabel("")
    sub_a.colorbar(ax_a[-1].images[0], ax=list(ax_a), label="normalised log-mel (a.u.)", pad=0.01)
    ka = int((rec.mask_a == 0).sum())
    sub_a.suptitle(f"audio: {ka}/{rec.mask_a.numel()} patches visible, training loss on removed patches {rec.loss_a:.3f} "
                   f"({unit})", fontsize=10)
    how = f"un-normalised with {rec.stats!r} patch statistics" if rec.stats != "none" else "predictions as they are"
    fig.suptitle(title or f"CAV-MAE reconstruction ({how})")
    return fig
