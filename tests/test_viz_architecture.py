"""viz.plot_multistream: the multi-stream pass drawn from a live model, with the shapes a real batch produced."""

import pytest
import torch

from cavmae_lite import CAVMAE, viz

pytestmark = pytest.mark.usefixtures("close_figures")  # fixtures `close_figures` and `tiny`: tests/conftest.py


@pytest.fixture(scope="module")
def model(tiny):
    torch.manual_seed(0)
    return CAVMAE(tiny).eval()


def _batch(config, n=2):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, config.audio_length, config.num_mel_bins, generator=g),
            torch.randn(n, 3, config.img_size, config.img_size, generator=g))


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.mark.parametrize("ratio", [0.75, 0.5])
def test_shapes_are_the_models(model, tiny, ratio):
    """The recorded shapes are those of the model's own pass (same masks), and the three streams ran once each."""
    audio, video = _batch(tiny)
    s = viz.multistream_shapes(model, audio, video, ratio, seed=3)
    e = model.encode(audio, video, ratio, ratio, generator=torch.Generator().manual_seed(3))
    D, La, Lv = tiny.embed_dim, tiny.num_audio_tokens, tiny.num_video_tokens
    Ka, Kv = e.audio.shape[1], e.video.shape[1]
    assert Ka == int(La * (1 - ratio)) and Kv == int(Lv * (1 - ratio))
    assert s["audio_tokens"] == (2, La, D) and s["video_tokens"] == (2, Lv, D)
    assert s["audio_visible"] == s["h_a"] == s["audio_stream"] == (2, Ka, D)
    assert s["video_visible"] == s["h_v"] == s["video_stream"] == (2, Kv, D)
    assert s["joint_in"] == s["x"] == (2, Ka + Kv, D)
    assert s["decoder_seq"] == (2, La + Lv, tiny.decoder_embed_dim)
    assert s["pred_a"] == (2, La, tiny.audio_patch_dim) and s["pred_v"] == (2, Lv, tiny.video_patch_dim)
    assert s["c_a"] == s["c_v"] == (2, D)
    assert s["calls"] == {"audio": 1, "joint": 1, "video": 1}


def test_figure_labels_the_real_shapes_and_modules(model, tiny):
    audio, video = _batch(tiny)
    fig = viz.plot_multistream(model, audio, video, 0.75, seed=0)
    text = "\n".join(_texts(fig))
    D = tiny.embed_dim
    for shape in [(2, 16, D), (2, 9, D), (2, 25, D), (2, 64, 256), (2, 36, 768), (2, D),
                  (2, tiny.audio_length, tiny.num_mel_bins), (2, 64, D), (2, 36, D)]:
        assert str(shape) in text, f"{shape} is not on any arrow"
    assert f"{tiny.modality_specific_depth} blocks" in text and "joint_blocks (1 block)" in text
    assert "run 3 times" in text and "norm_joint" in text and "norm_audio" in text
    assert "batch of 2, mask ratio 0.75" in fig.axes[0].get_title()


def test_skipped_streams_are_drawn_without_shapes(model, tiny):
    """With contrast weight 0 the audio- and video-only passes do not run: no shapes, one joint call."""
    av_mae = CAVMAE(tiny.replace(contrast_weight=0.0)).eval()
    av_mae.load_state_dict(model.state_dict())
    audio, video = _batch(tiny)
    s = viz.multistream_shapes(av_mae, audio[0], video[0])  # one unbatched clip
    assert s["calls"] == {"audio": 0, "joint": 1, "video": 0}
    assert "c_a" not in s and "audio_stream" not in s and s["x"] == (1, 25, tiny.embed_dim)
    text = "\n".join(_texts(viz.plot_multistream(av_mae, audio, video)))
    D = tiny.embed_dim
    assert "run 1 time in" in text and str((2, 16, D)) in text and str((2, D)) not in text


def test_needs_modality_specific_blocks(tiny):
    shallow = CAVMAE(tiny.replace(modality_specific_depth=0))
    audio, video = _batch(tiny)
    with pytest.raises(ValueError, match="modality_specific_depth"):
        viz.multistream_shapes(shallow, audio, video)
