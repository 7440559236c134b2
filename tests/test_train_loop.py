"""Pretraining loop: learning, exact resume (in-process and after SIGKILL), NaN guard, checkpoints, precision."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cavmae_lite.checkpoints import CheckpointError, to_official_state_dict
from cavmae_lite.config import CAVMAEConfig, TrainConfig
from cavmae_lite.model import CAVMAE
from cavmae_lite.train import TrainingDiverged, load_pretrained, lr_factor, pretrain
from tests.helpers import PairedDataset, micro_config, micro_train

ROOT = Path(__file__).resolve().parents[1]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_loss_decreases_on_fixed_batch():
    c = micro_config()
    ds = PairedDataset(c, n=8)
    r = pretrain(c, micro_train(max_steps=30, batch_size=8, warmup_steps=3, lr=3e-3), ds, progress=False)
    losses = [h["loss"] for h in r.history]
    assert len(losses) == 30 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5


def test_resume_in_process_is_bit_exact(tmp_path):
    c = micro_config()
    ds = PairedDataset(c, n=40, augment=True)  # 5 batches per epoch: the resume point is mid-epoch
    tc = micro_train(max_steps=8, checkpoint_every=3)
    full = pretrain(c, tc, ds, tmp_path / "full", progress=False)
    pretrain(c, tc, ds, tmp_path / "part", progress=False, stop_after=4)  # "killed" after step 4
    ck = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert ck["state"]["step"] == 3  # the last checkpoint before the kill
    torch.manual_seed(123)  # whatever happened in between must not matter
    resumed = pretrain(c, tc, ds, tmp_path / "part", resume=True, progress=False)
    assert resumed.step == full.step == 8
    assert _same_weights(full.model, resumed.model)
    a = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in a] == [x["loss"] for x in b] and [x["step"] for x in b] == list(range(1, 9))
    f1 = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    f2 = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(f1["optimizer"]["state"][k]["exp_avg"], f2["optimizer"]["state"][k]["exp_avg"])
               for k in f1["optimizer"]["state"])


_KILL_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {root!r})
from tests.helpers import PairedDataset, micro_config, micro_train
from cavmae_lite.train import pretrain
c = micro_config()
pretrain(c, micro_train(max_steps=400, checkpoint_every=3), PairedDataset(c, n=40, augment=True), {out!r},
         progress=False)
"""


def test_resume_after_sigkill(tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT.format(root=str(ROOT), out=str(out))],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    ck = out / "checkpoint.pt"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            if ck.is_file() and torch.load(ck, weights_only=True)["state"]["step"] >= 6:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    step = torch.load(ck, weights_only=True)["state"]["step"]
    assert step >= 6 and step % 3 == 0
    c = micro_config()
    ds = PairedDataset(c, n=40, augment=True)
    tc = micro_train(max_steps=400, checkpoint_every=3)  # same schedule horizon as the killed run
    resumed = pretrain(c, tc, ds, out, resume=True, progress=False, stop_after=4)
    full = pretrain(c, tc, ds, tmp_path / "full", progress=False, stop_after=step + 4)
    assert resumed.step == full.step == step + 4 and _same_weights(full.model, resumed.model)


class _Poisoned(CAVMAE):
    """Multiplies the loss by ``factor`` (default NaN) on the forward calls listed in ``bad``."""

    def __init__(self, config, bad, factor: float = float("nan")):
        super().__init__(config)
        self.bad, self.calls, self.factor = set(bad), 0, factor

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        self.calls += 1
        if self.calls in self.bad:
            out.loss = out.loss * self.factor
        return out


def test_nan_loss_stops_without_a_nan_checkpoint(tmp_path):
    c = micro_config()
    ds = PairedDataset(c, n=32)
    with pytest.raises(TrainingDiverged, match="non-finite loss"):
        pretrain(c, micro_train(max_steps=6, checkpoint_every=1), ds, tmp_path / "run", progress=False,
                 model=_Poisoned(c, bad={4}))
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["state"]["step"] == 3
    assert all(torch.isfinite(v).all() for v in ck["model"].values())


def test_nan_loss_is_skipped_under_fp16(tmp_path):
    c = micro_config()
    ds = PairedDataset(c, n=32)
    r = pretrain(c, micro_train(max_steps=5, amp="fp16"), ds, tmp_path / "run", progress=False,
                 model=_Poisoned(c, bad={2}))
    assert r.step == 5 and sum(h.get("skipped", 0) for h in r.history) == 1
    assert all(torch.isfinite(p).all() for p in r.model.parameters())
    with pytest.raises(TrainingDiverged, match="consecutive"):
        pretrain(c, micro_train(max_steps=8, amp="fp16", max_bad_steps=2), ds, None, progress=False,
                 model=_Poisoned(c, bad={2, 3, 4, 5}))


