"""Validation and the run's loss settings without touching the caller's model: validate() and pretrain(model=...)
leave ``model.config`` as it is; the run's loss settings reach the forward as ``loss_settings``."""

from __future__ import annotations

import json

import pytest
import torch

from cavmae_lite.model import CAVMAE
from cavmae_lite.train import load_pretrained, loss_settings, pretrain, run_config, validate
from tests.helpers import PairedDataset, micro_config, micro_train


def _copy_of(model: CAVMAE, config) -> CAVMAE:
    other = CAVMAE(config)
    other.load_state_dict(model.state_dict())
    return other


def test_loss_settings_are_what_differs_and_the_forward_uses_them():
    c = micro_config()
    model = CAVMAE(c)
    assert loss_settings(c, c) == {}
    run = c.replace(contrast_weight=0.5, contrast_temperature=0.2, contrast_negatives="local")
    diff = loss_settings(c, run)
    assert diff == {"contrast_weight": 0.5, "contrast_temperature": 0.2, "contrast_negatives": "local"}
    with pytest.raises(ValueError, match="embed_dim"):
        loss_settings(c, micro_config(embed_dim=64))
    audio, video = torch.randn(4, c.audio_length, c.num_mel_bins), torch.randn(4, 3, c.img_size, c.img_size)
    g = lambda: torch.Generator().manual_seed(0)
    got = model(audio, video, generator=g(), loss_settings=diff)
    ref = _copy_of(model, run)(audio, video, generator=g())
    assert model.config == c  # nothing swapped
    assert torch.equal(got.loss, ref.loss) and torch.equal(got.loss_c, ref.loss_c)
    assert not torch.equal(got.loss, model(audio, video, generator=g()).loss)


def test_run_config_applies_the_train_overrides_only():
    c = micro_config()
    tc = micro_train(contrast_temperature=0.2)
    assert run_config(c, tc) == c.replace(contrast_weight=0.1, contrast_temperature=0.2)
    assert run_config(c, micro_train(contrast_weight=None)) is c


def test_validate_leaves_the_model_alone_and_uses_the_given_settings():
    c = micro_config(contrast_weight=0.3)  # the model's own: global negatives, temperature 0.05
    torch.manual_seed(0)
    model = CAVMAE(c).train()
    val = PairedDataset(c, n=8, seed=1)
    tc = micro_train(contrast_groups=2)
    run = c.replace(contrast_temperature=0.2, bidirectional_contrast=True)
    got = validate(model, val, run, tc)
    assert model.config == c and model.training  # no config swap, train mode restored
    ref = validate(_copy_of(model, run.replace(contrast_negatives="local")), val, run, tc)
    assert got == ref  # exactly what a model built with the run's (local) settings reports
    assert got != validate(model, val, c, tc)  # the settings passed are the ones used


def test_pretrain_trains_the_given_model_without_changing_its_config(tmp_path):
    c = micro_config()
    torch.manual_seed(0)
    model = CAVMAE(c)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tc = micro_train(max_steps=2, contrast_temperature=0.2)  # the run's settings differ from the model's
    r = pretrain(c, tc, PairedDataset(c, n=16), tmp_path / "run", progress=False, model=model)
    assert model.config == c  # the caller's model keeps its config ...
    assert r.model is model
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert saved == run_config(c, tc).to_dict() and saved["contrast_temperature"] == 0.2  # what it trained with
    assert load_pretrained(tmp_path / "run").config == run_config(c, tc)
    after = model.state_dict()  # ... and holds the trained weights (trained in place)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(after[k], v) for k, v in r.model.state_dict().items())
    # the same run from a fresh model built with the run's config gives the same weights
    torch.manual_seed(0)
    fresh = pretrain(c, tc, PairedDataset(c, n=16), None, progress=False, model=CAVMAE(c))
    assert all(torch.equal(after[k], v) for k, v in fresh.model.state_dict().items())
    with pytest.raises(ValueError, match="only the loss settings"):
        pretrain(c, tc, PairedDataset(c, n=16), None, progress=False, model=CAVMAE(micro_config(embed_dim=64)))
