"""Widget panels: their callbacks are plain functions, called directly (no browser, no kernel)."""

import math

import pytest
import torch

from cavmae_lite import CAVMAE, CAVMAEClassifier, info_nce
from cavmae_lite.masking import num_visible
from cavmae_lite.tutorial import widgets

pytestmark = pytest.mark.usefixtures("close_figures")  # fixtures `close_figures` and `tiny`: tests/conftest.py


@pytest.fixture(scope="module")
def clip(tiny):
    g = torch.Generator().manual_seed(0)
    return torch.randn(tiny.audio_length, tiny.num_mel_bins, generator=g), torch.randn(3, 96, 96, generator=g)


def test_make_masks_match_the_models_masks(tiny, clip):
    model = CAVMAE(tiny).eval()
    audio, video = clip
    for mode in ("unstructured", "tf"):
        mask_a, mask_v = widgets.make_masks(tiny, 0.75, mode, seed=7)
        with torch.no_grad():
            out = model(audio[None], video[None], mask_mode=mode, generator=torch.Generator().manual_seed(7))
        assert torch.equal(mask_a, out.mask_a[0]) and torch.equal(mask_v, out.mask_v[0])


def test_masking_panel_updates_live(tiny, clip):
    panel = widgets.masking_panel(*clip, tiny)
    assert panel.renders == 1 and "<b>16</b>" in panel.last_info and "<b>9</b>" in panel.last_info
    panel.controls["ratio"].value = 0.5
    assert panel.renders == 2
    assert f"<b>{num_visible(tiny.num_audio_tokens, 0.5)}</b>" in panel.info.value and f"<b>{num_visible(36, 0.5)}</b>" in panel.info.value
    panel.controls["mode"].value = "time"
    assert "time" in panel.last_info
    fig, info = panel.render(modality="video", ratio=0.9)
    assert len(fig.axes) == 1 and f"<b>{num_visible(36, 0.9)}</b>" in info  # K shown for the slider's ratio


def test_render_masking_structured_modes_remove_whole_columns(tiny, clip):
    mask_a, _ = widgets.make_masks(tiny, 0.5, "time", seed=0)
    grid = mask_a.view(*tiny.audio_grid)
    assert int((grid.sum(0) == tiny.audio_grid[0]).sum()) == int(tiny.audio_grid[1] * 0.5)
    fig, info = widgets.render_masking(*clip, tiny, ratio=0.5, mode="freq", seed=1, modality="audio")
    assert "freq" in info and fig.axes[0].get_xlabel() == "time (s)"


def test_token_info_and_panel(tiny, clip):
    assert widgets.token_info(tiny, "audio", 52) == {"row": 3, "col": 4, "rows": 4, "cols": 16, "y0": 48, "x0": 64,
                                                      "size": 16}
    assert widgets.token_info(tiny, "video", 35)["row"] == 5
    with pytest.raises(ValueError):
        widgets.token_info(tiny, "video", 36)
    panel = widgets.token_panel(*clip, tiny)
    panel.controls["token"].value = 63
    panel.controls["modality"].value = "video"  # the slider range shrinks to the video grid
    assert panel.controls["token"].max == 35 and "video token" in panel.last_info
    _, info = widgets.render_token(*clip, tiny, "audio", 17)
    assert "f = 1" in info and "t = 1" in info


def test_temperature_matches_info_nce():
    torch.manual_seed(0)
    a, v = torch.randn(8, 16), torch.randn(8, 16)
    sim = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(v, dim=-1).T
    loss, acc = widgets.contrastive_at_temperature(sim, 0.05)
    ref = info_nce(a, v, temperature=0.05)
    assert math.isclose(loss, float(ref.loss), rel_tol=1e-5) and math.isclose(acc, float(ref.accuracy))
    assert math.isclose(widgets.contrastive_at_temperature(sim, 1e6)[0], math.log(8), rel_tol=1e-4)
    panel = widgets.temperature_panel(sim)
    panel.controls["temperature"].value = 1.0
    assert "&tau; = 1" in panel.last_info
    panel.controls["column"].value = 3
    assert "video 3" in panel.last_info


def test_reconstruction_panel(tiny, clip):
    model = CAVMAE(tiny).eval()
    panel = widgets.reconstruction_panel(model, [clip, clip])
    panel.controls["sample"].value = 1
    panel.controls["stats"].value = "target"
    assert panel.renders == 3 and "normalised targets" in panel.last_info
    nonorm = CAVMAE(tiny.replace(norm_pix_loss=False)).eval()
    fig, _ = widgets.render_reconstruction(nonorm, [clip], stats="visible")  # falls back to "none"
    assert "'none'" in fig.get_suptitle()


def test_live_loss_plot_collects_and_redraws():
    live = widgets.LiveLossPlot(every=2, chance=0.25)
    for step in range(1, 6):
        live.on_step(step, {"loss": 1.0 / step, "c_acc": 0.1 * step, "lr": 1e-3, "note": "ignored"})
    assert [r["step"] for r in live.history] == [1, 2, 3, 4, 5] and "note" not in live.history[0]
    assert live.draws == 2 and "step 5" in live.info.value
    fig = live.figure()
    assert fig.axes[1].get_ylabel() == "accuracy (fraction)"


def test_prediction_panel(tiny, clip):
    clf = CAVMAEClassifier(tiny, num_classes=3).eval()
    clips = [(clip[0], clip[1], 2)]
    fig, info = widgets.render_prediction(clf, clips, ["a", "b", "c"])
    assert "true class <b>c</b>" in info and "missing_audio" in info
    assert len(fig.axes[1].patches) == 3 * 5  # 3 classes x 5 inference modes
    panel = widgets.prediction_panel(clf, clips, ["a", "b", "c"])
    assert panel.renders == 1


def test_widget_figures_are_size_capped():
    from cavmae_lite import viz

    fig = viz.plot_fbank(torch.randn(1024, 128))  # noise compresses badly: the worst case
    png = widgets.figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) <= widgets.MAX_PNG_BYTES


def test_slider_helpers_and_notebook_detection():
    """The building blocks the explorers share (public: tutorial/explorers/*.py import them)."""
    import ipywidgets as W

    f = widgets.float_slider(0.25, 0.0, 1.0, 0.05, "ratio")
    assert isinstance(f, W.FloatSlider) and (f.value, f.min, f.max, f.step, f.description) == (0.25, 0, 1, 0.05,
                                                                                                "ratio")
    assert not f.continuous_update and f.readout_format == ".2f"
    i = widgets.int_slider(3, 0, 9, "clip")
    assert isinstance(i, W.IntSlider) and (i.value, i.min, i.max, i.description) == (3, 0, 9, "clip")
    assert not i.continuous_update
    assert widgets.in_notebook() is False  # pytest is no IPython kernel
    assert {"float_slider", "int_slider", "in_notebook"} <= set(widgets.__all__)
