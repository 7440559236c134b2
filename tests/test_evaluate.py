"""Retrieval metrics (hand-built matrices, ties), mAP, linear probe, embeddings (stream and joint), which LayerNorms
each ablation variant trains, fine-tuning, frame averaging."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset

from cavmae_lite.evaluate import compute_embeddings, probe_embeddings, retrieval_metrics, retrieval_ranks
from cavmae_lite.finetune import classifier_logits, evaluate_classifier, finetune
from cavmae_lite.model import CAVMAE, CAVMAEClassifier
from cavmae_lite.probe import average_precision, linear_probe, mean_average_precision
from tests.test_train_helpers import PairedDataset, micro_config


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
    assert a2v.tolist() == [1, 3, 1]
    # video 0 queries column 0: 0.9 is the best -> 1; video 1: column [0.1, 0.5, 0.2] -> 1;
    # video 2: column [0.0, 0.7, 0.3] -> 0.7 beats 0.3 -> 2
    assert v2a.tolist() == [1, 1, 2]
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


def test_median_of_even_count_and_chunking_agrees_with_loop():
    g = torch.Generator().manual_seed(0)
    sim = torch.randint(0, 5, (50, 50), generator=g).float()  # many ties
    a2v, v2a = retrieval_ranks(sim, chunk=7)
    loop_a = [int((sim[i] >= sim[i, i]).sum()) for i in range(50)]
    loop_v = [int((sim[:, j] >= sim[j, j]).sum()) for j in range(50)]
    assert a2v.tolist() == loop_a and v2a.tolist() == loop_v
    m = retrieval_metrics(torch.tensor([[1.0, 0, 0, 0], [2, 1, 0, 0], [2, 2, 1, 0], [2, 2, 2, 1]]))
    assert m["a2v"]["median_rank"] == 2.5  # ranks 1, 2, 3, 4


def test_retrieval_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        retrieval_metrics(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="NaN"):
        retrieval_metrics(torch.tensor([[float("nan"), 0.0], [0.0, 1.0]]))


def test_average_precision_by_hand_including_ties():
    assert average_precision(torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # tied top pair counts as one threshold: P=1/2 at R=1/2, then P=2/3 at R=1
    assert average_precision(torch.tensor([0.5, 0.5, 0.1]), torch.tensor([1, 0, 1])) == pytest.approx(0.25 + 1 / 3)
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.4, 0.3]])
    targets = torch.tensor([[1, 0], [0, 1], [0, 0]])
    assert mean_average_precision(scores, targets) == pytest.approx(1.0)


def test_linear_probe_single_and_multilabel():
    g = torch.Generator().manual_seed(0)
    centers = 3 * torch.randn(4, 8, generator=g)
    y = torch.arange(200) % 4
    x = centers[y] + 0.5 * torch.randn(200, 8, generator=g)
    r = linear_probe(x[:120], y[:120], x[120:], y[120:])
    assert r["accuracy"] == 1.0
    multi = torch.nn.functional.one_hot(y, 4).float()
    multi[::3, 0] = 1.0
    r = linear_probe(x[:120], multi[:120], x[120:], multi[120:], multilabel=True)
    assert r["mAP"] > 0.8


def test_embeddings_and_probe_on_a_model():
    c = micro_config()
    model = CAVMAE(c)
    ds = PairedDataset(c, n=40)
    emb = compute_embeddings(model, ds, batch_size=16, device="cpu")
    assert emb.audio.shape == (40, 32) and torch.allclose(emb.audio.norm(dim=1), torch.ones(40), atol=1e-5)
    avg = compute_embeddings(model, ds, frames="average", batch_size=16, device="cpu")
    assert not torch.allclose(avg.video, emb.video)
    a, v = model.embed(ds.audio[:3], ds.video[:3])
    torch.testing.assert_close(emb.audio[:3], a, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(emb.video[:3], v, rtol=1e-4, atol=1e-5)
    tr = compute_embeddings(model, Subset(ds, range(30)), device="cpu")
    te = compute_embeddings(model, Subset(ds, range(30, 40)), device="cpu")
    assert 0.0 <= probe_embeddings(tr, te, "av")["accuracy"] <= 1.0


def test_finetune_modes_and_frame_averaging():
    c = micro_config()
    model = CAVMAE(c)
    ds = PairedDataset(c, n=32)
    train, test = Subset(ds, range(24)), Subset(ds, range(24, 32))
    for fusion in ("joint", "joint+streams"):
        r = finetune(model, train, test, num_classes=4, fusion=fusion, max_steps=3, batch_size=8)
        assert set(r.metrics) == {"accuracy", "middle_frame_accuracy"} and len(r.history) == 3
    r = finetune(model, train, None, num_classes=4, mode="audio_only", max_steps=2, batch_size=8)
    clf = r.classifier.eval()
    m = evaluate_classifier(clf, test, mode="multimodal")
    with torch.no_grad():  # frame averaging by hand: mean of per-frame softmax
        items = [test[i] for i in range(len(test))]
        a = torch.stack([it["audio"] for it in items])
        fr = torch.stack([it["frames"] for it in items])
        p = torch.stack([classifier_logits(clf, a, fr[:, k]).softmax(-1) for k in range(2)]).mean(0)
        y = torch.tensor([it["label"] for it in items])
    assert m["accuracy"] == pytest.approx(float((p.argmax(1) == y).float().mean()))
    r = finetune(model, train, test, num_classes=4, multilabel=True, max_steps=2, batch_size=8)
    assert "mAP" in r.metrics


def test_joint_embeddings_are_the_classifier_multimodal_vector():
    c = micro_config()
    model = CAVMAE(c)
    ds = PairedDataset(c, n=20)
    plain = compute_embeddings(model, ds, batch_size=8, device="cpu")
    emb = compute_embeddings(model, ds, batch_size=8, device="cpu", joint=True)
    assert plain.joint is None and emb.joint.shape == (20, 32)
    torch.testing.assert_close(emb.audio, plain.audio)
    torch.testing.assert_close(emb.video, plain.video)
    clf = CAVMAEClassifier(c, num_classes=4).eval()
    clf.encoder.load_state_dict(model.encoder.state_dict())
    with torch.no_grad():  # the joint feature is what the multimodal head sees, L2-normalised
        want = torch.nn.functional.normalize(clf.pooled(ds.audio[:5], ds.video[:5], "multimodal"), dim=-1)
    torch.testing.assert_close(emb.joint[:5], want, rtol=1e-4, atol=1e-5)
    items = [ds[i] for i in range(6)]  # fixed frames (the test set draws frame noise per access)
    avg = compute_embeddings(model, items, frames="average", batch_size=4, device="cpu", joint=True)
    with torch.no_grad():  # frame averaging: the joint stream once per frame with the same audio, pooled, averaged
        it = items[5]
        per = [clf.pooled(it["audio"][None], it["frames"][k][None], "multimodal") for k in range(it["frames"].shape[0])]
        want = torch.nn.functional.normalize(torch.cat(per).mean(0, keepdim=True), dim=-1)
    torch.testing.assert_close(avg.joint[5:], want, rtol=1e-4, atol=1e-5)
    tr, te = compute_embeddings(model, Subset(ds, range(14)), device="cpu", joint=True), emb
    assert 0.0 <= probe_embeddings(tr, te, "joint")["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="joint=True"):
        probe_embeddings(plain, plain, "joint")
    with pytest.raises(ValueError, match="features"):
        probe_embeddings(emb, emb, "xyz")


@pytest.mark.parametrize("variant, untrained", [("AV-MAE", ("audio", "video")), ("CAV", ("joint",)),
                                                 ("CAV-MAE", ())])
def test_which_layernorms_a_variant_trains(variant, untrained):
    """contrast_weight 0 (AV-MAE) never runs the single-modality streams, so their LayerNorms (the audio / video
    sets in the joint blocks and norm_audio / norm_video) get no gradient; mae_weight 0 (CAV) likewise leaves the
    joint set and norm_joint untouched. The shared attention / MLP weights get gradients in every variant."""
    change = {"AV-MAE": {"contrast_weight": 0.0}, "CAV": {"mae_weight": 0.0}, "CAV-MAE": {}}[variant]
    model = CAVMAE(micro_config(**change))
    ds = PairedDataset(model.config, n=4)
    model(ds.audio, ds.video).loss.backward()
    enc = model.encoder
    final = {"joint": enc.norm_joint, "audio": enc.norm_audio, "video": enc.norm_video}
    for s in ("joint", "audio", "video"):
        params = [*final[s].parameters()]
        for b in enc.joint_blocks:
            params += [*b.norm1[s].parameters(), *b.norm2[s].parameters()]
        got_grad = [p.grad is not None for p in params]
        assert not any(got_grad) if s in untrained else all(got_grad), (variant, s)
    assert all(p.grad is not None for b in enc.joint_blocks for p in (*b.attn.parameters(), *b.mlp.parameters()))
