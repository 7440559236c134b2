"""cavmae_lite.evaluate.metrics: retrieval ranks (hand-built matrices, ties, the tiled pass against a naive
reference), AP / mAP, accuracy, AUC, d-prime and the classification summary."""

from __future__ import annotations

import math

import pytest
import torch

from cavmae_lite.evaluate import (
    accuracy,
    accuracy_vs_targets,
    average_precision,
    classification_metrics,
    d_prime,
    mean_average_precision,
    retrieval_metrics,
    retrieval_ranks,
    roc_auc,
)
from cavmae_lite.evaluate import metrics as M


def naive_ranks(sim: torch.Tensor) -> tuple[list[int], list[int]]:
    """The definition, one query at a time, compared in float64 (exact for every dtype used here)."""
    s = sim.double()
    n = s.shape[0]
    return ([int((s[i] >= s[i, i]).sum()) for i in range(n)], [int((s[:, j] >= s[j, j]).sum()) for j in range(n)])


# ----- retrieval: hand-built -------------------------------------------------------------------------------


def test_identity_similarity_is_perfect():
    m = retrieval_metrics(torch.eye(12))
    for d in ("a2v", "v2a"):
        assert m[d] == {"r1": 1.0, "r5": 1.0, "r10": 1.0, "median_rank": 1.0, "mean_rank": 1.0}
    assert m["n"] == 12


def test_hand_built_ranks_and_orientation():
    # rows = audio queries, columns = videos
    sim = torch.tensor([[0.9, 0.1, 0.0],
                        [0.8, 0.5, 0.7],   # audio 1: video 0 (0.8) and video 2 (0.7) beat its partner -> rank 3
                        [0.0, 0.2, 0.3]])
    a2v, v2a = retrieval_ranks(sim)
    assert a2v.tolist() == [1, 3, 1] and a2v.dtype == torch.long
    # video 0 queries column 0: 0.9 is the best -> 1; video 1: column [0.1, 0.5, 0.2] -> 1;
    # video 2: column [0.0, 0.7, 0.3] -> 0.7 beats 0.3 -> 2
    assert v2a.tolist() == [1, 1, 2] and v2a.dtype == torch.long
    m = retrieval_metrics(sim)
    assert m["a2v"]["r1"] == pytest.approx(2 / 3) and m["a2v"]["mean_rank"] == pytest.approx(5 / 3)
    assert m["v2a"]["median_rank"] == 1.0 and m["v2a"]["r5"] == 1.0


def test_ties_are_counted_pessimistically():
    n = 7
    m = retrieval_metrics(torch.zeros(n, n))  # everything tied: the partner ranks last, never first
    for d in ("a2v", "v2a"):
        assert m[d]["r1"] == 0.0 and m[d]["r5"] == 0.0 and m[d]["r10"] == 1.0
        assert m[d]["median_rank"] == n and m[d]["mean_rank"] == n
    sim = torch.tensor([[1.0, 1.0, 0.0, 1.0],
                        [0.0, 2.0, 2.0, 0.0],
                        [0.0, 0.0, 5.0, 0.0],
                        [0.5, 0.0, 0.0, 0.5]])
    a2v, v2a = retrieval_ranks(sim)
    assert a2v.tolist() == [3, 2, 1, 2]
    assert v2a.tolist() == [1, 1, 1, 2]


def test_signed_zeros_tie_and_median_of_an_even_count():
    sim = torch.tensor([[-0.0, 0.0], [0.0, -0.0]])  # -0.0 == 0.0: every entry ties with its partner
    assert [t.tolist() for t in retrieval_ranks(sim)] == [[2, 2], [2, 2]]
    m = retrieval_metrics(torch.tensor([[1.0, 0, 0, 0], [2, 1, 0, 0], [2, 2, 1, 0], [2, 2, 2, 1]]))
    assert m["a2v"]["median_rank"] == 2.5  # ranks 1, 2, 3, 4


# ----- retrieval: the tiled pass against the definition ----------------------------------------------------


def _random_with_ties(n: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    few = torch.randint(-3, 4, (n, n), generator=g).float() / 4  # many exact ties, zeros of both signs below
    fine = torch.randn(n, n, generator=g)
    sim = torch.where(torch.rand(n, n, generator=g) < 0.5, few, fine)
    sim[torch.rand(n, n, generator=g) < 0.05] = -0.0
    return sim.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64])
@pytest.mark.parametrize("n", [1, 2, 3, 37, 130])
def test_ranks_equal_the_definition_on_random_matrices_with_ties(n, dtype):
    sim = _random_with_ties(n, seed=n, dtype=dtype) if dtype.is_floating_point else torch.randint(
        -2, 3, (n, n), generator=torch.Generator().manual_seed(n), dtype=dtype)
    want = naive_ranks(sim)
    for chunk in (None, 1, 7, n + 5):
        a2v, v2a = retrieval_ranks(sim, chunk=chunk)
        assert (a2v.tolist(), v2a.tolist()) == want, chunk


@pytest.mark.parametrize("tile", [1, 5, 64, 500])
def test_column_tiles_for_rows_longer_than_a_tile(monkeypatch, tile):
    """Rows longer than TILE are cut into column tiles (a real case only past N = 32768): shrink TILE to see it."""
    sim = _random_with_ties(41, seed=tile, dtype=torch.float32)
    monkeypatch.setattr(M, "TILE", tile)
    for chunk in (None, 3):
        assert tuple(t.tolist() for t in retrieval_ranks(sim, chunk=chunk)) == naive_ranks(sim)


