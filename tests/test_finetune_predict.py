"""Prediction with a fine-tuned classifier (spec §4): frame-averaged probabilities, the report of the official
metrics, the head input of each fusion, and the AUC / d-prime definitions it reports."""

from __future__ import annotations

import pytest
import torch

from cavmae_lite.evaluate import classification_metrics, d_prime, roc_auc
from cavmae_lite.finetune import (
    classifier_from_pretrained,
    classifier_logits,
    evaluate_classifier,
    head_features,
    predict_classifier,
    prediction_report,
)
from cavmae_lite.model import CAVMAE
from tests.helpers import PairedDataset, micro_config


def test_predictions_average_the_frames_and_report_both():
    c = micro_config()
    clf = classifier_from_pretrained(CAVMAE(c), 4).eval()
    items = [PairedDataset(c, n=6)[i] for i in range(6)]  # drawn once: the second frame is noisy per access
    ds = items
    pred = predict_classifier(clf, ds, sigmoid=True, batch_size=4)
    a, fr = torch.stack([it["audio"] for it in items]), torch.stack([it["frames"] for it in items])
    with torch.no_grad():
        by_hand = torch.stack([torch.sigmoid(classifier_logits(clf, a, fr[:, k])) for k in range(2)]).mean(0)
        middle = torch.sigmoid(classifier_logits(clf, a, torch.stack([it["video"] for it in items])))
    torch.testing.assert_close(pred.averaged, by_hand)
    torch.testing.assert_close(pred.middle, middle)
    assert pred.frames_averaged and pred.label.tolist() == [it["label"] for it in items]
    report = prediction_report(pred)
    assert report["mAP"] == pytest.approx(classification_metrics(by_hand, pred.targets)["mAP"])
    assert report["middle_frame_accuracy"] == pytest.approx(classification_metrics(middle, pred.targets)["accuracy"])
    assert report["n"] == 6 and report["frames_averaged"] is True
    assert evaluate_classifier(clf, ds, multilabel=True, batch_size=4) == report
    audio_only = evaluate_classifier(clf, ds, mode="audio_only")
    assert audio_only["frames_averaged"] is False and audio_only["accuracy"] == audio_only["middle_frame_accuracy"]


def test_head_features_of_each_fusion():
    c = micro_config()
    clf = classifier_from_pretrained(CAVMAE(c), 4)
    ds = PairedDataset(c, n=5)
    x, y, lab = head_features(clf, ds)
    assert x.shape == (5, c.embed_dim) and y.shape == (5, 4) and lab.tolist() == ds.labels.tolist()
    x2, _, _ = head_features(clf, ds, fusion="joint+streams")
    assert x2.shape == x.shape and not torch.allclose(x, x2)
    with pytest.raises(ValueError, match="fusion"):
        head_features(clf, ds, fusion="concat")


def test_auc_and_d_prime_against_definitions():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 4, (40,), generator=g).float()  # many ties
    t = (torch.rand(40, generator=g) < 0.4).float()
    pos, neg = s[t > 0], s[t == 0]
    brute = float(((pos[:, None] > neg[None]).float() + 0.5 * (pos[:, None] == neg[None]).float()).mean())
    assert roc_auc(s, t) == pytest.approx(brute)
    assert d_prime(0.5) == pytest.approx(0.0, abs=1e-12)
    assert d_prime(0.7602499389065233) == pytest.approx(1.0, rel=1e-9)  # Phi(1 / sqrt 2)
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]])
    y = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 0]])  # last clip unlabelled; class 2 no positive
    m = classification_metrics(scores, y)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["AUC"] == pytest.approx((1.0 + 1.0) / 2)  # classes 0 and 1 separate perfectly; class 2 skipped
