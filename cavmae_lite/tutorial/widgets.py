"""ipywidgets panels for the notebooks, built on :mod:`cavmae_lite.viz`.

Every panel is a :class:`Panel`: a dict of controls, a plain ``render(**values) -> (figure or None, info html)``
function, an info line and an output area. Moving a control calls ``render`` with the current values; tests
call ``panel.render(...)`` or set ``panel.controls[name].value`` directly, no browser needed. In a notebook,
a panel displays itself (``panel`` as the last expression of a cell, or ``display(panel)``).

Panels: :func:`token_panel` (01), :func:`masking_panel` (02), :func:`reconstruction_panel` (04),
:func:`temperature_panel` (05), :class:`LiveLossPlot` (06), :func:`prediction_panel` (07).
Building blocks for other panels (the explorers use them): :class:`Panel`, :func:`float_slider`,
:func:`int_slider`, :func:`show_figure`, :func:`in_notebook`.
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
import torch
from torch import Tensor

from .. import viz
from ..masking import num_visible, random_masking

Render = Callable[..., "tuple[Any, str]"]


def in_notebook() -> bool:
    """True inside an IPython kernel (a notebook), where figures go to the widget's output; False in plain Python."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return get_ipython() is not None


MAX_PNG_BYTES = 240_000  # larger widget messages stall headless runners (nbclient / nbmake) until they time out


def figure_png(fig, max_bytes: int = MAX_PNG_BYTES, dpi: float = 100.0) -> bytes:
    """``fig`` as PNG bytes, re-rendered at a lower dpi when it would exceed ``max_bytes`` (size ~ dpi^2)."""
    for _ in range(4):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        data = buf.getvalue()
        if len(data) <= max_bytes or dpi <= 30:
            break
        dpi = max(30.0, dpi * 0.85 * (max_bytes / len(data)) ** 0.5)
    return data


def show_figure(output: W.Output, fig) -> None:
    """Replace ``output``'s content with ``fig`` (as a size-capped PNG) and close the figure."""
    if fig is None:
        return
    try:
        if in_notebook():
            from IPython.display import Image

            png = figure_png(fig)
            # set the widget's outputs directly: `with output: display(...)` (output capture) leaves headless
            # runners (nbclient / nbmake) waiting for the cell's reply in about one run in three
            output.outputs = ()
            output.append_display_data(Image(data=png))
    finally:
        plt.close(fig)


class Panel:
    """Controls + a render function + an info line + an output area, wired together.

    render(**values) returns (matplotlib figure or None, info as HTML). ``last_info`` holds the latest info.
    """

    def __init__(self, controls: dict[str, W.Widget], render: Render, title: str = "", columns: int = 3):
        self.controls = controls
        self._render = render
        self.title = W.HTML(f"<b>{html.escape(title)}</b>") if title else W.HTML("")
        self.info = W.HTML()
        self.output = W.Output()
        self.last_info = ""
        self.renders = 0
        for c in controls.values():
            c.observe(self.refresh, names="value")
        items = list(controls.values())
        rows = [W.HBox(items[i:i + columns]) for i in range(0, len(items), columns)]
        self.widget = W.VBox([self.title, *rows, self.info, self.output])
        self.refresh()

    def values(self) -> dict[str, Any]:
        return {name: c.value for name, c in self.controls.items()}

    def render(self, **values: Any) -> tuple[Any, str]:
        """Call the render function with the current control values, overridden by ``values``."""
        return self._render(**{**self.values(), **values})

    def refresh(self, *_: Any) -> str:
        fig, info = self.render()
        self.renders += 1
        self.last_info = info
        self.info.value = info
        show_figure(self.output, fig)
        return info

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def float_slider(value: float, lo: float, hi: float, step: float, desc: str) -> W.FloatSlider:
    """The panels' float slider: updates on release (not while dragging), two decimals, full-width label."""
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=desc, continuous_update=False,
                         readout_format=".2f", style={"description_width": "initial"})


def int_slider(value: int, lo: int, hi: int, desc: str) -> W.IntSlider:
    """The panels' integer slider over ``lo..hi`` (both included): updates on release, full-width label."""
    return W.IntSlider(value=value, min=lo, max=hi, description=desc, continuous_update=False,
                       style={"description_width": "initial"})


# ---------------------------------------------------------------------------------------------------------
# 01: which token is where
# ---------------------------------------------------------------------------------------------------------


