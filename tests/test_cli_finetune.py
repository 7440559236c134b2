"""``cavmae-lite evaluate finetune --recipe ...`` and the ``finetune`` alias on official-style datafiles
(``--data train.json --eval-data eval.json --labels class_labels.csv``, no split keys)."""

from __future__ import annotations

import json
import shutil

import pytest

from cavmae_lite.checkpoints import load_checkpoint, save_checkpoint
from cavmae_lite.cli import main
from cavmae_lite.config import CAVMAEConfig
from cavmae_lite.model import CAVMAE, CAVMAEClassifier
from tests.helpers import micro_config


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    """The synthetic set rewritten as the official scripts write datafiles: absolute paths, one JSON per split,
    no split / num_frames keys (so 10 frames are assumed), the label CSV elsewhere."""
    from cavmae_lite.data import make_synthetic

    root = tmp_path_factory.mktemp("official")
    syn = make_synthetic(root / "syn", seed=0, num_train=12, num_val=0, num_test=6, mp4=0, workers=1,
                         progress=False)
    entries = json.loads((syn / "manifest.json").read_text())["data"]
    files = root / "datafiles"
    files.mkdir()
    for split, name in (("train", "train.json"), ("test", "eval.json")):
        data = [{"video_id": e["video_id"], "wav": str(syn / e["wav"]), "video_path": str(syn),
                 "labels": e["labels"]} for e in entries if e["split"] == split]
        (files / name).write_text(json.dumps({"data": data}))
    shutil.copy(syn / "labels.csv", root / "class_labels.csv")
    ck = root / "pretrained.pt"
    save_checkpoint({"model": CAVMAE(micro_config()).state_dict(), "model_config": micro_config().to_dict()}, ck)
    return {"train": str(files / "train.json"), "eval": str(files / "eval.json"),
            "labels": str(root / "class_labels.csv"), "checkpoint": str(ck)}


def _args(f: dict, *extra: str) -> list[str]:
    return ["--checkpoint", f["checkpoint"], "--data", f["train"], "--eval-data", f["eval"], "--labels", f["labels"],
            *extra]


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_evaluate_finetune_as20k_on_official_datafiles(official_files, capsys):
    assert main(["evaluate", "finetune", "--recipe", "as20k", *_args(official_files, "--max-steps", "2", "--json",
                                                                       "--wa-start", "1", "--wa-end", "2")]) == 0
    out = _json(capsys)
    assert list(out) == ["joint"]
    r = out["joint"]
    assert r["recipe"]["name"] == "as20k" and r["recipe"]["lr"] == 5e-5 and r["recipe"]["head_lr_mult"] == 100
    assert (r["recipe"]["freqm"], r["recipe"]["timem"], r["recipe"]["mixup"]) == (48, 192, 0.5)
    assert r["loss"] == "bce" and r["metric"] == "mAP" and r["steps"] == 2
    assert r["steps_per_epoch"] == 1 and r["epochs"] == 2  # 12 clips < batch 36: one batch per epoch
    assert r["wa_epochs"] == [1, 2]
    for model in ("last", "wa"):
        m = r[model]
        assert 0 <= m["mAP"] <= 1 and 0 <= m["accuracy"] <= 1 and 0 <= m["AUC"] <= 1
        assert m["n"] == 6 and m["frames_averaged"] is True


def test_finetune_alias_freeze_base_probe_and_saved_weights(official_files, tmp_path, capsys):
    out_dir = tmp_path / "ft"
    assert main(["finetune", "--recipe", "vggsound", *_args(official_files, "--max-steps", "1", "--freeze-base",
                                                             "--lbfgs-probe", "--out", str(out_dir))]) == 0
    text = capsys.readouterr().out
    assert "recipe vggsound" in text and "frozen encoder" in text and "ce loss" in text
    assert "last model" in text and "mAP" in text and "acc" in text
    assert "weight averaging: no end of epoch in 3..10 was reached" in text
    assert "L-BFGS probe" in text and "accuracy" in text
    res = json.loads((out_dir / "result.json").read_text())
    assert res["joint"]["recipe"]["freeze_base"] is True and 0 <= res["lbfgs_probe"]["joint"]["accuracy"] <= 1
    obj = load_checkpoint(out_dir / "finetuned_joint.pt")
    clf = CAVMAEClassifier(CAVMAEConfig.from_dict(obj["model_config"]), obj["num_classes"])
    clf.load_state_dict(obj["model"])
    pre = load_checkpoint(official_files["checkpoint"])["model"]
    enc = {k: v for k, v in pre.items() if k.startswith("encoder.")}
    assert enc and all(clf.state_dict()[k].equal(v) for k, v in enc.items())  # the frozen encoder is unchanged
    assert not (out_dir / "finetuned_joint_wa.pt").exists()


def test_as2m_balanced_custom_overrides_and_text_output(official_files, capsys):
    assert main(["evaluate", "finetune", "--recipe", "as2m", *_args(official_files, "--max-steps", "1", "--json",
                                                                      "--no-wa", "--no-frame-average", "--lr", "3e-4",
                                                                      "--batch-size", "4")]) == 0
    r = _json(capsys)["joint"]
    assert r["recipe"]["balanced"] is True and r["recipe"]["lr"] == 3e-4 and r["recipe"]["batch_size"] == 4
    assert r["wa"] is None and r["wa_epochs"] is None and r["last"]["frames_averaged"] is False


def test_class_lists_must_agree(official_files, capsys):
    args = [a for a in _args(official_files, "--max-steps", "1") if a != official_files["labels"]]
    args.remove("--labels")  # each JSON alone: the classes are the mids each file happens to use
    assert main(["finetune", *args]) == 2
    assert "different class lists" in capsys.readouterr().err


def test_the_cli_modules_import_one_way():
    """``evaluate`` takes the data flags and the fine-tuning task from ``finetune``; nothing goes back."""
    import ast
    from pathlib import Path

    import cavmae_lite.cli.finetune as cli_ft

    tree = ast.parse(Path(cli_ft.__file__).read_text())
    imported = {(n.level, n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert (1, "evaluate") not in imported and (1, None) not in imported
