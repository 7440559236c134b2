"""The multi-stream forward pass as a picture, drawn from a live model.

Every box names a module of the model it is given (with its size read from the modules: how many blocks, what
width), and every arrow carries the shape of the tensor that crossed it when a batch went through the model,
recorded by forward hooks. A stream the model did not run (the audio- and video-only passes when the contrastive
weight is 0, see :meth:`cavmae_lite.model.CAVMAE.forward`) is drawn dashed and grey, without a shape.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyBboxPatch
from torch import Tensor

from ..layers import check_modality

STREAMS = ("audio", "joint", "video")
_ROW = {"audio": 2.0, "joint": 1.0, "video": 0.0}  # y of each row of boxes
_BOX_W, _BOX_H = 0.56, 0.52
_COLORS = {"audio": "#d8e8f8", "joint": "#efe2f7", "video": "#dff2dc", "loss": "#fbe3cf", "off": "#eeeeee"}


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(int(s) for s in t.shape)


@torch.no_grad()
def multistream_shapes(model, audio: Tensor, video: Tensor, mask_ratio: float = 0.75, seed: int = 0) -> dict[str, Any]:
    """Run ``model`` (a :class:`~cavmae_lite.CAVMAE`) once on audio (B, T, F) and video (B, C, H, W) with forward
    hooks; return the shape of every tensor :func:`plot_multistream` draws, and how often each stream ran.

    Keys: ``audio_in``, ``video_in``; ``audio_tokens``, ``video_tokens`` (B, L, D) after the patch projection;
    ``audio_visible``, ``video_visible`` (B, K, D) after masking; ``h_a``, ``h_v`` (the modality stacks' outputs);
    ``joint_in`` (B, Ka + Kv, D); ``x``, ``audio_stream``, ``video_stream`` (after the final LayerNorms);
    ``decoder_seq``; ``pred_a``, ``pred_v``; ``c_a``, ``c_v`` (B, D); ``calls``: stream -> passes that ran. Unbatched
    inputs are a batch of one; a stream that did not run has no shape keys."""
    enc, dec = model.encoder, model.decoder
    if not len(enc.audio_blocks) or not len(enc.video_blocks):
        raise ValueError("plot_multistream needs modality-specific blocks (modality_specific_depth >= 1)")
    audio = audio[None] if audio.dim() == 2 else audio
    video = video[None] if video.dim() == 3 else video
    shapes: dict[str, Any] = {"audio_in": _shape(audio), "video_in": _shape(video),
                              "calls": dict.fromkeys(STREAMS, 0)}

    def after(key):  # a forward hook noting the output's shape; it returns None, so the output is unchanged
        def hook(module, inputs, output):
            shapes.setdefault(key, _shape(output))
        return hook

    def before(key):  # a forward pre-hook noting the first input's shape (returns None: the input is unchanged)
        def hook(module, inputs):
            shapes.setdefault(key, _shape(inputs[0]))
        return hook

    def stream_out(stream, key):  # each stream pass ends in its own final LayerNorm, called once per pass
        def hook(module, inputs, output):
            shapes["calls"][stream] += 1
            shapes.setdefault(key, _shape(output))
        return hook

    def joint_in(module, inputs):  # the joint blocks run as block(x, modality): the tag names the stream
        if check_modality(inputs[1] if len(inputs) > 1 else None) == "joint":
            shapes.setdefault("joint_in", _shape(inputs[0]))

    first_joint = enc.joint_blocks[0] if len(enc.joint_blocks) else enc.norm_joint
    hooks = [enc.audio_embed.register_forward_hook(after("audio_tokens")),
             enc.video_embed.register_forward_hook(after("video_tokens")),
             enc.audio_blocks[0].register_forward_pre_hook(before("audio_visible")),
             enc.video_blocks[0].register_forward_pre_hook(before("video_visible")),
             enc.audio_blocks[-1].register_forward_hook(after("h_a")),
             enc.video_blocks[-1].register_forward_hook(after("h_v")),
             first_joint.register_forward_pre_hook(joint_in),
             enc.norm_joint.register_forward_hook(stream_out("joint", "x")),
             enc.norm_audio.register_forward_hook(stream_out("audio", "audio_stream")),
             enc.norm_video.register_forward_hook(stream_out("video", "video_stream")),
             dec.norm.register_forward_hook(after("decoder_seq")),
             dec.head_audio.register_forward_hook(after("pred_a")),
             dec.head_video.register_forward_hook(after("pred_v"))]
    try:
        out = model(audio, video, mask_ratio, mask_ratio, generator=torch.Generator().manual_seed(seed))
    finally:
        for h in hooks:
            h.remove()
    if out.audio_emb is not None:
        shapes["c_a"], shapes["c_v"] = _shape(out.audio_emb), _shape(out.video_emb)
    return shapes


def _box(ax, x: float, y: float, text: str, color: str, on: bool = True, w: float = _BOX_W, h: float = _BOX_H):
    """A rounded box centred at (x, y) holding ``text``; dashed and grey when the module did not run."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.05",
                                fc=color if on else _COLORS["off"], ec="black" if on else "gray",
                                ls="-" if on else "--", lw=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=7.5, color="black" if on else "gray")


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], label: str = "", on: bool = True,
           offset: float = 0.07):
    """An arrow from ``start`` to ``end`` with ``label`` (a shape) above its middle."""
    ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="-|>", lw=1.0, ls="-" if on else "--",
                                                          color="black" if on else "gray", shrinkA=0, shrinkB=0))
    if label:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + offset, label, ha="center", va="bottom",
                fontsize=7, color="black" if on else "gray")