def token_info(config, modality: str, token: int) -> dict[str, int]:
    """Grid coordinates and input-pixel box of token ``token`` (spec §3.2)."""
    rows, cols = config.audio_grid if modality == "audio" else config.video_grid
    if not 0 <= token < rows * cols:
        raise ValueError(f"{modality} token must be in [0, {rows * cols}), got {token}")
    r, c = divmod(token, cols)
    p = config.patch_size
    return {"row": r, "col": c, "rows": rows, "cols": cols, "y0": r * p, "x0": c * p, "size": p}


def render_token(fbank: Tensor, frame: Tensor, config, modality: str = "audio", token: int = 0):
    """Highlight one token on its input; info names its grid position and what it covers."""
    t = token_info(config, modality, token)
    p = config.patch_size
    if modality == "audio":
        fig = viz.plot_fbank(fbank, patch_size=p, indices=False, title=f"audio token {token}")
        ax = fig.axes[0]
        x0, y0 = t["x0"] * viz.HOP_S, t["y0"]
        ax.add_patch(plt.Rectangle((x0, y0), p * viz.HOP_S, p, fill=False, ec="cyan", lw=2.5))
        info = (f"audio token k = {token} = f &times; {t['cols']} + t with frequency band f = {t['row']} "
                f"(mel bins {t['y0']}&ndash;{t['y0'] + p - 1}) and time step t = {t['col']} "
                f"({x0:.2f}&ndash;{x0 + p * viz.HOP_S:.2f} s)")
    else:
        fig = viz.plot_frame(frame, patch_size=p, indices=False, title=f"video token {token}")
        ax = fig.axes[0]
        ax.add_patch(plt.Rectangle((t["x0"], t["y0"]), p, p, fill=False, ec="cyan", lw=2.5))
        info = (f"video token k = {token} = row &times; {t['cols']} + column with row = {t['row']}, column = "
                f"{t['col']} (pixels x {t['x0']}&ndash;{t['x0'] + p - 1}, y {t['y0']}&ndash;{t['y0'] + p - 1})")
    return fig, info


def token_panel(fbank: Tensor, frame: Tensor, config) -> Panel:
    """Pick a modality and a token index; the patch it stands for is outlined on the input."""
    modality = W.ToggleButtons(options=["audio", "video"], value="audio", description="modality")
    token = int_slider(0, 0, config.num_audio_tokens - 1, "token index k")

    def sync(change):  # keep the slider's range valid for the chosen modality
        token.max = (config.num_audio_tokens if change["new"] == "audio" else config.num_video_tokens) - 1

    modality.observe(sync, names="value")
    return Panel({"modality": modality, "token": token},
                 lambda modality, token: render_token(fbank, frame, config, modality, min(token, (
                     config.num_audio_tokens if modality == "audio" else config.num_video_tokens) - 1)),
                 "token inspector")


# ---------------------------------------------------------------------------------------------------------
# 02: masking
# ---------------------------------------------------------------------------------------------------------


def make_masks(config, ratio: float, mode: str = "unstructured", seed: int = 0) -> tuple[Tensor, Tensor]:
    """(mask_a (La,), mask_v (Lv,)) exactly as the model draws them: audio noise first, then video."""
    g = torch.Generator().manual_seed(int(seed))
    dummy_a = torch.zeros(1, config.num_audio_tokens, 1)
    dummy_v = torch.zeros(1, config.num_video_tokens, 1)
    mask_a = random_masking(dummy_a, ratio, mode=mode, grid=config.audio_grid, generator=g).mask[0]
    mask_v = random_masking(dummy_v, ratio, generator=g).mask[0]
    return mask_a, mask_v


def render_masking(fbank: Tensor, frame: Tensor, config, ratio: float = 0.75, mode: str = "unstructured",
                   seed: int = 0, modality: str = "both"):
    """Masked spectrogram and/or frame; info gives K = floor(L (1 - r)) for each modality."""
    mask_a, mask_v = make_masks(config, ratio, mode, seed)
    La, Lv = config.num_audio_tokens, config.num_video_tokens
    Ka, Kv = num_visible(La, ratio), num_visible(Lv, ratio)
    fig = viz.plot_masking(fbank if modality in ("audio", "both") else None,
                           frame if modality in ("video", "both") else None, mask_a, mask_v, config.patch_size)
    note = "" if mode == "unstructured" else f" (audio mode <i>{mode}</i>; video is always unstructured)"
    info = (f"r = {ratio:.2f}: audio K = &lfloor;{La} &times; (1 &minus; {ratio:.2f})&rfloor; = <b>{Ka}</b> "
            f"visible of {La}; video K = &lfloor;{Lv} &times; (1 &minus; {ratio:.2f})&rfloor; = <b>{Kv}</b> "
            f"visible of {Lv}{note}")
    return fig, info


