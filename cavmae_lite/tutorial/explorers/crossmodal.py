"""Notebook 04: does the joint decoder use the other modality? Reconstruction with separate mask ratios."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ... import viz
from ...config import MASK_MODES
from ...losses import normalize_patches
from ...tokenizers import patchify_audio, patchify_video, unpatchify_audio, unpatchify_video
from ..widgets import Panel, float_slider, int_slider

# ---------------------------------------------------------------------------------------------------------
# 04: cross-modal reconstruction
# ---------------------------------------------------------------------------------------------------------


@dataclass
class CrossModalOutput:
    """What :func:`cross_modal_forward` returns (B clips).

    pred_a (B, La, Pa), pred_v (B, Lv, Pv): decoder outputs for every token; mask_a, mask_v: 1 = removed;
    err_a (B, La), err_v (B, Lv): per-patch squared error (mean over the patch's values) against the training
    target (per-patch standardised when the model uses norm_pix); loss_a, loss_v: the training loss of each
    modality, sum(err * mask) / sum(mask) over the batch (0 when nothing is removed), as ``reconstruction_loss``.
    """

    pred_a: Tensor
    pred_v: Tensor
    mask_a: Tensor
    mask_v: Tensor
    err_a: Tensor
    err_v: Tensor

    @staticmethod
    def _masked_mean(err: Tensor, mask: Tensor) -> Tensor:
        return (err * mask).sum() / mask.sum().clamp(min=1)

    @property
    def loss_a(self) -> float:
        return float(self._masked_mean(self.err_a, self.mask_a))

    @property
    def loss_v(self) -> float:
        return float(self._masked_mean(self.err_v, self.mask_v))


def masking_noise(config, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(noise_a (n, La), noise_v (n, Lv)) drawn as the model draws them from ``Generator().manual_seed(seed)``:
    audio first, then video. The same noise with a higher ratio removes a superset of the tokens."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.rand(n, config.num_audio_tokens, generator=g), torch.rand(n, config.num_video_tokens, generator=g)


@torch.no_grad()
def cross_modal_forward(model, audio: Tensor, video: Tensor, ratio_a: float, ratio_v: float,
                        noise_a: Tensor | None = None, noise_v: Tensor | None = None,
                        mask_mode: str = "unstructured", seed: int = 0) -> CrossModalOutput:
    """The reconstruction branch of ``CAVMAE.forward`` (embed, mask, modality blocks, joint stream, decoder) with
    separate mask ratios in [0, 1]. At ratio 1.0 a modality keeps no token: its modality-specific blocks see an
    empty sequence, the joint layer sees only the other modality, and the decoder gets mask tokens (plus
    positional and modality embeddings) for every one of its patches. The contrastive streams are not run (they
    would have nothing to pool). Without noise, it is drawn with :func:`masking_noise` (``seed``).
    """
    c, enc = model.config, model.encoder
    if mask_mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mask_mode!r}")
    was_training = model.training
    model.eval()
    if noise_a is None or noise_v is None:
        na, nv = masking_noise(c, audio.shape[0], seed)
        noise_a = na if noise_a is None else noise_a
        noise_v = nv if noise_v is None else noise_v
    e = enc.encode(audio, video, ratio_a, ratio_v, noise_a, noise_v, mask_mode)
    masked_a, masked_v, h_a, h_v = e.masked_a, e.masked_v, e.audio, e.video  # h_a (B, Ka, D), Ka may be 0
    latent = enc.joint_stream(h_a, h_v)
    pred_a, pred_v = model.decoder(latent, h_a.shape[1], masked_a.ids_restore, masked_v.ids_restore)
    model.train(was_training)
    errs = []
    for pred, target in ((pred_a, patchify_audio(audio, c.patch_size)), (pred_v, patchify_video(video, c.patch_size))):
        target = normalize_patches(target) if c.norm_pix_loss else target
        errs.append(((pred - target) ** 2).mean(dim=-1))
    return CrossModalOutput(pred_a, pred_v, masked_a.mask, masked_v.mask, *errs)


def cross_modal_study(model, audio: Tensor, video: Tensor, ratios: Sequence[float] = (0.0, 0.3, 0.5, 0.75, 0.9, 0.95, 1.0),
                      fixed_ratio: float = 0.75, mask_mode: str = "unstructured", seed: int = 0,
                      batch_size: int = 64) -> dict[str, Any]:
    """How much each modality's reconstruction depends on the other one, with fixed masking noise.

    audio (N, T, F), video (N, C, H, W). Returns ``ratios`` and four curves (one value per ratio):
      ``audio_loss``        audio masked-patch loss at audio ratio ``fixed_ratio`` (mode ``mask_mode``) while the
                            *video* ratio runs over ``ratios``;
      ``audio_loss_wrong``  the same with every clip's video replaced by the next clip's (a wrong partner);
      ``video_loss``, ``video_loss_wrong``  the reverse: video loss at ``fixed_ratio`` against the audio ratio.
    ``<curve>_clips`` holds the per-clip values, (len(ratios), N). The noise of each clip is the same at every
    ratio, so only the amount of the other modality changes; at ratio 1.0 the true and the wrong partner give the
    same value (nothing of either is visible).
    """
    n = audio.shape[0]
    noise_a, noise_v = masking_noise(model.config, n, seed)
    wrong = torch.roll(torch.arange(n), -1)  # clip i gets clip i + 1's other modality

    def per_clip(ra: float, rv: float, which: str, a: Tensor, v: Tensor) -> Tensor:
        """(N,) masked-patch loss of each clip (every clip removes the same number of patches, so their mean is
        the batch-level training loss)."""
        parts = []
        for s in range(0, n, batch_size):
            out = cross_modal_forward(model, a[s:s + batch_size], v[s:s + batch_size], ra, rv,
                                      noise_a[s:s + batch_size], noise_v[s:s + batch_size], mask_mode)
            err, mask = (out.err_a, out.mask_a) if which == "audio" else (out.err_v, out.mask_v)
            parts.append((err * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1))
        return torch.cat(parts)

    r = [float(x) for x in ratios]
    study: dict[str, Any] = {"ratios": r, "fixed_ratio": float(fixed_ratio), "mask_mode": mask_mode, "n": n, "seed": seed}
    runs = {"audio_loss": lambda x: per_clip(fixed_ratio, x, "audio", audio, video),
            "audio_loss_wrong": lambda x: per_clip(fixed_ratio, x, "audio", audio, video[wrong]),
            "video_loss": lambda x: per_clip(x, fixed_ratio, "video", audio, video),
            "video_loss_wrong": lambda x: per_clip(x, fixed_ratio, "video", audio[wrong], video)}
    for key, run in runs.items():
        clips = torch.stack([run(x) for x in r])  # (len(ratios), N)
        study[key + "_clips"] = clips
        study[key] = clips.mean(dim=1).tolist()
    return study


def plot_cross_modal(study: dict[str, Any], train_ratio: float | None = None):
    """Two panels: the audio loss against the video mask ratio, and the video loss against the audio mask ratio."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), layout="constrained")
    r, fixed = study["ratios"], study["fixed_ratio"]
    for ax, mine, other in ((axes[0], "audio", "video"), (axes[1], "video", "audio")):
        ax.plot(r, study[f"{mine}_loss"], "o-", label=f"its own {other}")
        ax.plot(r, study[f"{mine}_loss_wrong"], "s--", label=f"another clip's {other} (wrong partner)")
        if train_ratio is not None:
            ax.axvline(train_ratio, color="k", lw=0.8, ls=":", label=f"training ratio {train_ratio}")
        mode = f", {study['mask_mode']} mask" if mine == "audio" and study["mask_mode"] != "unstructured" else ""
        ax.set(xlabel=f"{other} mask ratio (1.0 = the whole {other} removed)",
               ylabel=f"{mine} masked-patch loss (normalised targets)",
               title=f"{mine} at mask ratio {fixed}{mode}, {study['n']} test clips")
        ax.legend(fontsize=8)
    return fig


@torch.no_grad()
def reconstruct_cross_modal(model, audio: Tensor, video: Tensor, ratio_a: float, ratio_v: float, seed: int = 0,
                            mask_mode: str = "unstructured", stats: str = "visible") -> tuple[viz.Reconstruction, str]:
    """The four MAE panels of one clip (audio (T, F), video (3, H, W)) with separate ratios, and a note.

    A modality with no visible patch has no statistics to un-normalise with: it is then shown with its true
    per-patch statistics (``"target"``, display only) and the note says so.
    """
    c, p = model.config, model.config.patch_size
    a, v = audio[None].float(), video[None].float()
    out = cross_modal_forward(model, a, v, ratio_a, ratio_v, mask_mode=mask_mode, seed=seed)
    tgt_a, tgt_v = patchify_audio(a, p), patchify_video(v, p)
    if not c.norm_pix_loss:
        stats = "none"
    notes, recs = [], []
    for name, pred, tgt, mask, grid in (("audio", out.pred_a, tgt_a, out.mask_a, c.audio_grid),
                                        ("video", out.pred_v, tgt_v, out.mask_v, c.video_grid)):
        s = stats
        if stats == "visible" and bool(mask.all()):
            s = "target"
            notes.append(f"{name}: nothing visible, shown with its true patch statistics")
        recs.append(viz.unnormalize_patches(pred, tgt, mask, grid, s))
    mix_a = torch.where(out.mask_a.bool()[..., None], recs[0], tgt_a)
    mix_v = torch.where(out.mask_v.bool()[..., None], recs[1], tgt_v)
    ua = lambda x: unpatchify_audio(x, p, c.audio_grid)[0]  # noqa: E731
    uv = lambda x: unpatchify_video(x, p, c.video_grid, c.in_chans)[0]  # noqa: E731
    rec = viz.Reconstruction(audio.float(), viz.masked_fbank(audio.float(), out.mask_a[0], p), ua(recs[0]), ua(mix_a),
                             video.float(), viz.masked_frame(video.float(), out.mask_v[0], p), uv(recs[1]), uv(mix_v),
                             out.mask_a[0], out.mask_v[0], out.loss_a, out.loss_v, stats, p)
    return rec, "; ".join(notes)


def render_cross_modal(model, clips: Sequence[tuple[Tensor, Tensor]], sample: int = 0, ratio_a: float = 0.75,
                       ratio_v: float = 0.75, mask_mode: str = "unstructured", seed: int = 0, stats: str = "visible"):
    """Four MAE panels of ``clips[sample]`` at separate ratios; info: each modality's loss, and the same loss with
    the *other* modality removed entirely (what the other modality is worth for this clip and mask)."""
    audio, video = clips[sample]
    rec, note = reconstruct_cross_modal(model, audio, video, ratio_a, ratio_v, seed, mask_mode, stats)
    title = f"clip {sample}: audio ratio {ratio_a:.2f} ({mask_mode}), video ratio {ratio_v:.2f}, seed {seed}"
    fig = viz.plot_reconstruction(rec, title=title + (f"\n({note})" if note else ""))
    a, v = audio[None].float(), video[None].float()
    no_video = cross_modal_forward(model, a, v, ratio_a, 1.0, mask_mode=mask_mode, seed=seed).loss_a
    no_audio = cross_modal_forward(model, a, v, 1.0, ratio_v, mask_mode=mask_mode, seed=seed).loss_v
    parts = []
    for name, r, loss, alone, other in (("audio", ratio_a, rec.loss_a, no_video, "video"),
                                        ("video", ratio_v, rec.loss_v, no_audio, "audio")):
        if r == 0:
            parts.append(f"{name}: nothing removed, no loss")
        else:
            parts.append(f"{name} loss <b>{loss:.3f}</b> (with the whole {other} removed: {alone:.3f})")
    return fig, "masked-patch loss on normalised targets, this clip: " + "; ".join(parts)


def cross_modal_panel(model, clips: Sequence[tuple[Tensor, Tensor]], ratio_a: float = 0.75, ratio_v: float = 0.75) -> Panel:
    """Clip, audio ratio, video ratio (both up to 1.0 = all removed), audio mask mode, seed, patch statistics."""
    controls = {
        "sample": int_slider(0, 0, len(clips) - 1, "clip"),
        "ratio_a": float_slider(ratio_a, 0.0, 1.0, 0.05, "audio mask ratio"),
        "ratio_v": float_slider(ratio_v, 0.0, 1.0, 0.05, "video mask ratio"),
        "mask_mode": W.Dropdown(options=list(MASK_MODES), value="unstructured", description="audio mode"),
        "seed": W.BoundedIntText(value=0, min=0, max=10_000, description="seed"),
        "stats": W.Dropdown(options=list(viz.STATS), value="visible", description="patch stats"),
    }
    return Panel(controls, lambda **v: render_cross_modal(model, clips, **v), "cross-modal reconstruction", 3)