def _module_texts(model, mask_ratio: float) -> dict[str, str]:
    """Box texts read from the live model: module names, block counts and widths."""
    enc, dec, c = model.encoder, model.decoder, model.config
    n = lambda blocks: f"{len(blocks)} block{'s' if len(blocks) != 1 else ''}"
    texts = {"audio_in": "audio fbank\n(B, T, F)", "video_in": "video frame\n(B, C, H, W)"}
    for m, s in (("audio", "a"), ("video", "v")):
        texts[f"{m}_embed"] = (f"$\\mathrm{{Proj}}_{s} + E_{s}^p + E_{s}$\n{m}_embed ({c.patch_size} px)\n"
                               f"+ {m}_pos\n+ {m}_modality")
        texts[f"{m}_mask"] = f"mask, r = {mask_ratio:g}\n(random_masking)\nkeeps visible tokens"
        texts[f"{m}_blocks"] = f"$E_{s}(\\cdot)$: {n(getattr(enc, m + '_blocks'))}\n{m}_blocks\nwidth {c.embed_dim}"
        texts[f"{m}_stream"] = f"{m} stream: $E_j$\nLN set '{m}'\n+ norm_{m}"
        texts[f"c_{s}"] = f"mean over tokens\n$c_{s}$"
    texts["joint_stream"] = "joint stream: $E_j$\non $[h_a; h_v]$\nLN set 'joint'\n+ norm_joint"
    texts["joint_layer"] = f"$E_j$ = joint_blocks ({n(enc.joint_blocks)}): the same attention + MLP weights in every pass"
    texts["decoder"] = (f"$D_j$ = decoder\n{n(dec.blocks)}, width {c.decoder_embed_dim}\nmask tokens fill\n"
                        "the removed places")
    texts["loss_r"] = "$\\mathcal{L}_r^a$, $\\mathcal{L}_r^v$\nreconstruction_loss\n(removed patches)"
    texts["loss_c"] = "$\\mathcal{L}_c$\ninfo_nce\n($B \\times B$\nsimilarities)"
    return texts