def masking_panel(fbank: Tensor, frame: Tensor, config, ratio: float = 0.75) -> Panel:
    """Mask ratio slider, audio mode dropdown, seed and modality; shows the mask and the live K."""
    controls = {
        "ratio": float_slider(ratio, 0.0, 0.95, 0.05, "mask ratio r"),
        "mode": W.Dropdown(options=["unstructured", "time", "freq", "tf"], value="unstructured",
                           description="audio mode"),
        "seed": W.BoundedIntText(value=0, min=0, max=10_000, description="seed"),
        "modality": W.ToggleButtons(options=["both", "audio", "video"], value="both", description="show"),
    }
    return Panel(controls, lambda **v: render_masking(fbank, frame, config, **v), "masking explorer", columns=2)


# ---------------------------------------------------------------------------------------------------------
# 04: reconstruction
# ---------------------------------------------------------------------------------------------------------


def render_reconstruction(model, clips: Sequence[tuple[Tensor, Tensor]], sample: int = 0, ratio: float = 0.75,
                          seed: int = 0, stats: str = "visible"):
    """The four MAE panels for ``clips[sample]`` = (audio (T, F), video (3, H, W))."""
    audio, video = clips[sample]
    if not model.config.norm_pix_loss and stats != "none":
        stats = "none"
    rec = viz.reconstruct(model, audio, video, ratio, ratio, seed=seed, stats=stats)
    fig = viz.plot_reconstruction(rec, title=f"clip {sample}: mask ratio {ratio:.2f}, seed {seed}, stats {stats!r}")
    err = rec.errors()
    target = "normalised targets" if model.config.norm_pix_loss else "input-unit targets (a NoNorm model)"
    after = "after un-normalising" if stats != "none" else "(predictions used as they are)"
    info = (f"masked-patch loss on {target} (what training minimises): audio {rec.loss_a:.3f}, "
            f"video {rec.loss_v:.3f}; MSE in input units {after}: audio {err['audio']:.3f}, "
            f"video {err['video']:.3f}")
    return fig, info


def reconstruction_panel(model, clips: Sequence[tuple[Tensor, Tensor]], ratio: float = 0.75) -> Panel:
    """Sample, mask ratio, seed and the un-normalising statistics of the four-panel reconstruction."""
    controls = {
        "sample": int_slider(0, 0, len(clips) - 1, "clip"),
        "ratio": float_slider(ratio, 0.05, 0.95, 0.05, "mask ratio"),
        "seed": W.BoundedIntText(value=0, min=0, max=10_000, description="seed"),
        "stats": W.Dropdown(options=list(viz.STATS), value="visible", description="patch stats"),
    }
    return Panel(controls, lambda **v: render_reconstruction(model, clips, **v), "reconstruction explorer", 2)


# ---------------------------------------------------------------------------------------------------------
# 05: temperature
# ---------------------------------------------------------------------------------------------------------


def contrastive_at_temperature(sim: Tensor, temperature: float) -> tuple[float, float]:
    """(L_c, c_acc) of a cosine-similarity matrix at ``temperature``, the official direction (softmax over audios)."""
    logits = sim.float() / temperature
    n = sim.shape[0]
    loss = -torch.log_softmax(logits, dim=0).diagonal().mean()
    acc = (logits.argmax(dim=0) == torch.arange(n)).float().mean()
    return float(loss), float(acc)


def render_temperature(sim: Tensor, temperature: float = 0.05, column: int = 0):
    """Left: p(audio i | video j) = softmax_i(S_ij / tau) as a matrix; right: the chosen column's bars."""
    P = viz.softmax_with_temperature(sim, temperature, dim=0)
    fig, (ax_m, ax_b) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained", width_ratios=[1, 1.4])
    im = ax_m.imshow(viz.to_numpy(P), cmap=viz.SIM_CMAP, vmin=0, vmax=1)
    ax_m.add_patch(plt.Rectangle((column - 0.5, -0.5), 1, sim.shape[0], fill=False, ec="red", lw=1.5))
    ax_m.set(xlabel="video clip j", ylabel="audio clip i", title=f"softmax over audios, tau = {temperature:.3g}")
    fig.colorbar(im, ax=ax_m, label="p(audio i | video j)")
    viz.plot_temperature(sim, column, (temperature,), ax=ax_b)
    loss, acc = contrastive_at_temperature(sim, temperature)
    info = (f"&tau; = {temperature:.3g}: L<sub>c</sub> = &minus;(1/N) &Sigma;<sub>j</sub> log p(audio j | video j) "
            f"= <b>{loss:.3f}</b> (chance log N = {float(torch.log(torch.tensor(float(sim.shape[0])))):.3f}); "
            f"c_acc = {acc:.2f}; p(true | video {column}) = {float(P[column, column]):.3f}")
    return fig, info