def test_low_precision_is_compared_as_it_is_and_matches_float32():
    sim = _random_with_ties(300, seed=1, dtype=torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        low = sim.to(dtype)
        got = retrieval_metrics(low)
        assert got == retrieval_metrics(low.float())  # upcasting is exact, so it may not change a rank
        assert tuple(t.tolist() for t in retrieval_ranks(low)) == naive_ranks(low)


def test_ranks_ignore_autograd_and_accept_non_contiguous_input():
    sim = _random_with_ties(50, seed=2, dtype=torch.float32)
    a2v, v2a = retrieval_ranks(sim.clone().requires_grad_())
    assert not a2v.requires_grad and (a2v.tolist(), v2a.tolist()) == naive_ranks(sim)
    t = sim.T  # a transposed view: the query roles swap
    assert tuple(x.tolist() for x in retrieval_ranks(t)) == naive_ranks(sim)[::-1]


def test_threads_are_left_as_the_caller_set_them():
    before = torch.get_num_threads()
    retrieval_ranks(_random_with_ties(60, seed=3, dtype=torch.float32))
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("where", [(0, 0), (0, 1), (299, 17), (150, 299)])
def test_nan_and_inf_are_refused_wherever_they_are(bad, where):
    sim = torch.randn(300, 300)
    sim[where] = bad
    with pytest.raises(ValueError, match="NaN or Inf"):
        retrieval_ranks(sim)
    with pytest.raises(ValueError, match="NaN or Inf"):
        retrieval_metrics(sim.half())


def test_retrieval_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="square"):
        retrieval_ranks(torch.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="chunk"):
        retrieval_ranks(torch.eye(3), chunk=0)
    with pytest.raises(ValueError, match="empty"):
        retrieval_metrics(torch.zeros(0, 0))
    assert [t.numel() for t in retrieval_ranks(torch.zeros(0, 0))] == [0, 0]


# ----- classification --------------------------------------------------------------------------------------


def test_average_precision_by_hand_including_ties():
    assert average_precision(torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # tied top pair counts as one threshold: P=1/2 at R=1/2, then P=2/3 at R=1
    assert average_precision(torch.tensor([0.5, 0.5, 0.1]), torch.tensor([1, 0, 1])) == pytest.approx(0.25 + 1 / 3)
    assert math.isnan(average_precision(torch.tensor([0.5, 0.1]), torch.tensor([0, 0])))
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.3]])
    targets = torch.tensor([[1, 0], [0, 1], [0, 0]])
    assert mean_average_precision(scores, targets) == pytest.approx(1.0)


def test_mean_average_precision_skips_classes_without_positives_and_checks_shapes():
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.4], [0.4, 0.3, 0.5]])
    targets = torch.tensor([[1, 0, 0], [0, 0, 0], [1, 0, 0]])  # classes 1 and 2 have no positive
    assert mean_average_precision(scores, targets) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no class"):
        mean_average_precision(scores, torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        mean_average_precision(scores, targets[:2])


def test_accuracy_by_index_and_against_multi_hot_targets():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 5.0, 0.0], [0.0, 0.0, 1.0]])
    assert accuracy(logits, torch.tensor([0, 2, 0, 2])) == 0.75
    targets = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0], [0, 0, 1]])  # clip 2 has no label: left out
    # clip 1's target argmax is its lowest-index class (1), its scores say 2: wrong
    assert accuracy_vs_targets(logits, targets) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="no clip has a label"):
        accuracy_vs_targets(logits, torch.zeros(4, 3))


def test_roc_auc_counts_tied_scores_as_half_and_d_prime_inverts_it():
    assert roc_auc(torch.tensor([0.9, 0.8, 0.1, 0.2]), torch.tensor([1, 1, 0, 0])) == 1.0
    assert roc_auc(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == 0.5  # one tied pair: half
    # positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4 half) (0.4>0.1) -> 3.5 / 4
    assert roc_auc(torch.tensor([0.8, 0.4, 0.4, 0.1]), torch.tensor([1, 1, 0, 0])) == pytest.approx(3.5 / 4)
    assert math.isnan(roc_auc(torch.tensor([0.3, 0.2]), torch.tensor([1, 1])))
    assert d_prime(0.5) == pytest.approx(0.0, abs=1e-12)
    # two unit Gaussians d apart: AUC = Phi(d / sqrt 2)
    for d in (0.5, 1.0, 2.0):
        auc = 0.5 * (1 + math.erf(d / 2))
        assert d_prime(auc) == pytest.approx(d, rel=1e-9)


def test_classification_metrics_summary():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.3], [0.1, 0.7]])
    targets = torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1]])
    m = classification_metrics(scores, targets)
    assert set(m) == {"mAP", "accuracy", "AUC", "d_prime"}
    assert m["mAP"] == pytest.approx(1.0) and m["accuracy"] == 1.0 and m["AUC"] == 1.0 and math.isinf(m["d_prime"])
    flipped = classification_metrics(-scores, targets)
    assert flipped["AUC"] == 0.0 and flipped["accuracy"] == 0.0
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        classification_metrics(scores, targets[:, :1])
