"""Figures for the tutorial: every tensor of CAV-MAE as a picture.

Inputs use the model's conventions (spec §2, §3): an audio clip is a normalised log-mel fbank ``(T, F)``
(10 ms per frame), a frame is an ImageNet-normalised ``(3, H, W)`` image. Plot functions take an optional
matplotlib ``ax`` and return the figure they drew on, with labelled axes, units and colour bars.

Contents
  inputs         plot_waveform, plot_fbank, plot_frame, plot_frames (patch grid + token indices)
  masking        masked_fbank, masked_frame, plot_mask, plot_masking
  reconstruction unnormalize_patches, reconstruct -> Reconstruction, plot_reconstruction
  contrastive    similarity_matrix, plot_similarity, softmax_with_temperature, plot_temperature,
                 pca_2d, plot_embedding_map
  training       plot_loss_curves
  listening      fbank_to_waveform (approximate inversion: inverse mel + Griffin-Lim)
  CLI            ``cavmae-lite reconstruct CLIP --checkpoint CKPT --out fig.png``
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from .reconstruction import STATS, unnormalize_patches
from .tokenizers import patchify_audio, patchify_video, unpatchify_audio, unpatchify_video

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FBANK_MEAN, FBANK_STD = -5.081, 4.4849  # AudioSet statistics used by every official script (spec §2.2)
HOP_S = 0.01  # fbank frame shift: 10 ms
SPEC_CMAP, SIM_CMAP = "magma", "viridis"
MASK_COLOR = "#c8c8c8"  # light grey for removed patches


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


def _np(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def _axes(ax=None, figsize=(6, 4)):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def frame_to_rgb(frame: Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """ImageNet-normalised (3, H, W) -> displayable (H, W, 3) array in [0, 1]. NaNs (masked pixels) stay NaN."""
    f = frame.detach().float().cpu()
    f = f * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)
    return f.permute(1, 2, 0).clamp(0, 1).numpy()


def _fill_nan(img: np.ndarray, color: str = MASK_COLOR) -> np.ndarray:
    rgb = np.asarray(matplotlib.colors.to_rgb(color), dtype=img.dtype)
    return np.where(np.isnan(img), rgb, img)


def _fontsize_for(n_tokens: int) -> float:
    return float(np.clip(80 / math.sqrt(max(n_tokens, 1)), 4.0, 9.0))


def draw_patch_grid(ax, rows: int, cols: int, cell_w: float, cell_h: float, indices: bool = True,
                    origin: str = "upper", color: str = "white", fontsize: float | None = None,
                    x0: float = 0.0, y0: float = 0.0) -> None:
    """Draw a rows x cols patch grid in data coordinates and (optionally) each token's index k = r * cols + c.

    ``origin="upper"``: row 0 at the top (images); ``"lower"``: row 0 at the bottom (spectrograms, low bins).
    """
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    for c in range(cols + 1):
        ax.axvline(x0 + c * cell_w, color=color, lw=0.4, alpha=0.6)
    for r in range(rows + 1):
        ax.axhline(y0 + r * cell_h, color=color, lw=0.4, alpha=0.6)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    if not indices:
        return
    fs = fontsize or _fontsize_for(rows * cols)
    for r in range(rows):
        yc = y0 + (r + 0.5) * cell_h
        for c in range(cols):
            ax.text(x0 + (c + 0.5) * cell_w, yc, str(r * cols + c), ha="center", va="center", fontsize=fs,
                    color=color, alpha=0.9, clip_on=True)
    del origin  # the caller's extent already puts row 0 where it belongs


# ---------------------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------------------


def plot_waveform(wave: Tensor, sample_rate: int = 16000, ax=None, title: str = "waveform"):
    """(N,) or (C, N) waveform -> amplitude vs time in seconds."""
    fig, ax = _axes(ax, (10, 2.2))
    w = _np(wave)
    w = w[0] if w.ndim == 2 else w
    t = np.arange(w.shape[0]) / sample_rate
    ax.plot(t, w, lw=0.4, color="tab:blue")
    ax.set(xlabel="time (s)", ylabel="amplitude (float PCM)", title=title, xlim=(0, t[-1] if len(t) else 1))
    return fig


def plot_fbank(fbank: Tensor, ax=None, patch_size: int | None = 16, indices: bool | None = None, title: str | None = None,
               colorbar: bool = True, hop_s: float = HOP_S, vmin: float | None = None, vmax: float | None = None,
               label: str = "normalised log-mel (a.u.)", grid_color: str = "white", fontsize: float | None = None):
    """Spectrogram (T, F) with time (s) on x, mel bin on y (low at the bottom), and the p x p patch grid.

    Token k = f * (T/p) + t: rows are frequency bands (0 = lowest), columns are time steps (spec §3.2).
    NaN entries (masked patches) are drawn in light grey. ``indices`` defaults to True up to 256 tokens
    (zoom in with ``ax.set_xlim`` to read them on a full 512-token clip).
    """
    fb = _np(fbank)
    T, F = fb.shape
    fig, ax = _axes(ax, (min(14, 3 + T / 80), 3.2))
    cmap = plt.get_cmap(SPEC_CMAP).with_extremes(bad=MASK_COLOR)
    im = ax.imshow(fb.T, origin="lower", aspect="auto", cmap=cmap, extent=(0, T * hop_s, 0, F),
                   vmin=vmin, vmax=vmax, interpolation="nearest")
    if patch_size:
        if indices is None:
            indices = (F // patch_size) * (T // patch_size) <= 256
        draw_patch_grid(ax, F // patch_size, T // patch_size, patch_size * hop_s, patch_size, indices,
                        origin="lower", color=grid_color, fontsize=fontsize)
    ax.set(xlabel="time (s)", ylabel="mel bin", title=title or f"log-mel fbank {T}x{F}")
    if colorbar:
        fig.colorbar(im, ax=ax, label=label, pad=0.01)
    return fig


def plot_frame(frame: Tensor, ax=None, patch_size: int | None = 16, indices: bool = True, title: str | None = None,
               normalized: bool = True, grid_color: str = "white"):
    """Frame (3, H, W) (ImageNet-normalised unless ``normalized=False``) with its patch grid and token indices."""
    img = frame_to_rgb(frame) if normalized else frame.detach().float().permute(1, 2, 0).clamp(0, 1).cpu().numpy()
    H, W = img.shape[:2]
    fig, ax = _axes(ax, (4.2, 4.2))
    ax.imshow(_fill_nan(img), extent=(0, W, H, 0), interpolation="nearest")
    if patch_size:
        draw_patch_grid(ax, H // patch_size, W // patch_size, patch_size, patch_size, indices, color=grid_color)
    ax.set(xlabel="x (pixels)", ylabel="y (pixels)", title=title or f"frame 3x{H}x{W}")
    return fig


def plot_frames(frames: Tensor, fps: float = 1.0, axes=None, title: str | None = None, highlight: int | None = None):
    """A row of (N, 3, H, W) frames labelled with their time stamps; ``highlight`` frames one in red."""
    n = frames.shape[0]
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(1.5 * n, 1.9), layout="constrained")
    axes = np.atleast_1d(axes)
    for i, ax in enumerate(axes):
        ax.imshow(frame_to_rgb(frames[i]))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"t = {i / fps:.1f} s", fontsize=8)
        if highlight == i:
            for s in ax.spines.values():
                s.set(color="red", lw=2.5)
    fig = axes[0].figure
    if title:
        fig.suptitle(title)
    return fig


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
    m = _np(mask).reshape(grid)
    fig, ax = _axes(ax, (max(3, grid[1] / 6), max(2, grid[0] / 4)))
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
    ``"visible"`` for a norm_pix model and ``"none"`` otherwise (see :func:`unnormalize_patches`).
    """
    c = model.config
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
        out.mask_a[0].cpu(), out.mask_v[0].cpu(), float(out.loss_rec_a), float(out.loss_rec_v), stats, p)


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
    unit = "input units" if rec.stats == "none" else "per-patch normalised targets"
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
    fig.suptitle(title or f"CAV-MAE reconstruction (un-normalised with {rec.stats!r} patch statistics)")
    return fig