def temperature_panel(sim: Tensor, temperature: float = 0.05) -> Panel:
    """A log-scale temperature slider and a video column selector over a cosine-similarity matrix."""
    controls = {
        "temperature": W.FloatLogSlider(value=temperature, base=10, min=-2.5, max=1, step=0.05, description="tau",
                                        continuous_update=False, readout_format=".3f"),
        "column": int_slider(0, 0, sim.shape[1] - 1, "video j"),
    }
    return Panel(controls, lambda **v: render_temperature(sim, **v), "temperature explorer")


# ---------------------------------------------------------------------------------------------------------
# 06: live training curves
# ---------------------------------------------------------------------------------------------------------


class LiveLossPlot:
    """A figure of the loss terms and c_acc that redraws every ``every`` calls; pass ``.on_step`` to ``pretrain``.

    ``on_step(step, metrics)`` appends ``{"step": step, **metrics}`` to ``history`` (a plain function: tests
    call it directly). ``chance``: c_acc's chance level (1 / batch).
    """

    def __init__(self, every: int = 1, chance: float | None = None, title: str = "pretraining"):
        self.every, self.chance, self.title = max(1, every), chance, title
        self.history: list[dict[str, Any]] = []
        self.output = W.Output()
        self.info = W.HTML("waiting for the first step...")
        self.widget = W.VBox([self.info, self.output])
        self.draws = 0

    def on_step(self, step: int, metrics: dict[str, Any]) -> None:
        row = {"step": int(step), **{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}}
        self.history.append(row)
        shown = ", ".join(f"{k} {v:.3g}" for k, v in row.items() if k != "step" and (
            "loss" in k or "acc" in k))
        self.info.value = f"step {step}: {html.escape(shown)}"
        if len(self.history) % self.every == 0:
            self.draw()

    def figure(self):
        return viz.plot_loss_curves(self.history, chance=self.chance, title=self.title)

    def draw(self) -> None:
        if self.history:
            show_figure(self.output, self.figure())
            self.draws += 1

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


# ---------------------------------------------------------------------------------------------------------
# 07: class predictions per inference mode
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def render_prediction(classifier, clips: Sequence[tuple[Tensor, Tensor, int]], class_names: Sequence[str],
                      sample: int = 0, modes: Sequence[str] = ("multimodal", "audio_only", "video_only",
                                                               "missing_video", "missing_audio")):
    """Class probabilities of one clip under each inference mode (softmax over classes)."""
    audio, video, label = clips[sample]
    classifier.eval()
    probs = {m: torch.softmax(classifier(audio[None], video[None], mode=m), dim=-1)[0] for m in modes}
    fig, (ax_f, ax_p) = plt.subplots(1, 2, figsize=(11, 3.4), layout="constrained", width_ratios=[1, 2.6])
    viz.plot_frame(video, ax=ax_f, patch_size=None, title=f"clip {sample}: {class_names[label]}")
    C, width = len(class_names), 0.8 / len(modes)
    for k, m in enumerate(modes):
        ax_p.bar(torch.arange(C) + (k - (len(modes) - 1) / 2) * width, viz.to_numpy(probs[m]), width=width, label=m)
    ax_p.set_xticks(range(C), class_names, rotation=30, ha="right", fontsize=8)
    ax_p.set(ylabel="p(class)", ylim=(0, 1.02), title="prediction per inference mode")
    ax_p.legend(fontsize=7, ncol=2)
    guesses = ", ".join(f"{m}: {class_names[int(p.argmax())]}" for m, p in probs.items())
    return fig, f"true class <b>{html.escape(class_names[label])}</b>; argmax per mode: {html.escape(guesses)}"


def prediction_panel(classifier, clips: Sequence[tuple[Tensor, Tensor, int]], class_names: Sequence[str]) -> Panel:
    """Pick a clip; see what each inference mode (both, audio only, video only, missing one) predicts."""
    controls = {"sample": int_slider(0, 0, len(clips) - 1, "clip")}
    return Panel(controls, lambda **v: render_prediction(classifier, clips, class_names, **v), "predictions")


__all__ = [
    "MAX_PNG_BYTES", "LiveLossPlot", "Panel", "contrastive_at_temperature", "figure_png", "float_slider",
    "in_notebook", "int_slider", "make_masks", "masking_panel", "prediction_panel", "reconstruction_panel",
    "render_masking", "render_prediction", "render_reconstruction", "render_temperature", "render_token",
    "show_figure", "temperature_panel", "token_info", "token_panel",
]
