"""CAV-MAE Sync's figures (cavmae_lite.viz.sync): shapes checked, axes labelled, one colour scale where two compare."""

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from cavmae_lite import viz
from cavmae_lite.data.segments import segment_windows

pytestmark = pytest.mark.usefixtures("close_figures")  # headless, figures closed afterwards (tests/conftest.py)

T, S, L, F = 8, 128, 32, 16


def _sim(seed=0, t=T):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(t, 5, generator=g), dim=-1) @ torch.nn.functional.normalize(
        torch.randn(t, 5, generator=g), dim=-1).T


def _images(fig):
    return [im for ax in fig.axes for im in ax.images]


def _plot_axes(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]


def test_plot_frame_similarity_shares_one_colour_scale_and_labels_every_axis():
    sync, cav_row = _sim(0), _sim(1)[0] * 0.5  # CAV-MAE: one whole-clip audio vector, a (T,) row
    events = [-1, 0, 0, -1, 1, 1, -1, -1]
    fig = viz.plot_frame_similarity(sync, cav_row, events=events)
    assert isinstance(fig, Figure)
    mats = _images(fig)
    assert len(mats) == 2 and mats[0].get_clim() == mats[1].get_clim()
    lo, hi = mats[0].get_clim()
    assert lo == pytest.approx(min(float(sync.min()), float(cav_row.min())))
    assert hi == pytest.approx(max(float(sync.max()), float(cav_row.max())))
    assert np.allclose(mats[1].get_array(), np.broadcast_to(cav_row.numpy(), (T, T)))  # the row repeated
    for ax in _plot_axes(fig):
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    assert any("cosine" in ax.get_xlabel() + ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>")
    best = fig.axes[0].lines[0]  # the best frame of each segment
    assert np.array_equal(best.get_xdata(), sync.argmax(1).numpy())


def test_plot_frame_similarity_alone_draws_one_matrix_and_the_curve():
    sync = _sim(2)
    fig = viz.plot_frame_similarity(sync)
    assert len(_images(fig)) == 1
    curve = _plot_axes(fig)[-1].lines[0]
    assert np.allclose(curve.get_ydata(), sync.diagonal().numpy())


@pytest.mark.parametrize("bad", [
    dict(sim_sync=torch.zeros(T, T - 1)),                    # not square
    dict(sim_sync=torch.zeros(T)),                           # not a matrix
    dict(sim_sync=torch.zeros(T, T), sim_cavmae=torch.zeros(T - 1)),
    dict(sim_sync=torch.zeros(T, T), sim_cavmae=torch.zeros(T + 1, T + 1)),
    dict(sim_sync=torch.zeros(T, T), events=[0] * (T - 1)),  # one event per moment
])
def test_plot_frame_similarity_rejects_bad_shapes(bad):
    with pytest.raises(ValueError):
        viz.plot_frame_similarity(**bad)


def test_plot_segment_cut_draws_one_bar_per_frame_coloured_by_distinct_window():
    fbank = torch.randn(S, F)
    windows = segment_windows(T, S, L)
    times = [i * S / T * viz.HOP_S for i in range(T)]
    fig = viz.plot_segment_cut(fbank, windows, times)
    assert isinstance(fig, Figure)
    spec, bars = _plot_axes(fig)[:2]
    assert spec.get_xlabel() == "" or "s" in spec.get_xlabel()  # shared x: the label sits on the lower axes
    assert "(s)" in bars.get_xlabel() and bars.get_ylabel() and spec.get_ylabel()
    rects = bars.patches
    assert len(rects) == T
    for (start, end), r in zip(windows, rects):
        assert r.get_x() == pytest.approx(start * viz.HOP_S) and r.get_width() == pytest.approx((end - start) * viz.HOP_S)
    colours = {tuple(r.get_facecolor()) for r in rects}
    assert len(colours) == len(set(windows)) < T  # clamped edge windows repeat, and share a colour
    assert f"{len(set(windows))} distinct" in fig._suptitle.get_text()


@pytest.mark.parametrize("bad", [
    dict(fbank=torch.zeros(2, S, F)),                                 # a batch, not one clip
    dict(windows=[(0, L)] * (T - 1)),                                 # one window per frame time
    dict(windows=[(S - L + 1, S + 1)] + [(0, L)] * (T - 1)),           # past the clip's end
    dict(windows=[(5, 5)] + [(0, L)] * (T - 1)),                      # empty
])
def test_plot_segment_cut_rejects_bad_input(bad):
    args = dict(fbank=torch.zeros(S, F), windows=segment_windows(T, S, L), frame_times=np.arange(T) * 0.1)
    with pytest.raises(ValueError):
        viz.plot_segment_cut(**{**args, **bad})


def test_plot_clip_moments_outlines_the_lit_frames():
    frames, fbank = torch.randn(T, 3, 12, 12), torch.randn(S, F)
    events = [-1, 0, 0, -1, -1, 1, -1, -1]
    fig = viz.plot_clip_moments(frames, fbank, np.arange(T) * 0.16, events=events)
    (spec,) = [ax for ax in fig.axes if ax.get_ylabel() == "mel bin"]
    assert spec.get_xlabel() == "time in clip (s)"
    thumbs = [ax for ax in fig.axes if ax.images and ax is not spec and ax.get_label() != "<colorbar>"]
    assert len(thumbs) == T
    widths = [max(s.get_linewidth() for s in ax.spines.values()) for ax in thumbs]
    assert [w > 1 for w in widths] == [e >= 0 for e in events]
    assert all(ax.get_xlabel().endswith(" s") or "obj" in ax.get_xlabel() for ax in thumbs)


@pytest.mark.parametrize("bad", [
    dict(frames=torch.zeros(T, 12, 12)),             # no channel axis
    dict(fbank=torch.zeros(S)),                      # not (S, F)
    dict(frame_times=np.arange(T + 1) * 0.1),        # one time per frame
    dict(events=[0, 1]),                             # one event per frame
])
def test_plot_clip_moments_rejects_bad_shapes(bad):
    args = dict(frames=torch.zeros(T, 3, 12, 12), fbank=torch.zeros(S, F), frame_times=np.arange(T) * 0.1)
    with pytest.raises(ValueError):
        viz.plot_clip_moments(**{**args, **bad})