# ---------------------------------------------------------------------------------------------------------
# contrastive
# ---------------------------------------------------------------------------------------------------------


def similarity_matrix(audio_emb: Tensor, video_emb: Tensor) -> Tensor:
    """Cosine similarities (N, M): S[i, j] = <a_i, v_j> / (|a_i| |v_j|); rows audio, columns video."""
    a = torch.nn.functional.normalize(audio_emb.float(), dim=-1)
    v = torch.nn.functional.normalize(video_emb.float(), dim=-1)
    return a @ v.T


def plot_similarity(sim: Tensor, frames: Tensor | None = None, fbanks: Tensor | None = None, ax=None,
                    values: bool | None = None, title: str = "audio-visual cosine similarity",
                    vmin: float | None = None, vmax: float | None = None, label: str = "cosine similarity"):
    """Similarity matrix with video frames above the columns and spectrogram snippets left of the rows.

    sim (N, M): rows = audio clips, columns = video clips; frames (M, 3, H, W); fbanks (N, T, F).
    ``values`` prints each cell (default: when N, M <= 12). The true pairs are on the diagonal.
    """
    S = _np(sim)
    N, M = S.shape
    fig, ax = _axes(ax, (1.1 + 0.75 * M + (1.4 if fbanks is not None else 0), 1.0 + 0.7 * N
                         + (0.9 if frames is not None else 0)))
    im = ax.imshow(S, cmap=SIM_CMAP, vmin=vmin, vmax=vmax, extent=(-0.5, M - 0.5, N - 0.5, -0.5))
    values = (N <= 12 and M <= 12) if values is None else values
    if values:
        mid = (np.nanmax(S) + np.nanmin(S)) / 2 if vmin is None or vmax is None else (vmin + vmax) / 2
        for i in range(N):
            for j in range(M):
                ax.text(j, i, f"{S[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if S[i, j] > mid else "white")
    for k in range(min(N, M)):  # outline the true pairs
        ax.add_patch(matplotlib.patches.Rectangle((k - 0.5, k - 0.5), 1, 1, fill=False, ec="red", lw=1.2))
    top, left = -0.5, -0.5
    if frames is not None:
        for j in range(min(M, frames.shape[0])):
            ax.imshow(frame_to_rgb(frames[j]), extent=(j - 0.45, j + 0.45, -0.6, -1.5))
        top = -1.6
    if fbanks is not None:
        for i in range(min(N, fbanks.shape[0])):
            ax.imshow(_np(fbanks[i]).T, origin="lower", cmap=SPEC_CMAP, aspect="auto",
                      extent=(-2.2, -0.6, i + 0.45, i - 0.45))
        left = -2.3
    ax.set_xlim(left, M - 0.5)
    ax.set_ylim(N - 0.5, top)
    ax.set_xticks(range(M))
    ax.set_yticks(range(N))
    ax.set(xlabel="video clip j (frame)", ylabel="audio clip i (spectrogram)", title=title)
    for s in ax.spines.values():
        s.set_visible(False)
    fig.colorbar(im, ax=ax, label=label, shrink=0.8, pad=0.02)
    return fig


def softmax_with_temperature(sim: Tensor, temperature: float, dim: int = 0) -> Tensor:
    """p = softmax(S / tau) along ``dim``; the official loss normalises over audios (dim 0) for each video."""
    return torch.softmax(sim.float() / temperature, dim=dim)


def plot_temperature(sim: Tensor, column: int = 0, temperatures: Sequence[float] = (1.0, 0.2, 0.05), ax=None):
    """For video ``column``, p(audio i | video j) = softmax_i(S[i, j] / tau) for several temperatures tau."""
    S = sim.float()
    N = S.shape[0]
    fig, ax = _axes(ax, (7, 3.4))
    width = 0.8 / len(temperatures)
    for k, tau in enumerate(temperatures):
        p = softmax_with_temperature(S, tau, dim=0)[:, column]
        ax.bar(np.arange(N) + (k - (len(temperatures) - 1) / 2) * width, _np(p), width=width,
               label=f"tau = {tau:g} (p_true = {float(p[column]):.2f})")
    ax.axvline(column, color="red", lw=1, ls="--", label=f"true partner (audio {column})")
    ax.axhline(1 / N, color="gray", lw=0.8, ls=":", label=f"uniform 1/N = {1 / N:.2f}")
    ax.set(xlabel="audio clip i", ylabel=f"p(audio i | video {column})", ylim=(0, 1.02), xticks=range(N),
           title=f"softmax over the batch's audios for video {column}")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def pca_2d(x: Tensor) -> tuple[Tensor, Tensor]:
    """(M, D) -> (M, 2) projection on the first two principal components, and their explained-variance ratios."""
    x = x.float() - x.float().mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    var = s**2
    return x @ vh[:2].T, var[:2] / var.sum().clamp(min=1e-12)


def plot_embedding_map(audio_emb: Tensor, video_emb: Tensor, labels: Sequence | Tensor | None = None, ax=None,
                       connect: bool = True, title: str = "PCA of audio and video embeddings",
                       label_names: Sequence[str] | None = None, max_lines: int = 80):
    """Both modalities' (N, D) embeddings in one 2-D PCA map: circles audio, triangles video, grey lines pairs.

    Embeddings are L2-normalised first (as for retrieval). Colour = ``labels`` if given. Only the first
    ``max_lines`` pairs are joined by a line (more would hide the points).
    """
    a = torch.nn.functional.normalize(audio_emb.float(), dim=-1)
    v = torch.nn.functional.normalize(video_emb.float(), dim=-1)
    N = a.shape[0]
    xy, ratio = pca_2d(torch.cat([a, v]))
    xy = _np(xy)
    fig, ax = _axes(ax, (6.2, 5.2))
    lab = np.zeros(N, dtype=int) if labels is None else np.asarray(
        labels.cpu().tolist() if isinstance(labels, Tensor) else list(labels))
    if connect:
        for i in range(min(N, max_lines)):
            ax.plot([xy[i, 0], xy[N + i, 0]], [xy[i, 1], xy[N + i, 1]], color="gray", lw=0.4, alpha=0.5, zorder=1)
    cmap = plt.get_cmap("tab10")
    uniq = list(dict.fromkeys(lab.tolist()))
    for k, u in enumerate(uniq):
        sel = lab == u
        name = (label_names[int(u)] if label_names is not None else f"class {u}") if labels is not None else None
        ax.scatter(xy[:N][sel, 0], xy[:N][sel, 1], marker="o", s=28, color=cmap(k % 10), edgecolor="k", lw=0.3,
                   label=f"audio, {name}" if name else "audio", zorder=2)
        ax.scatter(xy[N:][sel, 0], xy[N:][sel, 1], marker="^", s=34, color=cmap(k % 10), alpha=0.6,
                   label=f"video, {name}" if name else "video", zorder=2)
    ax.set(xlabel=f"PC 1 ({100 * float(ratio[0]):.0f} % of variance)",
           ylabel=f"PC 2 ({100 * float(ratio[1]):.0f} % of variance)", title=title)
    ax.legend(fontsize=7, ncol=2 if len(uniq) > 3 else 1, loc="best")
    return fig


# ---------------------------------------------------------------------------------------------------------
# training curves
# ---------------------------------------------------------------------------------------------------------


def _history_columns(history) -> dict[str, np.ndarray]:
    if isinstance(history, dict):
        return {k: np.asarray(v, dtype=float) for k, v in history.items()}
    rows = list(history)
    keys = [k for k in dict.fromkeys(k for r in rows for k in r) if all(
        isinstance(r.get(k, 0.0), (int, float)) for r in rows)]
    return {k: np.asarray([float(r.get(k, np.nan)) for r in rows]) for k in keys}


def plot_loss_curves(history: Iterable[dict] | dict[str, Sequence[float]], axes=None, x: str = "step",
                     chance: float | None = None, title: str = "pretraining"):
    """Loss terms (left, log scale) and accuracy-like metrics (right, e.g. c_acc) against the training step.

    ``history``: a list of per-step dicts (as a metrics JSON-lines file) or a dict of columns.
    ``chance``: draw the chance level of c_acc (1 / batch size).
    """
    cols = _history_columns(history)
    xs = cols.pop(x, None)
    skip = {"epoch", "lr", "time", "samples_per_s", "seconds", "wall", "samples", "batch_size"}
    losses = [k for k in cols if "loss" in k and k not in skip]
    accs = [k for k in cols if ("acc" in k or k.startswith("r")) and k not in losses and k not in skip
            and np.nanmax(np.abs(cols[k])) <= 1.0 + 1e-6]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.4), layout="constrained")
    ax_l, ax_r = axes
    xs = np.arange(len(next(iter(cols.values())))) if xs is None else xs
    for k in losses:
        ax_l.plot(xs, cols[k], label=k, lw=1.2)
    ax_l.set(xlabel=x, ylabel="loss (log scale)", title=f"{title}: losses")
    if losses and np.nanmin([np.nanmin(cols[k]) for k in losses]) > 0:
        ax_l.set_yscale("log")
    if losses:
        ax_l.legend(fontsize=8)
    for k in accs:
        ax_r.plot(xs, cols[k], label=k, lw=1.2)
    if chance is not None:
        ax_r.axhline(chance, color="gray", ls=":", label=f"chance = {chance:.2f}")
    ax_r.set(xlabel=x, ylabel="accuracy (fraction)", ylim=(0, 1.02), title=f"{title}: contrastive accuracy")
    if accs or chance is not None:
        ax_r.legend(fontsize=8)
    return ax_l.figure


