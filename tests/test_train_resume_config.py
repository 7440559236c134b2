"""Resuming never mixes configurations: ``resume=True`` on a run folder written for other settings raises (naming
the fields), a changed budget still resumes, and ``run_key`` names a folder per configuration (notebook 06)."""

from __future__ import annotations

import json

import pytest
import torch

from cavmae_lite.train import RESUME_MAY_CHANGE, check_resume_config, pretrain, run_config, run_key
from tests.helpers import PairedDataset, micro_config, micro_train


def test_resume_with_a_changed_config_raises_and_leaves_the_run(tmp_path):
    c = micro_config()
    ds = PairedDataset(c, n=16)
    tc = micro_train(max_steps=2)
    pretrain(c, tc, ds, tmp_path, progress=False)
    before = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    for changed_c, changed_tc, field in ((c, tc.replace(mask_ratio_a=0.3), "train.mask_ratio_a: 0.75 then, 0.3 now"),
                                         (c, tc.replace(contrast_weight=0.5), "model.contrast_weight"),
                                         (c, tc.replace(seed=1), "train.seed"),
                                         (micro_config(embed_dim=48), tc, "model.embed_dim")):
        with pytest.raises(ValueError, match="another configuration") as err:
            pretrain(changed_c, changed_tc, ds, tmp_path, resume=True, progress=False)
        assert field in str(err.value) and "run_key" in str(err.value)
    after = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)  # the old run is untouched


def test_a_changed_budget_still_resumes(tmp_path):
    c = micro_config()
    ds = PairedDataset(c, n=16)
    pretrain(c, micro_train(max_steps=2), ds, tmp_path, progress=False)
    more = micro_train(max_steps=4, log_every=2, checkpoint_every=4, eval_retrieval=False)  # budget, bookkeeping
    assert {"max_steps", "log_every", "checkpoint_every", "eval_retrieval"} <= set(RESUME_MAY_CHANGE)
    result = pretrain(c, more, ds, tmp_path, resume=True, progress=False)
    assert result.step == 4 and result.stopped == "max_steps"
    again = pretrain(c, more, ds, tmp_path, resume=True, progress=False)
    assert again.stopped == "already_finished" and again.step == 4


def test_run_key_names_a_folder_per_configuration(tmp_path):
    c, tc = micro_config(), micro_train()
    assert run_key(c, tc) == run_key(micro_config(), micro_train())  # deterministic
    assert run_key(c, tc) == run_key(c, tc.replace(max_steps=60, max_minutes=10.0, log_every=5, device="auto"))
    keys = {run_key(c, tc), run_key(c, tc.replace(mask_ratio_v=0.3)), run_key(c, tc.replace(lr=2e-3)),
            run_key(c, tc.replace(contrast_temperature=0.1)), run_key(micro_config(joint_depth=2), tc)}
    assert len(keys) == 5 and all(len(k) == 12 for k in keys)
    # a loss override given in the TrainConfig or already in the model config is the same run
    assert run_key(c.replace(contrast_weight=0.1), micro_train(contrast_weight=None)) == run_key(c, tc)
    # keyed folders: a changed config starts a new run instead of failing or loading the old one
    ds = PairedDataset(c, n=16)
    for t in (tc.replace(max_steps=2), tc.replace(max_steps=2, mask_ratio_a=0.3)):
        r = pretrain(c, t, ds, tmp_path / f"run-{run_key(c, t)}", resume=True, progress=False)
        assert r.step == 2 and r.stopped == "max_steps"
    assert len(list(tmp_path.iterdir())) == 2


def test_check_resume_config_reads_old_folders(tmp_path):
    c, tc = micro_config(), micro_train()
    check_resume_config(tmp_path, run_config(c, tc), tc)  # no config.json: nothing to compare
    saved = {"model": run_config(c, tc).to_dict(), "train": tc.to_dict(), "world_size": 1, "init": None}
    del saved["train"]["contrast_groups"]  # a field added after the run was written reads as its default
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_resume_config(tmp_path, run_config(c, tc), tc)
    with pytest.raises(ValueError, match="train.contrast_groups: 1 then, 2 now"):
        check_resume_config(tmp_path, run_config(c, tc), tc.replace(contrast_groups=2))