def test_corrupted_checkpoint_raises_clear_error(tmp_path):
    c = micro_config()
    ds = PairedDataset(c, n=16)
    pretrain(c, micro_train(max_steps=2), ds, tmp_path / "run", progress=False)
    ck = tmp_path / "run" / "checkpoint.pt"
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_pretrained(tmp_path / "run")
    with pytest.raises(CheckpointError):
        pretrain(c, micro_train(max_steps=4), ds, tmp_path / "run", resume=True, progress=False)
    ck.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_pretrained(ck)
    with pytest.raises(FileExistsError, match="--resume"):
        pretrain(c, micro_train(max_steps=2), ds, tmp_path / "run", progress=False)


def test_bf16_autocast_step_on_cpu():
    c = micro_config()
    r = pretrain(c, micro_train(max_steps=2, amp="bf16"), PairedDataset(c, n=16), progress=False)
    assert r.step == 2 and all(h["loss"] == h["loss"] for h in r.history)


def test_grad_accum_and_time_budget():
    c = micro_config()
    ds = PairedDataset(c, n=32)
    r = pretrain(c, micro_train(max_steps=3, grad_accum=2, batch_size=4), ds, progress=False)
    assert r.step == 3 and r.history[-1]["epoch"] == 0
    r = pretrain(c, micro_train(max_steps=None, max_minutes=0.02), ds, progress=False)
    assert r.stopped == "max_minutes" and r.step > 0


def test_lr_schedules():
    tc = TrainConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.0, max_steps=110)
    assert lr_factor(tc, 0, 110, 5) == pytest.approx(0.1)
    assert lr_factor(tc, 9, 110, 5) == pytest.approx(1.0)
    assert lr_factor(tc, 60, 110, 5) == pytest.approx(0.5)
    assert lr_factor(tc, 110, 110, 5) == pytest.approx(0.0)
    off = TrainConfig.preset("base")
    assert [lr_factor(off, e * 100, None, 100) for e in (0, 9, 10, 14, 15, 20)] == [1, 1, 0.5, 0.5, 0.25, 0.125]


def test_load_pretrained_accepts_official_keys(tmp_path):
    model = CAVMAE(CAVMAEConfig.tiny())
    torch.save({"module." + k: v for k, v in to_official_state_dict(model).items()}, tmp_path / "official.pth")
    with pytest.raises(CheckpointError, match="cannot tell the number of attention heads"):  # width 128, 12 heads?
        load_pretrained(tmp_path / "official.pth")
    loaded = load_pretrained(tmp_path / "official.pth", num_heads=2, decoder_num_heads=4, num_mel_bins=64)  # not in it
    assert _same_weights(model, loaded) and loaded.config == model.config


def test_train_config_roundtrip():
    tc = TrainConfig.preset("tiny", max_steps=5)
    assert TrainConfig.from_dict(json.loads(json.dumps(tc.to_dict()))) == tc
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


def test_resume_of_a_finished_run_changes_nothing(tmp_path, caplog):
    c = micro_config()
    ds = PairedDataset(c, n=16)
    pretrain(c, micro_train(max_steps=3), ds, tmp_path / "run", progress=False)
    ck = tmp_path / "run" / "checkpoint.pt"
    before_bytes, before_metrics = ck.read_bytes(), (tmp_path / "run" / "metrics.jsonl").read_text()
    with caplog.at_level(logging.INFO, logger="cavmae_lite.train"):
        r = pretrain(c, micro_train(max_steps=3), ds, tmp_path / "run", resume=True, progress=True)
    assert r.stopped == "already_finished" and r.step == 3 and r.history == []
    assert ck.read_bytes() == before_bytes  # not rewritten
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == before_metrics
    assert "already reached its limit (max_steps) at step 3" in caplog.text
    # a larger budget trains on from there
    r = pretrain(c, micro_train(max_steps=5), ds, tmp_path / "run", resume=True, progress=False)
    assert r.stopped == "max_steps" and r.step == 5 and [h["step"] for h in r.history][-1] == 5


def test_time_budget_counts_over_resumes(tmp_path):
    c = micro_config()
    ds = PairedDataset(c, n=16)
    r = pretrain(c, micro_train(max_steps=None, max_minutes=0.01), ds, tmp_path / "run", progress=False)
    assert r.stopped == "max_minutes"
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["state"]["wall"] >= 0.6 and ck["state"]["stopped"] == "max_minutes"
    again = pretrain(c, micro_train(max_steps=None, max_minutes=0.01), ds, tmp_path / "run", resume=True,
                     progress=False)
    assert again.stopped == "already_finished" and again.step == r.step


def test_auto_precision_is_bf16_only_where_it_is_native(monkeypatch):
    import cavmae_lite.runtime as rt

    cpu = torch.device("cpu")
    monkeypatch.setattr(rt, "cpu_has_native_bf16", lambda: True)
    assert rt.resolve_amp("auto", cpu) == "bf16"
    monkeypatch.setattr(rt, "cpu_has_native_bf16", lambda: False)
    assert rt.resolve_amp("auto", cpu) == "none"
    assert rt.resolve_amp("fp16", cpu) == "fp16" and rt.resolve_amp("none", cpu) == "none"


def test_native_bf16_probe_answers_a_bool():
    from cavmae_lite.runtime import cpu_has_native_bf16

    assert isinstance(cpu_has_native_bf16(), bool)