# ---------------------------------------------------------------------------------------------------------
# listening: approximate fbank inversion
# ---------------------------------------------------------------------------------------------------------


def fbank_to_waveform(fbank: Tensor, normalized: bool = True, mean: float = FBANK_MEAN, std: float = FBANK_STD,
                      sample_rate: int = 16000, n_iter: int = 32, seed: int = 0, preemphasis: float = 0.97) -> Tensor:
    """Approximate inverse of the Kaldi fbank (spec §2.2): (T, 128) log-mel -> (N,) waveform at ``sample_rate``.

    log-mel -> mel energies (exp) -> power spectrum (non-negative least squares against Kaldi's own mel
    filters, multiplicative updates) -> phase by Griffin-Lim (25 ms Hann window, 10 ms hop, FFT 512) ->
    undo the 0.97 pre-emphasis. The phase is invented and the mel filters blur the fine structure, so it
    sounds rough, but pitch, rhythm and loudness survive. NaN bins (masked) are treated as silence.
    """
    import torchaudio
    from torchaudio.compliance.kaldi import get_mel_banks

    fb = fbank.detach().float().cpu()
    if normalized:
        fb = fb * std + mean
    fb = torch.nan_to_num(fb, nan=float(fb[torch.isfinite(fb)].min()) if torch.isfinite(fb).any() else -15.0)
    win, hop, n_fft = int(0.025 * sample_rate), int(0.010 * sample_rate), 512
    banks, _ = get_mel_banks(fb.shape[1], n_fft, float(sample_rate), 20.0, 0.0, 100.0, -500.0, 1.0)  # (F, 256)
    banks = torch.nn.functional.pad(banks, (0, 1)).float()  # Kaldi pads a zero column for the Nyquist bin
    mel = fb.exp().T  # (F, T)
    power = banks.T @ mel  # initial guess (257, T)
    power = power.clamp(min=1e-10)
    for _ in range(50):  # NNLS by multiplicative updates: minimise |B x - mel|^2 with x >= 0
        power = power * (banks.T @ mel) / (banks.T @ (banks @ power)).clamp(min=1e-12)
    griffin = torchaudio.transforms.GriffinLim(n_fft=n_fft, n_iter=n_iter, win_length=win, hop_length=hop, power=2.0,
                                               window_fn=lambda n: torch.hann_window(n, periodic=False))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wave = griffin(power)  # frame t centred on sample t * hop
    # Kaldi's frame t covers samples [t * hop, t * hop + win): shift by half a window, pad to the covered length
    wave = torch.nn.functional.pad(wave, (win // 2, win - win // 2))
    if preemphasis:
        wave = torchaudio.functional.lfilter(wave[None], torch.tensor([1.0, -preemphasis]), torch.tensor([1.0, 0.0]),
                                             clamp=False)[0]
    wave = wave - wave.mean()
    return wave / wave.abs().max().clamp(min=1e-8) * 0.9


__all__ = [
    "FBANK_MEAN",
    "FBANK_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "STATS",
    "Reconstruction",
    "draw_patch_grid",
    "fbank_to_waveform",
    "frame_to_rgb",
    "masked_fbank",
    "masked_frame",
    "pca_2d",
    "plot_embedding_map",
    "plot_fbank",
    "plot_frame",
    "plot_frames",
    "plot_loss_curves",
    "plot_mask",
    "plot_masking",
    "plot_reconstruction",
    "plot_similarity",
    "plot_temperature",
    "plot_waveform",
    "reconstruct",
    "similarity_matrix",
    "softmax_with_temperature",
    "unnormalize_patches",
]
