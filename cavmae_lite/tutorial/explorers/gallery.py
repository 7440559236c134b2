"""Notebooks 05 and 08: one query's top-k candidates, and the retrieval gallery with playable sounds."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from ... import viz
from ..widgets import Panel, in_notebook, int_slider

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
    from ...data import load_audio

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
        if in_notebook():  # outputs set directly, not captured with `with output:` (see widgets.show_figure)
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
        "query": int_slider(0, 0, sim.shape[0] - 1, "query clip"),
        "direction": W.ToggleButtons(options=[("audio -> video", "a2v"), ("video -> audio", "v2a")], value="a2v",
                                     description="search"),
    }
    return GalleryPanel(controls, lambda **v: render_retrieval(sim, frames, fbanks, k=k, names=names, **v),
                        lambda **v: retrieval_sounds(sim, k=k, names=names, **v), wave, "retrieval gallery", 2)