def plot_multistream(model, audio: Tensor, video: Tensor, mask_ratio: float = 0.75, seed: int = 0, ax=None):
    """Draw CAV-MAE's multi-stream forward pass for ``model`` with the shapes of a real batch on the arrows.

    audio (B, T, F), video (B, C, H, W) (or one unbatched clip); ``mask_ratio`` for both modalities, ``seed`` for the
    masking noise. The boxes are the model's modules (block counts and widths read from it), the arrows carry the
    shapes :func:`multistream_shapes` recorded; the joint layer's three boxes are the three passes through the same
    weights. Returns the figure.
    """
    s, t = multistream_shapes(model, audio, video, mask_ratio, seed), _module_texts(model, mask_ratio)
    if ax is None:
        _, ax = plt.subplots(figsize=(17, 5.2), layout="constrained")
    fmt = lambda key: str(s[key]) if key in s else ""
    half = _BOX_W / 2
    ax.add_patch(FancyBboxPatch((4 - half - 0.08, -0.42), _BOX_W + 0.16, 2.84, boxstyle="round,pad=0.02",
                                fc="#faf5fd", ec="#9b6fb8", lw=1.2))
    runs = sum(s["calls"].values())
    ax.text(4, 2.52, t["joint_layer"] + f"\nrun {runs} time{'s' if runs != 1 else ''} in this pass", ha="center",
            va="bottom", fontsize=7.5, color="#5a2d7a")
    for m, sym in (("audio", "a"), ("video", "v")):
        y, col, on = _ROW[m], _COLORS[m], s["calls"][m] > 0
        for x, key in enumerate((f"{m}_in", f"{m}_embed", f"{m}_mask", f"{m}_blocks")):
            _box(ax, x, y, t[key], col)
        for x, key in enumerate((f"{m}_in", f"{m}_tokens", f"{m}_visible", f"h_{sym}")):
            _arrow(ax, (x + half, y), (x + 1 - half, y), fmt(key))
        _arrow(ax, (3 + half, y), (4 - half, 1.0 + (y - 1.0) * 0.2), on=s["calls"]["joint"] > 0)  # into [h_a; h_v]
        _box(ax, 4, y, t[f"{m}_stream"], col, on)
        _box(ax, 5, y, t[f"c_{sym}"], col, on)
        _arrow(ax, (4 + half, y), (5 - half, y), fmt(f"{m}_stream"), on)
        _arrow(ax, (5 + half, y), (7 - 0.3, y), fmt(f"c_{sym}"), on)
    on_joint = s["calls"]["joint"] > 0
    _box(ax, 4, 1.0, t["joint_stream"], _COLORS["joint"], on_joint)
    ax.text(3.5, 1.0, "$[h_a; h_v]$\n" + fmt("joint_in"), ha="center", va="center", fontsize=7,
            color="black" if on_joint else "gray")
    _box(ax, 5, 1.0, t["decoder"], _COLORS["joint"], on_joint)
    _arrow(ax, (4 + half, 1.0), (5 - half, 1.0), fmt("x"), on_joint)
    _box(ax, 6, 1.0, t["loss_r"], _COLORS["loss"], on_joint)
    _arrow(ax, (5 + half, 1.0), (6 - half, 1.0), "pred_a\n" + fmt("pred_a"), on_joint)
    ax.text(5.5, 0.93, "pred_v\n" + fmt("pred_v"), ha="center", va="top", fontsize=7,
            color="black" if on_joint else "gray")
    _box(ax, 7, 1.0, t["loss_c"], _COLORS["loss"], "c_a" in s, w=0.6, h=2.6)
    title = (f"{type(model).__name__}'s multi-stream forward pass: a batch of {s['audio_in'][0]}, mask ratio "
             f"{mask_ratio:g}; shapes on the arrows recorded by forward hooks (B, tokens, channels)")
    if 0 in s["calls"].values():
        title += "\ngrey, dashed: passes this model skips (their loss weight is 0, see CAVMAE.forward)"
    ax.set(xlim=(-0.45, 7.45), ylim=(-0.55, 2.95), title=title)
    ax.set_axis_off()
    return ax.figure


__all__ = ["multistream_shapes", "plot_multistream"]