def test_train_config_temperature_overrides_the_model_and_is_validated(tmp_path):
    c = micro_config()
    assert c.contrast_temperature == 0.05
    ds = PairedDataset(c, n=8)
    r = pretrain(c, micro_train(max_steps=1, batch_size=4, contrast_temperature=0.2), ds, tmp_path / "run",
                 progress=False)
    assert r.model.config.contrast_temperature == 0.2  # the trained model carries the temperature it used
    assert load_pretrained(tmp_path / "run").config.contrast_temperature == 0.2
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["contrast_temperature"] == 0.2 and saved["train"]["contrast_temperature"] == 0.2
    with pytest.raises(ValueError, match="contrast_temperature"):
        TrainConfig(contrast_temperature=0.0)
    tiny = TrainConfig.preset("tiny")
    assert (tiny.contrast_temperature, tiny.mask_ratio_a, tiny.mask_ratio_v) == (0.1, 0.15, 0.15)
    assert TrainConfig.preset("base").contrast_temperature is None  # the paper's 0.05, from the model config


def test_pretrain_flags_map_to_the_train_config(tmp_path):
    import argparse

    from cavmae_lite.cli.pretrain import add_pretrain_arguments, build_configs

    p = argparse.ArgumentParser()
    add_pretrain_arguments(p)
    model, tc = build_configs(p.parse_args(["--out", str(tmp_path / "r"), "--temperature", "0.07",
                                            "--mask-ratio-a", "0.5", "--clip", "0"]))
    assert (tc.contrast_temperature, tc.mask_ratio_a, tc.mask_ratio_v, tc.clip_grad) == (0.07, 0.5, 0.15, None)
    assert model == CAVMAEConfig.tiny()  # the model preset itself keeps the paper's temperature
    _, tc = build_configs(p.parse_args(["--out", str(tmp_path / "r")]))
    assert tc == TrainConfig.preset("tiny")


def test_paired_dataset_shapes():
    c = micro_config()
    ds = PairedDataset(c, n=10)
    item = ds[3]
    assert item["audio"].shape == (32, 32) and item["video"].shape == (3, 32, 32)
    assert item["frames"].shape == (2, 3, 32, 32)


# ----- logging, TensorBoard, runtime ---------------------------------------------------------------------------


def test_library_logs_instead_of_printing(tmp_path, capsys, caplog):
    c = micro_config()
    ds = PairedDataset(c, n=16)
    pretrain(c, micro_train(max_steps=2), ds, tmp_path / "run", progress=False)
    with caplog.at_level(logging.INFO, logger="cavmae_lite"):
        pretrain(c, micro_train(max_steps=3), ds, tmp_path / "run", resume=True, progress=False)
    assert "resumed from" in caplog.text and "at step 2" in caplog.text
    assert capsys.readouterr().out == ""


def _scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_holds_the_metrics_jsonl_scalars(tmp_path):
    c = micro_config()
    ds, val = PairedDataset(c, n=16), PairedDataset(c, n=8, seed=1)
    run = tmp_path / "run"
    tc = micro_train(max_steps=None, epochs=2)  # 2 steps per epoch
    pretrain(c, tc, ds, run, progress=False, eval_dataset=val, tensorboard=True)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    got = _scalars(run / "tensorboard")
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [x for x in lines if "val_loss" not in x]
    assert [s for s, _ in got["train/loss"]] == [x["step"] for x in steps] == [1, 2, 3, 4]
    assert [v for _, v in got["train/loss"]] == pytest.approx([x["loss"] for x in steps], rel=1e-6)
    assert [v for _, v in got["train/lr"]] == pytest.approx([x["lr"] for x in steps], rel=1e-6)
    vals = [x for x in lines if "val_loss" in x]
    assert got["val/loss"] == [(x["step"], pytest.approx(x["val_loss"], rel=1e-6)) for x in vals]
    assert [v for _, v in got["val/epoch"]] == [1, 2]
    # a resumed run appends without duplicating steps (events past the checkpoint are purged)
    pretrain(c, tc.replace(epochs=3), ds, run, resume=True, progress=False, eval_dataset=val, tensorboard=True)
    assert [s for s, _ in _scalars(run / "tensorboard")["train/loss"]] == [1, 2, 3, 4, 5, 6]


def test_tensorboard_missing_names_the_fix(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the package were not installed
    c = micro_config()
    with pytest.raises(ImportError, match=r"pip install tensorboard.*pip install cavmae-lite\[tensorboard\]"):
        pretrain(c, micro_train(max_steps=1), PairedDataset(c, n=8), tmp_path / "run", progress=False,
                 tensorboard=True)
    assert not (tmp_path / "run").exists()  # failed before anything was written


def test_resolve_device_amp_and_autocast():
    import contextlib

    from cavmae_lite.runtime import autocast, resolve_amp, resolve_device

    auto = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto") == auto
    assert resolve_device(torch.device("cpu")) == resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda:0")
    assert resolve_amp(None, "cpu") == "none" and resolve_amp("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="amp must be one of"):
        resolve_amp("fp8", "cpu")
    assert isinstance(autocast("none", "cpu"), contextlib.nullcontext)
    with autocast("bf16", torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(None, "cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
