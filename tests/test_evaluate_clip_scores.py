"""Sync's clip scores against a plain double loop over clip pairs and frame pairs (the released script's way)."""

import pytest
import torch
import torch.nn.functional as F

from cavmae_lite.evaluate import clip_scores, frame_localisation, retrieval_metrics
from cavmae_lite.evaluate.clip_scores import STRATEGIES


def loop_scores(a, v, strategy):
    a, v = F.normalize(a, dim=-1), F.normalize(v, dim=-1)
    S = torch.empty(a.shape[0], v.shape[0])
    for i in range(a.shape[0]):
        for j in range(v.shape[0]):
            cos = a[i] @ v[j].T  # (T, T): slot k of audio clip i vs slot l of video clip j
            S[i, j] = {"diagonal_mean": cos.diagonal().mean(), "diagonal_max": cos.diagonal().max(),
                       "mean": cos.mean(), "max": cos.max()}[strategy]
    return S


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_vectorised_scores_equal_the_double_loop(strategy):
    g = torch.Generator().manual_seed(0)
    a, v = torch.randn(7, 5, 8, generator=g), torch.randn(6, 5, 8, generator=g)
    torch.testing.assert_close(clip_scores(a, v, strategy), loop_scores(a, v, strategy), atol=1e-6, rtol=1e-5)


def test_time_aligned_scores_see_order_and_mean_does_not():
    """Clips whose frames are a shuffled copy of one another: the diagonal score drops, the mean score cannot."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 6, 16, generator=g)
    shuffled = a[:, torch.tensor([1, 2, 3, 4, 5, 0])]
    assert retrieval_metrics(clip_scores(a, a))["a2v"]["r1"] == 1.0
    torch.testing.assert_close(clip_scores(a, shuffled, "mean").diagonal(), clip_scores(a, a, "mean").diagonal())
    assert (clip_scores(a, shuffled).diagonal() < clip_scores(a, a).diagonal() - 0.1).all()
    assert torch.equal(frame_localisation(a, a), torch.arange(6).expand(4, 6))


def test_bad_shapes_and_strategy():
    with pytest.raises(ValueError, match="strategy"):
        clip_scores(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), "median")
    with pytest.raises(ValueError, match="same T and D"):
        clip_scores(torch.zeros(2, 3, 4), torch.zeros(2, 5, 4))


def test_sync_retrieval_report_on_a_pair_dataset(tmp_path):
    """End to end on a tiny events set: shapes, the four strategies, chance of localisation, and the clip-audio
    baseline's single audio vector per clip."""
    from cavmae_lite import CAVMAE, CAVMAESync, CAVMAESyncConfig
    from cavmae_lite.data import make_synthetic
    from cavmae_lite.data.pairs import load_pair_dataset
    from cavmae_lite.evaluate import pair_embeddings, sync_retrieval

    torch.manual_seed(0)
    out = make_synthetic(tmp_path / "ev", 0, 1, 1, 3, num_frames=16, mp4=0, workers=1, progress=False, events=True)
    c = CAVMAESyncConfig.tiny(modality_specific_depth=1, decoder_depth=1)
    ds = load_pair_dataset(out, c, split="test", mode="retrieval", cache=False)
    rep = sync_retrieval(CAVMAESync(c), ds, device="cpu")
    assert rep["n_clips"] == 3 and rep["frames_per_clip"] == 16 and rep["frame"]["n"] == 48
    assert set(rep["clip"]) == set(STRATEGIES) and rep["localisation"]["chance"] == 1 / 16
    from cavmae_lite import CAVMAEConfig

    cav = CAVMAE(CAVMAEConfig.tiny(modality_specific_depth=1, decoder_depth=1))  # whole 256-frame clips
    a, v = pair_embeddings(cav, ds, device="cpu", clip_audio=True)
    assert a.shape == v.shape == (3, 16, cav.config.embed_dim) and torch.equal(a[:, 0], a[:, 15])
    with pytest.raises(ValueError, match="retrieval"):
        pair_embeddings(cav, load_pair_dataset(out, c, split="test", mode="eval", cache=False), device="cpu")
