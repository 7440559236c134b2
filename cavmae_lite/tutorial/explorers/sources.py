"""Notebook 05: where does the sound come from? Patch similarity and joint attention drawn over the frame."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import Tensor

from ... import viz
from ...viz.attention import capture_attention, plot_frame_map
from ..widgets import Panel, int_slider

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
    e = enc.encode(audio, video)
    h_a, h_v = e.audio, e.video
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
        "sample": int_slider(0, 0, len(clips) - 1, "clip"),
        "audio_token": int_slider(0, 0, c.num_audio_tokens - 1, "audio token"),
        "head": int_slider(-1, -1, c.num_heads - 1, "head (-1 = mean)"),
    }
    return Panel(controls, lambda **v: render_source_maps(model, clips, **v), "where does the sound come from?")
