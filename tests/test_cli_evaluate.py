"""End-to-end CLI on a tiny generated dataset: pretrain -> evaluate retrieval / probe / finetune -> embed -> ablation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cavmae_lite.cli import main
from tests.helpers import micro_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from cavmae_lite.data import make_synthetic

    out = tmp_path_factory.mktemp("data") / "syn"
    make_synthetic(out, seed=0, num_train=16, num_val=0, num_test=8, mp4=1, workers=1, progress=False)
    return out


def _json_out(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_cli_pretrain_evaluate_embed(tiny_data, tmp_path, capsys):
    cfg = tmp_path / "micro.json"
    micro_config().save(cfg)
    run = tmp_path / "run"
    common = ["--data", str(tiny_data), "--no-progress", "--threads", "1"]
    assert main(["pretrain", "--config", str(cfg), "--out", str(run), "--max-steps", "2", "--batch-size", "4",
                 *common]) == 0
    summary = _json_out(capsys)
    assert summary["step"] == 2 and (run / "checkpoint.pt").is_file() and (run / "config.json").is_file()
    assert main(["pretrain", "--config", str(cfg), "--out", str(run), "--max-steps", "3", "--resume", *common]) == 0
    assert _json_out(capsys)["step"] == 3
    assert main(["pretrain", "--config", str(cfg), "--out", str(run), "--max-steps", "3", *common]) == 2  # exists

    assert main(["evaluate", "retrieval", "--checkpoint", str(run), "--data", str(tiny_data), "--split", "test",
                 "--json"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    m = json.loads(out)
    assert m["n"] == 8 and set(m) == {"a2v", "v2a", "n"}
    assert set(m["a2v"]) == {"r1", "r5", "r10", "median_rank", "mean_rank"}
    assert main(["evaluate", "retrieval", "--checkpoint", str(run), "--data", str(tiny_data), "--json",
                 "--frames", "average"]) == 0
    assert _json_out(capsys)["n"] == 8
    assert main(["evaluate", "probe", "--checkpoint", str(run), "--data", str(tiny_data), "--json"]) == 0
    assert 0 <= _json_out(capsys)["accuracy"] <= 1
    assert main(["evaluate", "finetune", "--checkpoint", str(run), "--data", str(tiny_data), "--json",
                 "--fusion", "compare", "--max-steps", "2", "--batch-size", "8"]) == 0
    assert set(_json_out(capsys)) == {"joint", "joint+streams"}

    npz = tmp_path / "emb.npz"
    assert main(["embed", str(tiny_data), str(npz), "--checkpoint", str(run), "--split", "test"]) == 0
    z = np.load(npz)
    assert z["audio"].shape == (8, 32) and z["video"].shape == (8, 32) and len(z["video_ids"]) == 8
    mp4s = sorted((tiny_data / "mp4").glob("*.mp4"))
    if mp4s:
        assert main(["embed", str(mp4s[0].parent), str(npz), "--checkpoint", str(run)]) == 0
        assert np.load(npz)["audio"].shape[0] == len(mp4s)


def test_cli_ablation_runs_three_variants(tiny_data, tmp_path, capsys):
    cfg = tmp_path / "micro.json"
    micro_config().save(cfg)
    assert main(["ablation", "--config", str(cfg), "--data", str(tiny_data), "--out", str(tmp_path / "abl"),
                 "--max-steps", "2", "--batch-size", "4", "--threads", "1", "--json"]) == 0
    rows = _json_out(capsys)
    assert list(rows) == ["CAV", "AV-MAE", "CAV-MAE"]
    assert all(0 <= r["a2v"]["r1"] <= 1 and 0 <= r["probe_av"] <= 1 and 0 <= r["probe_joint"] <= 1 for r in rows.values())


def test_pretrain_help_lists_contract_flags():
    out = subprocess.run([sys.executable, "-m", "cavmae_lite.cli", "pretrain", "--help"], capture_output=True,
                         text=True, cwd=ROOT, check=True).stdout
    for flag in ("--config", "--data", "--out", "--max-steps", "--max-minutes", "--resume", "--seed", "--amp",
                 "--compile", "--grad-accum", "--negatives", "--checkpoint-every", "--schedule"):
        assert flag in out
