"""cavmae_lite.evaluate.embeddings: embeddings of a model on a dataset (stream and joint, middle frame and frame
averaging), retrieval on them, probe features. The metrics: test_evaluate_metrics.py; the probe:
test_evaluate_probe.py.

The last test is not about evaluate/ (which LayerNorms each ablation variant trains): it waits here for a home in
tests/test_model.py."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset

from cavmae_lite.evaluate import (
    FEATURES,
    compute_embeddings,
    probe_embeddings,
    probe_features,
    retrieval,
    retrieval_metrics,
)
from cavmae_lite.model import CAVMAE, CAVMAEClassifier
from tests.helpers import PairedDataset, micro_config


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


def test_retrieval_is_the_metrics_of_the_embeddings_similarity():
    c = micro_config()
    torch.manual_seed(0)
    model = CAVMAE(c)
    ds = PairedDataset(c, n=24)
    emb = compute_embeddings(model, ds, batch_size=10, device=None)  # None: the best device, as "auto"
    sim = emb.similarity()
    assert sim.shape == (24, 24) and torch.allclose(sim, emb.audio @ emb.video.T)
    assert retrieval(model, ds, batch_size=10, device="cpu") == retrieval_metrics(sim)
    assert emb.video_ids == ds.video_ids and emb.labels.tolist() == ds.labels.tolist()
    assert emb.labels_multi.shape == (24, 4)


def test_probe_features_of_each_kind_and_frame_argument_checks():
    c = micro_config()
    model = CAVMAE(c)
    ds = PairedDataset(c, n=6)
    emb = compute_embeddings(model, ds, device="cpu", joint=True)
    widths = {f: probe_features(emb, f).shape for f in FEATURES}
    assert widths == {"a": (6, 32), "v": (6, 32), "av": (6, 64), "joint": (6, 32)}
    assert torch.equal(probe_features(emb, "av")[:, :32], emb.audio)
    with pytest.raises(ValueError, match="frames"):
        compute_embeddings(model, ds, frames="first", device="cpu")
    with pytest.raises(ValueError, match="frames=True"):
        compute_embeddings(model, [{k: v for k, v in ds[0].items() if k != "frames"}], frames="average",
                           device="cpu")


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
