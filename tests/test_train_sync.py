"""CAV-MAE Sync through the same training loop: `pretrain --model sync` on (frame, segment) pairs, its run folder,
an exact resume, loading the run back as a CAVMAESync, and `evaluate retrieval` on it."""

from __future__ import annotations

import json

import pytest
import torch

from cavmae_lite import CAVMAESync
from cavmae_lite.checkpoints import load_pretrained
from cavmae_lite.cli.main import main
from cavmae_lite.data import make_synthetic


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("ev") / "d", 0, 8, 2, 4, num_frames=16, mp4=0, workers=1,
                          progress=False, events=True)


def test_pretrain_sync_cli_trains_resumes_and_loads(events, tmp_path, capsys):
    torch.set_num_threads(1)
    run = tmp_path / "run"
    args = ["pretrain", "--model", "sync", "--config", "tiny", "--data", str(events), "--out", str(run),
            "--batch-size", "4", "--no-progress", "--threads", "1"]
    assert main([*args, "--max-steps", "2"]) == 0
    saved = json.loads((run / "config.json").read_text())
    assert saved["model"]["clip_length"] == 256 and saved["model"]["num_register_tokens"] == 2
    assert main([*args, "--max-steps", "3", "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 3
    model = load_pretrained(run)
    assert isinstance(model, CAVMAESync) and model.config.audio_length == 64


def test_sync_base_preset_is_the_development_recipe():
    from argparse import Namespace

    from cavmae_lite.cli.pretrain import build_configs

    ns = Namespace(out="/nonexistent", resume=False, config="base", model="sync", max_steps=None, max_minutes=None,
                   seed=None, compile=False, deterministic=False, keep_epochs=False)
    from cavmae_lite.cli.pretrain import _FLAGS

    for k in _FLAGS:
        setattr(ns, k, None)
    config, tc = build_configs(ns)
    assert (config.audio_length, config.num_frames, config.num_register_tokens, config.global_tokens) == (416, 16, 8, True)
    assert (tc.lr, tc.warmup_fraction, tc.min_lr_ratio, tc.batch_size, tc.contrast_weight) == (2e-4, 0.1, 0.1, 512, 0.1)


def test_evaluate_retrieval_of_a_sync_run_with_a_cavmae_beside_it(events, tmp_path, capsys):
    torch.set_num_threads(1)
    sync_run, cav_run = tmp_path / "sync", tmp_path / "cav"
    common = ["--config", "tiny", "--data", str(events), "--batch-size", "4", "--no-progress", "--threads", "1",
              "--max-steps", "1"]
    assert main(["pretrain", "--model", "sync", "--out", str(sync_run), *common]) == 0
    assert main(["pretrain", "--out", str(cav_run), *common]) == 0
    capsys.readouterr()
    assert main(["evaluate", "retrieval", "--checkpoint", str(sync_run), "--data", str(events), "--split", "test",
                 "--compare", str(cav_run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sync"]["n_clips"] == out["cavmae"]["n_clips"] == 4 and out["cavmae"]["audio"] == "whole clip"
    assert set(out["sync"]["clip"]) == {"diagonal_mean", "diagonal_max", "mean", "max"}
    assert out["sync"]["frame"]["n"] == 64
