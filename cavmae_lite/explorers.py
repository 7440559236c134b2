"""Explorers for notebooks 04 and 05: measurements as plain functions, figures as ``render_*`` functions, and thin
ipywidgets panels (:class:`cavmae_lite.widgets.Panel`) that only wire controls to them.

Notebook 04 — does the joint decoder use the other modality?
  split_seen_in_training     whether a synthetic set's test clips were training clips of the shipped model
  cross_modal_forward        the reconstruction branch with separate audio / video mask ratios, 1.0 included
                             (a fully masked modality reaches the decoder as mask tokens only)
  cross_modal_study          masked-patch loss of one modality against the other's mask ratio, with fixed noise,
                             next to the same with a wrong partner;  plot_cross_modal draws it
  render_cross_modal, cross_modal_panel   the four MAE panels with both ratios, the audio mask mode, seed

Notebook 05 — what the contrastive half learned
  modality_gap, masked_view_embeddings    geometry of the embeddings; the training-time (masked) view
  top_k, partner_rank, plot_retrieval     one query's top-k candidates (reusable for any score vector, e.g. a
                                          clip of your own against the test set in notebook 08)
  render_retrieval, retrieval_sounds, retrieval_gallery    the gallery with playable sounds
  ATTRIBUTE_PAIRS, load_attributes, plot_attribute_gallery the default data's generative factors
  clip_features, attribute_probes, ideal_perceiver_r1      probes from audio / video / joint features, the ceiling
  patch_similarity, joint_attention, object_fraction, source_map_stats, render_source_maps, source_map_panel
"""

from __future__ import annotations

import csv
import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor

from . import viz
from .config import MASK_MODES
from .losses import normalize_patches
from .masking import random_masking
from .probe import linear_probe
from .tokenizers import patchify_audio, patchify_video, unpatchify_audio, unpatchify_video
from .viz.attention import capture_attention, plot_frame_map
from .widgets import Panel, _in_notebook, _int_slider, _slider

# ---------------------------------------------------------------------------------------------------------
# shared: which clips did the shipped model see?
# ---------------------------------------------------------------------------------------------------------


def split_seen_in_training(data_dir: str | Path, card: dict[str, Any]) -> bool | None:
    """Were the test clips of the synthetic dataset at ``data_dir`` among the clips the zoo model of ``card`` was
    trained on? The generator renders clip k from (seed, k); its stamp records each split's first index (a set made
    before that numbering put a small set's test clips right after its train and val clips, inside the full train
    split). None when unknown (no ``synthetic.json``: not the synthetic data)."""
    import json

    stamp = Path(data_dir) / "synthetic.json"
    if not stamp.is_file():
        return None
    syn, data = json.loads(stamp.read_text()), card["recipe"]["data"]
    if syn.get("generator") != data.get("generator") or syn.get("seed") != data.get("seed"):
        return False
    first_test = syn.get("first_index", {}).get("test", syn["splits"]["train"] + syn["splits"]["val"])  # test00000
    return first_test < data["sizes"][0]  # the model saw clips 0 .. sizes[0] - 1 (its train split)


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
    masked_a = random_masking(enc.embed_audio(audio), ratio_a, noise_a, mask_mode, c.audio_grid)
    masked_v = random_masking(enc.embed_video(video), ratio_v, noise_v)
    h_a = enc.audio_specific(masked_a.visible)  # (B, Ka, D), Ka may be 0
    h_v = enc.video_specific(masked_v.visible)
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
        "sample": _int_slider(0, 0, len(clips) - 1, "clip"),
        "ratio_a": _slider(ratio_a, 0.0, 1.0, 0.05, "audio mask ratio"),
        "ratio_v": _slider(ratio_v, 0.0, 1.0, 0.05, "video mask ratio"),
        "mask_mode": W.Dropdown(options=list(MASK_MODES), value="unstructured", description="audio mode"),
        "seed": W.BoundedIntText(value=0, min=0, max=10_000, description="seed"),
        "stats": W.Dropdown(options=list(viz.STATS), value="visible", description="patch stats"),
    }
    return Panel(controls, lambda **v: render_cross_modal(model, clips, **v), "cross-modal reconstruction", 3)


