"""The fine-tuning memo: a second call loads (same classifier, metrics, history, report, recipe); any change of the
recipe, the other arguments, the weights or the data is a new key; files are weights-only and a foreign / corrupt
file is not trusted."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset

from cavmae_lite.checkpoints import save_checkpoint
from cavmae_lite.finetune import get_recipe
from cavmae_lite.model import CAVMAE
from cavmae_lite.tutorial.memo import cached_finetune, dataset_fingerprint, memo_inputs, memo_key, weights_digest
from tests.helpers import PairedDataset, micro_config

ARGS = {"num_classes": 4, "max_steps": 2, "batch_size": 8, "device": "cpu", "seed": 0}


@pytest.fixture
def setup():
    c = micro_config()
    ds = PairedDataset(c, n=24)
    return CAVMAE(c), Subset(ds, range(16)), Subset(ds, range(16, 24))


def test_second_call_loads_the_same_result(setup, tmp_path):
    model, train, test = setup
    first = cached_finetune(tmp_path, model, train, test, pretrained_id="zoo-key", **ARGS)
    assert not first.loaded and first.path.is_file() and first.path.parent == tmp_path
    assert first.path.name == f"{first.key}.pt" and not list(tmp_path.glob("*.tmp"))
    again = cached_finetune(tmp_path, model, train, test, pretrained_id="zoo-key", **ARGS)
    assert again.loaded and again.key == first.key
    assert again.result.metrics == first.result.metrics and again.result.history == first.result.history
    assert again.result.report == first.result.report and again.result.recipe == first.result.recipe
    assert again.result.score == first.result.score and again.result.metrics["metric"] == "accuracy"
    a, b = first.result.classifier.state_dict(), again.result.classifier.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not again.result.classifier.training
    torch.load(first.path, weights_only=True)  # plain tensors and containers only


def test_weight_averaged_model_is_kept_too(setup, tmp_path):
    model, train, test = setup
    args = {**ARGS, "wa_start": 1, "wa_end": 1}  # 16 clips of 8: epoch 1 ends after the 2 steps
    first = cached_finetune(tmp_path, model, train, test, **args)
    again = cached_finetune(tmp_path, model, train, test, **args)
    assert again.loaded and first.result.metrics["model"] == again.result.metrics["model"] == "wa"
    a, b = first.result.averaged.state_dict(), again.result.averaged.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and not again.result.averaged.training


def test_key_changes_with_recipe_weights_and_data(setup):
    model, train, test = setup

    def key(m=model, tr=train, pid="k", **kw):
        return memo_key(memo_inputs(m, tr, test, pid, **{**ARGS, **kw}))

    base = key()
    assert key() == base
    assert key(lr=2e-4) != base and key(recipe="as20k") != base and key(mixup=0.5) != base
    assert key(mode="audio_only") != base and key(seed=1) != base
    assert key(pid="other") != base
    other = CAVMAE(model.config)
    assert weights_digest(other) != weights_digest(model)
    assert key(m=other) != base
    assert key(tr=Subset(train.dataset, range(15))) != base
    # a default given explicitly is the same memo: recipe fields and the run's arguments alike
    assert key(lr=1e-4) == base and key(recipe="custom") == base and key(mode="multimodal") == base
    assert key(recipe=get_recipe("custom", lr=2e-4)) == key(lr=2e-4)
    with pytest.raises(ValueError, match="unknown finetune arguments"):
        key(warmup=3)


def test_fingerprint_of_a_prepared_dataset(tmp_path):
    from cavmae_lite.data import load_dataset
    from cavmae_lite.data.synthetic import make_synthetic

    data = make_synthetic(tmp_path / "d", 0, 6, 0, 3, mp4=0, progress=False, workers=1)
    c = micro_config(img_size=96, audio_length=256, num_mel_bins=64, patch_size=16)
    ev = load_dataset(data, c, "train", cache=False)
    fp = dataset_fingerprint(ev)
    assert fp["n"] == 6 and fp["synthetic"]["seed"] == 0 and fp["load"]["train"] is False
    assert dataset_fingerprint(load_dataset(data, c, "train", train=True, cache=False)) != fp
    assert dataset_fingerprint(load_dataset(data, c, "test", cache=False))["ids"] != fp["ids"]
    assert dataset_fingerprint(Subset(Subset(ev, [5, 4, 3]), [0, 2]))["ids"] == dataset_fingerprint(Subset(ev, [5, 3]))["ids"]


def test_foreign_or_corrupt_file_is_not_trusted(setup, tmp_path):
    model, train, test = setup
    key = memo_key(memo_inputs(model, train, test, None, **ARGS))
    save_checkpoint({"key": "someone-else"}, tmp_path / f"{key}.pt")
    assert not cached_finetune(tmp_path, model, train, test, **ARGS).loaded  # retrained and overwritten
    assert cached_finetune(tmp_path, model, train, test, **ARGS).loaded
    (tmp_path / f"{key}.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        assert not cached_finetune(tmp_path, model, train, test, **ARGS).loaded
    assert cached_finetune(tmp_path, model, train, test, **ARGS).loaded
    with pytest.raises(TypeError):
        cached_finetune(tmp_path, "runs/x", train, test, **ARGS)


def test_embeddings_and_evaluations_are_cached(setup, tmp_path):
    from cavmae_lite.evaluate import compute_embeddings
    from cavmae_lite.tutorial.memo import cached_embeddings, cached_evaluation

    model, train, test = setup
    emb, loaded = cached_embeddings(tmp_path, model, test, device="cpu", joint=True)
    again, loaded_again = cached_embeddings(tmp_path, model, test, device="cpu", joint=True)
    assert not loaded and loaded_again and again.video_ids == emb.video_ids
    torch.testing.assert_close(again.joint, compute_embeddings(model, test, device="cpu", joint=True).joint)
    assert not cached_embeddings(tmp_path, model, test, device="cpu")[1]  # other arguments: another entry
    run = cached_finetune(tmp_path, model, train, test, **ARGS)
    m, loaded = cached_evaluation(tmp_path, run, test, mode="missing_video")
    m2, loaded2 = cached_evaluation(tmp_path, run, test, mode="missing_video")
    assert not loaded and loaded2 and m == m2
    assert {"accuracy", "middle_frame_accuracy", "mAP", "AUC", "frames_averaged"} <= set(m)
    assert not cached_evaluation(tmp_path, run, test, mode="audio_only")[1]


def test_probe_results_are_cached(tmp_path):
    from cavmae_lite.evaluate import linear_probe
    from cavmae_lite.tutorial.memo import cached_probe

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g), torch.arange(40) % 3
    first, loaded = cached_probe(tmp_path, x[:30], y[:30], x[30:], y[30:], max_iter=20)
    again, loaded_again = cached_probe(tmp_path, x[:30], y[:30], x[30:], y[30:], max_iter=20)
    assert not loaded and loaded_again and first == again == linear_probe(x[:30], y[:30], x[30:], y[30:], max_iter=20)
    assert not cached_probe(tmp_path, x[:30], (y[:30] + 1) % 3, x[30:], y[30:], max_iter=20)[1]
