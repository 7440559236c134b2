"""Pretraining as the released runs did: --init, --contrast-groups (also under DDP), fp16 + GradScaler, per-epoch
validation with best / last / per-epoch checkpoints, exact resume with all of it, and the CLI end to end."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cavmae_lite.checkpoints import adapt_mae_state_dict, save_checkpoint
from cavmae_lite.config import TrainConfig
from cavmae_lite.losses import info_nce
from cavmae_lite.model import CAVMAE
from cavmae_lite.train import load_pretrained, pretrain
from cavmae_lite.train.validation import validate
from tests.helpers import PairedDataset, micro_config, micro_train
from tests.test_checkpoints_mae import micro_mae

ROOT = Path(__file__).resolve().parents[1]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _lines(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


# ----- contrastive groups ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bidirectional", [False, True])
def test_groups_equal_the_mean_of_separate_losses(bidirectional):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(12, 8, generator=g, requires_grad=True)
    v = torch.randn(12, 8, generator=g, requires_grad=True)
    res = info_nce(a, v, 0.1, bidirectional, groups=3)
    parts = [info_nce(a[i:i + 4], v[i:i + 4], 0.1, bidirectional) for i in (0, 4, 8)]
    torch.testing.assert_close(res.loss, sum(p.loss for p in parts) / 3)
    torch.testing.assert_close(res.accuracy, sum(p.accuracy for p in parts) / 3)
    assert res.logits.shape == (3, 4, 4) and torch.equal(res.logits[1], parts[1].logits)
    assert not torch.allclose(res.loss, info_nce(a, v, 0.1, bidirectional).loss)  # fewer negatives: another loss
    grad = torch.autograd.grad(res.loss, (a, v))
    ref = torch.autograd.grad(sum(p.loss for p in parts) / 3, (a, v))
    torch.testing.assert_close(grad, ref)
    for bad in (5, 0, 12):  # 12 would leave 1 clip per group
        with pytest.raises(ValueError, match="chunks of at least 2"):
            info_nce(a, v, groups=bad)


def test_model_output_regrouped_and_config_checks():
    c = micro_config(contrast_weight=0.3, mae_weight=2.0)
    model = CAVMAE(c)
    x = torch.randn(8, 32, 32), torch.randn(8, 3, 32, 32)
    out = model(*x, generator=torch.Generator().manual_seed(1))
    got = model(*x, generator=torch.Generator().manual_seed(1), contrast_groups=2)
    ref = (info_nce(out.audio_emb[:4], out.video_emb[:4]).loss + info_nce(out.audio_emb[4:], out.video_emb[4:]).loss) / 2
    torch.testing.assert_close(got.loss_c, ref)
    torch.testing.assert_close(got.loss, 2.0 * out.loss_rec + 0.3 * ref)
    assert got.logits.shape == (2, 4, 4)
    torch.testing.assert_close(model(*x, generator=torch.Generator().manual_seed(1), contrast_groups=1).loss, out.loss)
    base = TrainConfig.preset("base")
    assert (base.batch_size, base.contrast_groups, base.contrast_negatives) == (48, 4, "local")
    with pytest.raises(ValueError, match="contrast_groups=4 must divide batch_size=10"):
        TrainConfig(batch_size=10, contrast_groups=4)


B, D, G = 4, 6, 2


def _embeddings():
    g = torch.Generator().manual_seed(3)
    return torch.randn(2 * B, D, generator=g), torch.randn(2 * B, D, generator=g)


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        a, v = (t[rank * B:(rank + 1) * B].clone().requires_grad_() for t in _embeddings())
        res = {}
        for gather in (True, False):
            r = info_nce(a, v, 0.1, groups=G, gather=gather)
            ga, = torch.autograd.grad(r.loss, a)
            res[gather] = (r.loss.detach(), r.accuracy.detach(), ga)
        box = [None] * world
        dist.all_gather_object(box, res)
        if rank == 0:
            torch.save(box, Path(out) / "groups.pt")
        dist.barrier()  # no rank tears gloo down while another still talks to it
    finally:
        dist.destroy_process_group()


def test_groups_under_ddp_are_per_rank_chunks(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    box = torch.load(tmp_path / "groups.pt", weights_only=True)
    a, v = (t.requires_grad_() for t in _embeddings())
    half = B // G  # global negatives: group g = chunk g of rank 0 + chunk g of rank 1 (4 clips each)
    groups = [torch.cat([torch.arange(r * B + g * half, r * B + (g + 1) * half) for r in (0, 1)]) for g in range(G)]
    ref = sum(info_nce(a[i], v[i], 0.1).loss for i in groups) / G
    ref_grad, = torch.autograd.grad(ref, a)
    for rank in (0, 1):
        loss, _, grad = box[rank][True]
        torch.testing.assert_close(loss, ref.detach())
        # every rank computes the whole loss; all_gather's backward sums the ranks' gradients (DDP then averages)
        torch.testing.assert_close(grad, 2 * ref_grad[rank * B:(rank + 1) * B])
        loss, _, _ = box[rank][False]  # local negatives: the rank's own batch in G groups
        local = info_nce(a[rank * B:(rank + 1) * B].detach(), v[rank * B:(rank + 1) * B].detach(), 0.1, groups=G)
        torch.testing.assert_close(loss, local.loss)


# ----- fp16 + GradScaler ------------------------------------------------------------------------------------


def _Overflow(config, bad):  # noqa: N802 - stands for a model class
    """Multiplies the loss by 1e30 on the forward calls in ``bad``: finite in fp32, Inf in fp16 gradients."""
    from tests.test_train_loop import _Poisoned

    return _Poisoned(config, bad, factor=1e30)


def test_fp16_overflow_skips_the_step_and_halves_the_scale(tmp_path):
    c = micro_config()
    ds = PairedDataset(c, n=32)
    torch.manual_seed(5)
    one = pretrain(c, micro_train(max_steps=2, amp="fp16"), ds, tmp_path / "a", progress=False, model=_Overflow(c, set()))
    torch.manual_seed(5)
    two = pretrain(c, micro_train(max_steps=3, amp="fp16"), ds, tmp_path / "b", progress=False,
                   model=_Overflow(c, {3}))
    assert two.amp == "fp16" and [h["overflow"] for h in two.history][2] == 1.0
    assert two.history[2]["scale"] == two.history[1]["scale"] / 2
    assert _same(one.model.state_dict(), two.model.state_dict())  # the overflowing step changed nothing
    assert all(p.dtype == torch.float32 for p in two.model.parameters())  # fp16 autocast, fp32 master weights


def test_fp16_resume_is_exact(tmp_path):
    c = micro_config()
    ds = PairedDataset(c, n=32)
    tc = micro_train(max_steps=5, amp="fp16", checkpoint_every=2)
    full = pretrain(c, tc, ds, tmp_path / "full", progress=False)
    pretrain(c, tc, ds, tmp_path / "part", progress=False, stop_after=3)
    resumed = pretrain(c, tc, ds, tmp_path / "part", resume=True, progress=False)
    assert _same(full.model.state_dict(), resumed.model.state_dict())
    ck = [torch.load(tmp_path / r / "checkpoint.pt", weights_only=True) for r in ("full", "part")]
    assert ck[0]["scaler"] == ck[1]["scaler"] and ck[0]["scaler"]["scale"] > 0


# ----- --init -------------------------------------------------------------------------------------------------


def test_init_is_recorded_and_resume_keeps_the_checkpoint(tmp_path):
    c = micro_config()
    ds = PairedDataset(c, n=32)
    mae = tmp_path / "mae.pth"
    save_checkpoint({"model": micro_mae(seed=1)}, mae)
    nearly_frozen = pretrain(c, micro_train(max_steps=1, lr=1e-12, warmup_steps=0, init=str(mae)), ds,
                             tmp_path / "frozen", progress=False)
    adapted = adapt_mae_state_dict(micro_mae(seed=1), c)
    sd = nearly_frozen.model.state_dict()
    for k, v in adapted.items():
        torch.testing.assert_close(sd[k], v, rtol=0, atol=1e-9)
    saved = json.loads((tmp_path / "frozen" / "config.json").read_text())
    assert saved["train"]["init"] == str(mae) and saved["init"]["layout"] == "mae"
    assert saved["init"]["tensors"] == len(adapted)

    tc = micro_train(max_steps=4, init=str(mae))
    full = pretrain(c, tc, ds, tmp_path / "full", progress=False)
    pretrain(c, tc, ds, tmp_path / "part", progress=False, stop_after=2)
    save_checkpoint({"model": micro_mae(seed=2)}, mae)  # the init file changes: the checkpoint must win
    resumed = pretrain(c, tc, ds, tmp_path / "part", resume=True, progress=False)
    assert _same(full.model.state_dict(), resumed.model.state_dict())


# ----- per-epoch validation -----------------------------------------------------------------------------------


def test_validation_is_fixed_and_leaves_training_untouched(tmp_path):
    c = micro_config()
    ds, val = PairedDataset(c, n=16), PairedDataset(c, n=12, seed=1)
    tc = micro_train(max_steps=None, epochs=3, contrast_groups=2, keep_epochs=True)
    plain = pretrain(c, tc.replace(keep_epochs=False), ds, None, progress=False)
    run = tmp_path / "run"
    r = pretrain(c, tc, ds, run, progress=False, eval_dataset=val)
    assert _same(plain.model.state_dict(), r.model.state_dict())  # validating changed no training randomness
    assert [h["loss"] for h in plain.history] == [h["loss"] for h in r.history]
    assert [v["epoch"] for v in r.validation] == [1, 2, 3] and [v["step"] for v in r.validation] == [2, 4, 6]
    assert all(v["val_clips"] == 8 and 0 <= v["val_r1_a2v"] <= 1 for v in r.validation)  # batch 8, rest dropped
    again = validate(r.model, val, r.model.config, tc)
    assert again == validate(r.model, val, r.model.config, tc)  # fixed masking noise
    assert again["val_loss"] == pytest.approx(r.validation[-1]["val_loss"])
    best = min(r.validation, key=lambda v: v["val_loss"])["epoch"]
    lines = [x for x in _lines(run) if "val_loss" in x]
    assert [x["val_loss"] for x in lines] == [v["val_loss"] for v in r.validation]
    ck = {n: torch.load(run / n, weights_only=True) for n in ("best.pt", "checkpoint.pt", f"epoch_{best}.pt")}
    assert ck["best.pt"]["state"]["best_epoch"] == best == r.validation[-1]["best_epoch"]
    assert _same(ck["best.pt"]["model"], ck[f"epoch_{best}.pt"]["model"])
    assert _same(ck["checkpoint.pt"]["model"], r.model.state_dict()) and "optimizer" not in ck["best.pt"]
    assert sorted(p.name for p in run.glob("epoch_*.pt")) == ["epoch_1.pt", "epoch_2.pt", "epoch_3.pt"]
    assert _same(load_pretrained(run / "best.pt").state_dict(), ck["best.pt"]["model"])
    with pytest.raises(ValueError, match="validation set of 3 clips is too small"):
        pretrain(c, tc, ds, None, progress=False, eval_dataset=PairedDataset(c, n=3))


def test_resume_with_validation_is_exact(tmp_path):
    c = micro_config()
    ds, val = PairedDataset(c, n=24, augment=True), PairedDataset(c, n=8, seed=1)
    tc = micro_train(max_steps=None, epochs=3, checkpoint_every=2)  # 3 steps per epoch
    full = pretrain(c, tc, ds, tmp_path / "full", progress=False, eval_dataset=val)
    pretrain(c, tc, ds, tmp_path / "part", progress=False, stop_after=5, eval_dataset=val)  # last save: step 4
    resumed = pretrain(c, tc, ds, tmp_path / "part", resume=True, progress=False, eval_dataset=val)
    assert _same(full.model.state_dict(), resumed.model.state_dict())
    clocks = lambda rows: [{k: v for k, v in x.items() if k not in ("time", "samples_per_s")} for x in rows]
    full_lines, part_lines = clocks(_lines(tmp_path / "full")), clocks(_lines(tmp_path / "part"))
    assert full_lines == part_lines and sum("val_loss" in x for x in part_lines) == 3
    b = [torch.load(tmp_path / r / "best.pt", weights_only=True) for r in ("full", "part")]
    assert _same(b[0]["model"], b[1]["model"]) and b[0]["state"]["best_epoch"] == b[1]["state"]["best_epoch"]


# ----- CLI ----------------------------------------------------------------------------------------------------


def test_cli_pretrain_with_init_groups_and_eval_data_without_splits(tmp_path, capsys):
    from cavmae_lite.cli import main
    from cavmae_lite.data import make_synthetic

    data = make_synthetic(tmp_path / "syn", seed=0, num_train=8, num_val=0, num_test=4, mp4=0, workers=1,
                          progress=False)
    manifest = json.loads((data / "manifest.json").read_text())
    entries = [{k: v for k, v in e.items() if k != "split"} for e in manifest["data"] if e["split"] == "test"]
    (data / "eval_datafile.json").write_text(json.dumps({"data": entries}))  # an official-style file: no splits
    cfg = tmp_path / "micro.json"
    micro_config().save(cfg)
    save_checkpoint({"model": micro_mae()}, tmp_path / "mae.pth")
    run = tmp_path / "run"
    args = ["pretrain", "--config", str(cfg), "--data", str(data), "--out", str(run), "--batch-size", "4",
            "--contrast-groups", "2", "--eval-data", str(data / "eval_datafile.json"), "--keep-epochs",
            "--no-progress", "--threads", "1"]
    assert main([*args, "--epochs", "2", "--init", str(tmp_path / "mae.pth"), "--tensorboard"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert summary["step"] == 4 and summary["best_epoch"] in (1, 2) and summary["val_loss"] > 0
    val = [x for x in _lines(run) if "val_loss" in x]
    assert [x["epoch"] for x in val] == [1, 2] and all(x["val_clips"] == 4 for x in val)  # all 4 eval clips
    saved = json.loads((run / "config.json").read_text())
    assert saved["train"]["contrast_groups"] == 2 and saved["init"]["layout"] == "mae"
    assert {"best.pt", "checkpoint.pt", "epoch_1.pt", "epoch_2.pt"} <= {p.name for p in run.iterdir()}
    assert main([*args, "--epochs", "3", "--resume"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out.strip().splitlines()[-1])["step"] == 6
    assert f"resumed from {run / 'checkpoint.pt'} at step 4" in out.err  # the library's log, printed by the CLI
    assert [x["epoch"] for x in _lines(run) if "val_loss" in x] == [1, 2, 3]
    assert main([*args, "--epochs", "1", "--out", str(tmp_path / "bad"), "--init", str(cfg)]) == 2  # not weights
    assert f"{cfg} is not a torch checkpoint" in capsys.readouterr().err  # a JSON file is not weights



@pytest.mark.parametrize("flag,value,field", [("--max-steps", "-3", "max_steps"), ("--max-steps", "0", "max_steps"),
                                              ("--epochs", "0", "epochs"), ("--epochs", "-1", "epochs"),
                                              ("--max-minutes", "0", "max_minutes"),
                                              ("--max-minutes", "-0.5", "max_minutes")])
def test_cli_rejects_non_positive_budgets_before_writing(tmp_path, capsys, flag, value, field):
    from cavmae_lite.cli import main

    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), flag, value, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"TrainConfig.{field} must be > 0" in err and value in err
    assert not run.exists()


def test_cli_resume_rejects_a_non_positive_budget_and_keeps_the_run(tmp_path, capsys):
    from cavmae_lite.cli import main

    c = micro_config()
    run = tmp_path / "run"
    pretrain(c, micro_train(max_steps=2), PairedDataset(c, n=16), run, progress=False)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    assert main(["pretrain", "--out", str(run), "--resume", "--max-steps", "-3", "--no-progress"]) == 2
    assert "TrainConfig.max_steps must be > 0" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_cli_tensorboard_missing_is_a_clear_error(tmp_path, capsys, monkeypatch):
    from cavmae_lite.cli import main

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), "--max-steps", "1", "--tensorboard", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pip install tensorboard" in err and "cavmae-lite[tensorboard]" in err
    assert not run.exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