# ---------------------------------------------------------------------------------------------------------
# 05: embedding geometry
# ---------------------------------------------------------------------------------------------------------


def modality_gap(audio: Tensor, video: Tensor) -> dict[str, float]:
    """Geometry of paired embeddings (N, D) each, after L2 normalisation.

    ``gap``: distance between the mean audio and the mean video embedding, |mean(a) - mean(v)| (0 = the two
    clouds are centred on each other, 2 = opposite poles); ``cos_true``: mean cosine of true pairs a_i . v_i;
    ``cos_random``: mean over i != j of a_i . v_j; ``cos_audio``, ``cos_video``: mean cosine between two different
    clips of the same modality.
    """
    a, v = F.normalize(audio.float(), dim=-1), F.normalize(video.float(), dim=-1)
    n = a.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    s, aa, vv = a @ v.T, a @ a.T, v @ v.T
    return {"gap": float((a.mean(0) - v.mean(0)).norm()), "cos_true": float(s.diagonal().mean()),
            "cos_random": float(s[off].mean()), "cos_audio": float(aa[off].mean()), "cos_video": float(vv[off].mean())}


@torch.no_grad()
def masked_view_embeddings(model, audio: Tensor, video: Tensor, ratio_a: float, ratio_v: float, seed: int = 0,
                           batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """The contrastive embeddings as training computes them: visible tokens only (ratio in [0, 1)), each modality
    through its own stream, mean-pooled; L2-normalised, (N, D) each. Noise from :func:`masking_noise`."""
    if not (0 <= ratio_a < 1 and 0 <= ratio_v < 1):
        raise ValueError(f"masked_view_embeddings needs ratios in [0, 1) (a token to pool), got {ratio_a}, {ratio_v}")
    c, enc = model.config, model.encoder
    was_training = model.training
    model.eval()
    noise_a, noise_v = masking_noise(c, audio.shape[0], seed)
    A, V = [], []
    for s in range(0, audio.shape[0], batch_size):
        ma = random_masking(enc.embed_audio(audio[s:s + batch_size]), ratio_a, noise_a[s:s + batch_size])
        mv = random_masking(enc.embed_video(video[s:s + batch_size]), ratio_v, noise_v[s:s + batch_size])
        A.append(enc.audio_stream(enc.audio_specific(ma.visible)).mean(dim=1))
        V.append(enc.video_stream(enc.video_specific(mv.visible)).mean(dim=1))
    model.train(was_training)
    return F.normalize(torch.cat(A), dim=-1), F.normalize(torch.cat(V), dim=-1)


# ---------------------------------------------------------------------------------------------------------
# 05: retrieval gallery
# ---------------------------------------------------------------------------------------------------------


def top_k(scores: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """Indices and values of the k highest scores of a (M,) vector, best first (ties: lower index first)."""
    order = torch.sort(scores.float(), descending=True, stable=True).indices[:k]
    return order, scores[order]


def partner_rank(scores: Tensor, true_index: int) -> int:
    """1-based rank of ``true_index`` among (M,) scores, ties counted against it (as ``evaluate.retrieval_ranks``)."""
    return int((scores >= scores[true_index]).sum())


def plot_retrieval(scores: Tensor, candidates: Tensor, kind: str, k: int = 5, true_index: int | None = None,
                   query: Tensor | None = None, query_title: str = "query", names: Sequence[str] | None = None):
    """The top-k of one query: ``scores`` (M,) against M candidates, ``candidates`` frames (M, 3, H, W) when
    ``kind="video"`` or spectrograms (M, T, F) when ``kind="audio"``. ``query`` (a spectrogram for a video search,
    a frame for an audio search) is drawn first. The true partner, if given and shown, is outlined in green."""
    if kind not in ("video", "audio"):
        raise ValueError(f"kind must be 'video' or 'audio', got {kind!r}")
    idx, vals = top_k(scores, k)
    n = len(idx) + (query is not None)
    widths = ([2.2 if kind == "video" else 1.2] if query is not None else []) + [1.2 if kind == "video" else 2.0] * len(idx)
    fig, axes = plt.subplots(1, n, figsize=(sum(widths) * 1.35, 2.9), layout="constrained", width_ratios=widths,
                             squeeze=False)
    axes = list(axes[0])
    if query is not None:
        ax = axes.pop(0)
        if kind == "video":  # an audio query
            viz.plot_fbank(query, ax=ax, patch_size=None, colorbar=False, title=query_title)
        else:
            viz.plot_frame(query, ax=ax, patch_size=None, title=query_title)
    for rank, (ax, j, s) in enumerate(zip(axes, idx.tolist(), vals.tolist()), start=1):
        name = names[j] if names is not None else f"clip {j}"
        title = f"#{rank}: {name}\nscore {s:.3f}"
        if kind == "video":
            viz.plot_frame(candidates[j], ax=ax, patch_size=None, title=title)
        else:
            viz.plot_fbank(candidates[j], ax=ax, patch_size=None, colorbar=False, title=title)
            if rank > 1:
                ax.set_ylabel("")
        if true_index is not None and j == true_index:
            for side in ax.spines.values():
                side.set(color="limegreen", lw=4)
            ax.set_title(title + " (true partner)", color="green")
    return fig


def render_retrieval(sim: Tensor, frames: Tensor, fbanks: Tensor, query: int = 0, direction: str = "a2v", k: int = 5,
                     names: Sequence[str] | None = None):
    """Gallery of one query of a similarity matrix ``sim`` (N, N), rows audio, columns video.

    ``"a2v"``: audio ``query`` (its spectrogram) against every frame; ``"v2a"``: video ``query`` against every
    spectrogram. Info: the rank of the true partner and its score."""
    if direction not in ("a2v", "v2a"):
        raise ValueError(f"direction must be 'a2v' or 'v2a', got {direction!r}")
    scores = sim[query] if direction == "a2v" else sim[:, query]
    name = names[query] if names is not None else f"clip {query}"
    if direction == "a2v":
        fig = plot_retrieval(scores, frames, "video", k, query, fbanks[query], f"query: audio of {name}", names)
    else:
        fig = plot_retrieval(scores, fbanks, "audio", k, query, frames[query], f"query: frame of {name}", names)
    rank = partner_rank(scores, query)
    n = scores.shape[0]
    info = (f"{'audio' if direction == 'a2v' else 'video'} query {html.escape(name)}: true partner at rank "
            f"<b>{rank}</b> of {n} (score {float(scores[query]):.3f}; best {float(scores.max()):.3f}; "
            f"chance of rank 1 = 1/{n})")
    return fig, info


def retrieval_sounds(sim: Tensor, query: int = 0, direction: str = "a2v", k: int = 5,
                     names: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(caption, clip index) of the sounds that go with :func:`render_retrieval`: the query's own audio for
    ``"a2v"``; the top-k retrieved audios (best first) for ``"v2a"``."""
    label = (lambda j: names[j]) if names is not None else (lambda j: f"clip {j}")
    if direction == "a2v":
        return [(f"query: audio of {label(query)}", query)]
    idx, vals = top_k(sim[:, query], k)
    return [(f"#{r}: audio of {label(j)} (score {s:.3f}){' = true partner' if j == query else ''}", j)
            for r, (j, s) in enumerate(zip(idx.tolist(), vals.tolist()), start=1)]


def clip_waveform(dataset, i: int) -> Tensor:
    """The (samples,) 16 kHz waveform of item ``i`` of an ``AVDataset``, read from its wav file on disk."""
    from .data import load_audio

    return load_audio(dataset.manifest.wav_path(dataset.manifest.entries[dataset.rows[i]]))


def audio_player(wave: Tensor, rate: int = 16_000):
    """An ``IPython.display.Audio`` of a waveform at its real level (not peak-normalised: loudness is a cue)."""
    from IPython.display import Audio

    return Audio(wave.clamp(-1, 1).numpy(), rate=rate, normalize=False)


class GalleryPanel(Panel):
    """A :class:`Panel` with a second output area where the sounds of the current view can be played."""

    def __init__(self, controls, render, sounds: Callable[..., list[tuple[str, int]]], wave: Callable[[int], Tensor],
                 title: str = "", columns: int = 3):
        self._sounds, self._wave = sounds, wave
        self.sound_output = W.Output()
        self.last_sounds: list[tuple[str, int]] = []
        super().__init__(controls, render, title, columns)
        self.widget = W.VBox([*self.widget.children, self.sound_output])

    def refresh(self, *args: Any) -> str:
        info = super().refresh(*args)
        self.last_sounds = self._sounds(**self.values())
        if _in_notebook():  # outputs set directly, not captured with `with output:` (see widgets.show_figure)
            from IPython.display import HTML

            self.sound_output.outputs = ()
            for caption, j in self.last_sounds:
                self.sound_output.append_display_data(HTML(f"<small>{html.escape(caption)}</small>"))
                self.sound_output.append_display_data(audio_player(self._wave(j)))
        return info


def retrieval_gallery(sim: Tensor, frames: Tensor, fbanks: Tensor, wave: Callable[[int], Tensor], k: int = 5,
                      names: Sequence[str] | None = None) -> GalleryPanel:
    """Pick a query clip and a direction; see the top-k with scores and the true partner's rank; hear the sounds.

    ``wave(j)`` returns clip j's waveform (e.g. ``lambda j: clip_waveform(test_set, j)``)."""
    controls = {
        "query": _int_slider(0, 0, sim.shape[0] - 1, "query clip"),
        "direction": W.ToggleButtons(options=[("audio -> video", "a2v"), ("video -> audio", "v2a")], value="a2v",
                                     description="search"),
    }
    return GalleryPanel(controls, lambda **v: render_retrieval(sim, frames, fbanks, k=k, names=names, **v),
                        lambda **v: retrieval_sounds(sim, k=k, names=names, **v), wave, "retrieval gallery", 2)


# ---------------------------------------------------------------------------------------------------------
# 05: the default data's generative factors
# ---------------------------------------------------------------------------------------------------------

# (attribute, in the picture, in the sound, how it is stored in attributes.csv) — see cavmae_lite.data.synthetic
ATTRIBUTE_PAIRS: tuple[tuple[str, str, str, str], ...] = (
    ("shape", "object shape: circle / square / triangle / star", "timbre: sine / odd harmonics / all harmonics / "
     "inharmonic partials (bell)", "name; `timbre` column"),
    ("hue", "object colour, hue in [0, 0.8)", "pitch: 200 Hz x 2^(3 hue / 0.8), 200-1600 Hz", "`hue`; `f0_hz`"),
    ("size", "object radius 8-16 px", "loudness: -24 to -6 dB gain", "`size` in [0, 1); `gain_db`"),
    ("count", "1-4 objects", "1-4 beeps", "`count`"),
    ("aspect", "objects stretched wide (> 1) or tall (< 1)", "pitch glide per beep: up (wide) or down (tall), "
     "up to 0.5 octave", "`aspect` in [1/1.6, 1.6]; `glide_oct`"),
)
DISCRETE = ("shape", "count")
CONTINUOUS = ("hue", "size", "aspect")
# the range each continuous attribute is drawn from (aspect: log-uniform), for binning into equal levels
RANGES = {"hue": (0.0, 0.8), "size": (0.0, 1.0), "aspect": (-math.log(1.6), math.log(1.6))}


def attribute_table_markdown() -> str:
    """:data:`ATTRIBUTE_PAIRS` as a markdown table."""
    rows = ["| attribute | in the picture | in the sound | in `attributes.csv` |", "|---|---|---|---|"]
    rows += [f"| **{a}** | {p} | {s} | {c} |" for a, p, s, c in ATTRIBUTE_PAIRS]
    return "\n".join(rows)


def load_attributes(dataset) -> dict[str, Tensor]:
    """The hidden attributes of every item of an ``AVDataset`` of the default data, in item order.

    Reads ``attributes.csv`` beside the manifest. Returns float tensors (N,) per numeric column, ``shape`` as an
    index into ``SHAPES``, ``count`` as an integer, and ``log_aspect`` = log(aspect)."""
    from .data.synthetic import SHAPES

    path = Path(dataset.manifest.root) / "attributes.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no attributes.csv (only the default synthetic data has one)")
    with path.open() as f:
        by_id = {r["video_id"]: r for r in csv.DictReader(f)}
    rows = [by_id[v] for v in dataset.video_ids]
    out: dict[str, Tensor] = {"shape": torch.tensor([SHAPES.index(r["shape"]) for r in rows]),
                              "count": torch.tensor([int(r["count"]) for r in rows])}
    for key in ("hue", "size", "aspect", "f0_hz", "gain_db", "glide_oct"):
        out[key] = torch.tensor([float(r[key]) for r in rows], dtype=torch.float64)
    out["log_aspect"] = out["aspect"].log()
    return out


def describe_clip(attrs: dict[str, Tensor], i: int) -> str:
    """One line naming clip i's attributes and how each sounds."""
    from .data.synthetic import SHAPES

    n = int(attrs["count"][i])
    return (f"{n} {SHAPES[int(attrs['shape'][i])]}{'s' if n > 1 else ''}, hue {float(attrs['hue'][i]):.2f} "
            f"({float(attrs['f0_hz'][i]):.0f} Hz), size {float(attrs['size'][i]):.2f} "
            f"({float(attrs['gain_db'][i]):.0f} dB), aspect {float(attrs['aspect'][i]):.2f} "
            f"(glide {float(attrs['glide_oct'][i]):+.2f} oct)")


def plot_attribute_gallery(frames: Tensor, fbanks: Tensor, attrs: dict[str, Tensor], indices: Sequence[int]):
    """Each chosen clip as a column: its frame on top, its spectrogram below (one colour scale for all of them, so
    that loudness compares), its attributes in the title. ``frames``, ``fbanks``: the chosen clips, in order."""
    n = len(indices)
    fig, axes = plt.subplots(2, n, figsize=(3.6 * n + 0.8, 5.6), layout="constrained", height_ratios=[1.25, 1],
                             squeeze=False)
    values = fbanks.float().flatten()
    lo, hi = float(values.quantile(0.01)), float(values.quantile(0.995))
    for col, i in enumerate(indices):
        line = describe_clip(attrs, i).replace(", hue", "\nhue").replace(", aspect", "\naspect")
        viz.plot_frame(frames[col], ax=axes[0, col], patch_size=None, title=f"clip {i}: {line}")
        axes[0, col].title.set_fontsize(8)
        viz.plot_fbank(fbanks[col], ax=axes[1, col], patch_size=None, colorbar=False, vmin=lo, vmax=hi,
                       title=f"clip {i}: its sound")
        if col:
            axes[0, col].set_ylabel("")
            axes[1, col].set_ylabel("")
    fig.colorbar(axes[1, -1].images[0], ax=list(axes[1]), label="normalised log-mel (a.u.)", pad=0.01)
    return fig


@torch.no_grad()
def clip_features(model, audio: Tensor, video: Tensor, batch_size: int = 64) -> dict[str, Tensor]:
    """Mean-pooled, unmasked features (N, D) of three streams: ``audio`` and ``video`` (each modality alone through
    its stream: the retrieval features before L2 normalisation) and ``joint`` (audio and video tokens together
    through the joint layer with the joint LayerNorms and ``norm_joint``, pooled over all tokens: the vector the
    multimodal classifier's head sees)."""
    enc = model.encoder
    was_training = model.training
    model.eval()
    out: dict[str, list[Tensor]] = {"audio": [], "video": [], "joint": []}
    for s in range(0, audio.shape[0], batch_size):
        h_a = enc.audio_specific(enc.embed_audio(audio[s:s + batch_size]))
        h_v = enc.video_specific(enc.embed_video(video[s:s + batch_size]))
        out["audio"].append(enc.audio_stream(h_a).mean(dim=1))
        out["video"].append(enc.video_stream(h_v).mean(dim=1))
        out["joint"].append(enc.joint_stream(h_a, h_v).mean(dim=1))
    model.train(was_training)
    return {k: torch.cat(v) for k, v in out.items()}


def ridge_r2(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, weight_decay: float = 1e-2) -> float:
    """R^2 on the test set of a ridge regression fitted on standardised training features (closed form).
    0 = no better than predicting the training mean, 1 = perfect."""
    x_tr, x_te = train_x.double(), test_x.double()
    mu, sd = x_tr.mean(0), x_tr.std(0).clamp(min=1e-6)
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    y_tr, y_te = train_y.double(), test_y.double()
    ym = y_tr.mean()
    n, d = x_tr.shape
    w = torch.linalg.solve(x_tr.T @ x_tr + weight_decay * n * torch.eye(d, dtype=torch.float64), x_tr.T @ (y_tr - ym))
    pred = x_te @ w + ym
    return float(1 - ((pred - y_te) ** 2).sum() / ((y_te - y_te.mean()) ** 2).sum().clamp(min=1e-12))


PROBED = {"shape": "accuracy", "count": "accuracy", "hue": "R2", "size": "R2", "log_aspect": "R2"}


def attribute_probes(train: dict[str, Tensor], test: dict[str, Tensor], train_attrs: dict[str, Tensor],
                     test_attrs: dict[str, Tensor], features: Sequence[str] = ("audio", "video", "joint")
                     ) -> dict[str, dict[str, float]]:
    """A linear probe of each attribute from each kind of frozen feature (:func:`clip_features`).

    ``shape`` and ``count`` (4 values each): logistic regression, test accuracy (chance 0.25 on balanced data);
    ``hue``, ``size``, ``log_aspect``: ridge regression, test R^2 (chance 0). Returns {attribute: {feature: score}}.
    """
    out: dict[str, dict[str, float]] = {}
    for attr, metric in PROBED.items():
        out[attr] = {}
        for f in features:
            if metric == "accuracy":
                y_tr, y_te = train_attrs[attr].long(), test_attrs[attr].long()
                y_tr, y_te = y_tr - int(y_tr.min()), y_te - int(y_tr.min())  # count 1..4 -> 0..3
                out[attr][f] = linear_probe(train[f], y_tr, test[f], y_te, num_classes=4)["accuracy"]
            else:
                out[attr][f] = ridge_r2(train[f], train_attrs[attr], test[f], test_attrs[attr])
    return out


def attribute_groups(attrs: dict[str, Tensor], levels: int | None = None,
                     attributes: Sequence[str] = DISCRETE + CONTINUOUS) -> list[tuple]:
    """Each clip's key: its discrete attributes, and its continuous ones exactly (``levels=None``) or binned into
    ``levels`` equal-width bins of their range (:data:`RANGES`; aspect on a log scale)."""
    cols = []
    for a in attributes:
        if a in DISCRETE:
            cols.append(attrs[a].tolist())
            continue
        x = attrs["log_aspect" if a == "aspect" else a].double()
        if levels is None:
            cols.append(x.tolist())
        else:
            lo, hi = RANGES[a]
            cols.append(((x - lo) / (hi - lo) * levels).floor().clamp(0, levels - 1).long().tolist())
    return list(zip(*cols))


def ideal_perceiver_r1(attrs: dict[str, Tensor], levels: int | None = None,
                       attributes: Sequence[str] = DISCRETE + CONTINUOUS) -> float:
    """Expected R@1 of a perceiver that knows each clip's ``attributes`` (rendered in both modalities) and nothing
    else: among the candidates that share the query's key it can only guess, so clip i is found first with
    probability 1 / (size of its group); the mean over clips equals (number of distinct keys) / N.
    The same in both directions."""
    keys = attribute_groups(attrs, levels, attributes)
    sizes: dict[tuple, int] = {}
    for k in keys:
        sizes[k] = sizes.get(k, 0) + 1
    return float(sum(1.0 / sizes[k] for k in keys) / len(keys))


# ---------------------------------------------------------------------------------------------------------
# 05: where does the sound come from?
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def patch_similarity(model, audio: Tensor, video: Tensor) -> Tensor:
    """(B, Lv): cosine similarity of each clip's pooled audio embedding (the retrieval feature) with each of its
    frame's visual patch tokens (the video stream's output before pooling)."""
    a_tok, v_tok = model.forward_features(audio, video)
    a = F.normalize(a_tok.mean(dim=1), dim=-1)
    return torch.einsum("bd,bld->bl", a, F.normalize(v_tok, dim=-1))


@torch.no_grad()
def joint_attention(model, audio: Tensor, video: Tensor) -> Tensor:
    """(B, heads, La, Lv): the last joint block's attention from every audio token (queries) to every visual
    token (keys) on the joint stream (both modalities unmasked, joint LayerNorms). Each audio token's row over
    *all* La + Lv keys sums to 1; this is its video part."""
    enc = model.encoder
    h_a = enc.audio_specific(enc.embed_audio(audio))
    h_v = enc.video_specific(enc.embed_video(video))
    with capture_attention(enc.joint_blocks[-1].attn) as records:
        enc.joint_stream(h_a, h_v)
    La = h_a.shape[1]
    return records[-1][:, :, :La, La:]


def object_fraction(frames: Tensor, patch_size: int, threshold: float = 0.5) -> Tensor:
    """(B, Lv): the fraction of each patch's pixels whose HSV saturation exceeds ``threshold``. In the default data
    the objects are drawn with saturation 0.75-1 and the backgrounds with at most 0.25, so this finds the objects."""
    mean = torch.tensor(viz.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(viz.IMAGENET_STD).view(1, 3, 1, 1)
    rgb = (frames.float() * std + mean).clamp(0, 1)
    mx, mn = rgb.max(dim=1).values, rgb.min(dim=1).values
    sat = ((mx - mn) / mx.clamp(min=1e-6) > threshold).float()  # (B, H, W)
    return F.avg_pool2d(sat[:, None], patch_size).flatten(1)  # (B, Lv), row-major like the tokens


def source_map_stats(model, audio: Tensor, video: Tensor, batch_size: int = 64) -> dict[str, float]:
    """Do the maps point at the object? Over the clips (patches holding > 50 % object pixels count as object):

    ``sim_object`` / ``sim_background``: mean patch similarity (:func:`patch_similarity`) on object / other patches;
    ``sim_object_wins``: fraction of clips whose object patches are more similar on average than the rest;
    ``att_video``: mean share of an audio token's joint attention that goes to visual tokens (rest: audio tokens);
    ``att_object``: of that visual share, the part on object patches; ``area_object``: object patches' share of
    the frame (what ``att_object`` would be if attention ignored the object).
    """
    p = model.config.patch_size
    so, sb, wins, av, ao, area, n = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0
    for s in range(0, audio.shape[0], batch_size):
        a, v = audio[s:s + batch_size], video[s:s + batch_size]
        obj = object_fraction(v, p) > 0.5  # (B, Lv)
        keep = obj.any(dim=1) & (~obj).any(dim=1)  # clips with both kinds of patch
        sim = patch_similarity(model, a, v)
        att = joint_attention(model, a, v).mean(dim=(1, 2))  # (B, Lv): mean over heads and audio tokens
        for i in torch.nonzero(keep).flatten().tolist():
            m_o, m_b = float(sim[i][obj[i]].mean()), float(sim[i][~obj[i]].mean())
            so, sb, wins = so + m_o, sb + m_b, wins + (m_o > m_b)
            av += float(att[i].sum())
            ao += float(att[i][obj[i]].sum() / att[i].sum())
            area += float(obj[i].float().mean())
            n += 1
    n = max(n, 1)
    return {"n": n, "sim_object": so / n, "sim_background": sb / n, "sim_object_wins": wins / n,
            "att_video": av / n, "att_object": ao / n, "area_object": area / n}


def render_source_maps(model, clips: Sequence[tuple[Tensor, Tensor]], sample: int = 0, audio_token: int = 0,
                       head: int = -1):
    """Four panels for one clip: its spectrogram (the chosen audio token outlined), the frame, the patch
    similarity map, and the joint attention of ``audio_token`` over the visual patches (``head`` -1 = mean over
    heads). Object patches (> 50 % saturated pixels) are outlined in cyan."""
    c = model.config
    audio, video = clips[sample]
    a, v = audio[None].float(), video[None].float()
    sim = patch_similarity(model, a, v)[0]
    att_all = joint_attention(model, a, v)[0]  # (h, La, Lv)
    att = (att_all.mean(dim=0) if head < 0 else att_all[head])[audio_token]  # (Lv,)
    obj = object_fraction(v, c.patch_size)[0] > 0.5
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.9), layout="constrained", width_ratios=[1.7, 1, 1.15, 1.15])
    viz.plot_fbank(audio, ax=axes[0], patch_size=c.patch_size, indices=False, colorbar=False,
                   title=f"clip {sample}: audio, token {audio_token} outlined")
    rows, cols = c.audio_grid
    f, t = divmod(audio_token, cols)
    p = c.patch_size
    axes[0].add_patch(plt.Rectangle((t * p * viz.HOP_S, f * p), p * viz.HOP_S, p, fill=False, ec="cyan", lw=2.5))
    viz.plot_frame(video, ax=axes[1], patch_size=None, title="frame")
    plot_frame_map(video, sim, c.video_grid, ax=axes[2], title="pooled audio vs each visual patch",
                   label="cosine similarity", outline=obj, cmap="viridis")
    who = "mean of heads" if head < 0 else f"head {head}"
    plot_frame_map(video, att, c.video_grid, ax=axes[3], title=f"joint attention of audio token {audio_token} ({who})",
                   label="attention weight", vmin=0, outline=obj)
    share = float(att.sum())
    on_obj = float(att[obj].sum() / att.sum()) if obj.any() else float("nan")
    info = (f"similarity: object patches {float(sim[obj].mean()) if obj.any() else float('nan'):.3f}, other patches "
            f"{float(sim[~obj].mean()) if (~obj).any() else float('nan'):.3f}; audio token {audio_token} gives "
            f"{100 * share:.1f} % of its attention to the frame, {100 * on_obj:.0f} % of that to the object "
            f"({100 * float(obj.float().mean()):.0f} % of the patches)")
    return fig, info


def source_map_panel(model, clips: Sequence[tuple[Tensor, Tensor]]) -> Panel:
    """Clip, audio token and attention head (-1 = mean) of :func:`render_source_maps`."""
    c = model.config
    controls = {
        "sample": _int_slider(0, 0, len(clips) - 1, "clip"),
        "audio_token": _int_slider(0, 0, c.num_audio_tokens - 1, "audio token"),
        "head": _int_slider(-1, -1, c.num_heads - 1, "head (-1 = mean)"),
    }
    return Panel(controls, lambda **v: render_source_maps(model, clips, **v), "where does the sound come from?")


__all__ = [
    "ATTRIBUTE_PAIRS", "CONTINUOUS", "DISCRETE", "RANGES", "CrossModalOutput", "GalleryPanel", "attribute_groups",
    "attribute_probes", "attribute_table_markdown", "audio_player", "clip_features", "clip_waveform",
    "cross_modal_forward", "cross_modal_panel", "cross_modal_study", "describe_clip", "ideal_perceiver_r1",
    "joint_attention", "load_attributes", "masked_view_embeddings", "masking_noise", "modality_gap", "object_fraction",
    "partner_rank", "patch_similarity", "plot_attribute_gallery", "plot_cross_modal", "plot_retrieval",
    "reconstruct_cross_modal", "render_cross_modal", "render_retrieval", "render_source_maps", "retrieval_gallery",
    "retrieval_sounds", "ridge_r2", "source_map_panel", "source_map_stats", "split_seen_in_training", "top_k",
]
