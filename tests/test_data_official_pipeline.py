"""The researcher's path end to end, through the CLI, on a tree laid out as the official CAV-MAE scripts lay it out:
separate train and eval datafiles with absolute paths and no split keys, ``frame_<i>/<id>.jpg`` folders, a label
CSV keyed by mids, and YouTube-style ids with leading and trailing ``-`` and ``_``.

    pretrain --data train.json --eval-data eval.json  ->  evaluate retrieval  ->  evaluate finetune --recipe as20k
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from cavmae_lite.cli import main
from tests.helpers import micro_config

YOUTUBE_IDS = ["-4gqARaEJE_", "_DWKN92ewsJ", "--x_Y-z__9q", "a.b-c_d", "__", "-", "Zz0-_-0zZ_A", "9_-_-_-_-_9",
               "_-leading", "trailing-_", "x" * 11, "0-0-0-0-0-0"]


@pytest.fixture(scope="module")
def official_tree(tmp_path_factory):
    """(train.json, eval.json, class_labels.csv, micro config JSON) in the official layout."""
    from cavmae_lite.data import make_synthetic

    root = tmp_path_factory.mktemp("as")
    syn = make_synthetic(root / "syn", seed=0, num_train=8, num_val=0, num_test=4, mp4=0, workers=1,
                         progress=False)
    entries = json.loads((syn / "manifest.json").read_text())["data"]
    classes = list(csv.DictReader((syn / "labels.csv").open()))
    mid = {row["mid"]: f"/m/0{int(row['index']):03d}_x" for row in classes}  # AudioSet-like mids
    with (root / "class_labels_indices.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "mid", "display_name"])
        for row in classes:
            w.writerow([row["index"], mid[row["mid"]], row["display_name"]])
    audio, frames = root / "audio", root / "frames"
    audio.mkdir()
    lists = {"train": [], "test": []}
    for e, vid in zip(entries, YOUTUBE_IDS):
        shutil.copy(syn / e["wav"], audio / f"{vid}.wav")
        for i in range(e["num_frames"]):
            (frames / f"frame_{i}").mkdir(parents=True, exist_ok=True)
            shutil.copy(syn / f"frame_{i}" / f"{e['video_id']}.jpg", frames / f"frame_{i}" / f"{vid}.jpg")
        lists[e["split"]].append({"video_id": vid, "wav": str((audio / f"{vid}.wav").resolve()),
                                  "video_path": str(frames.resolve()), "labels": mid[e["labels"]],
                                  "num_frames": e["num_frames"]})
    datafiles = root / "datafiles"
    datafiles.mkdir()
    for split, name in (("train", "as_train.json"), ("test", "as_eval.json")):
        (datafiles / name).write_text(json.dumps({"data": lists[split]}, indent=1))
    cfg = root / "micro.json"
    micro_config().save(cfg)
    return {"train": str(datafiles / "as_train.json"), "eval": str(datafiles / "as_eval.json"),
            "labels": str(root / "class_labels_indices.csv"), "config": str(cfg), "root": root}


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_pretrain_retrieval_finetune_on_official_datafiles(official_tree, tmp_path, capsys):
    t = official_tree
    data = ["--data", t["train"], "--labels", t["labels"]]
    run = tmp_path / "run"
    assert main(["pretrain", "--config", t["config"], *data, "--eval-data", t["eval"], "--out", str(run),
                 "--batch-size", "4", "--epochs", "2", "--threads", "1", "--amp", "none", "--no-progress"]) == 0
    summary = _last_json(capsys)
    assert summary["step"] == 4  # 8 training clips (the whole train.json), batch 4, 2 epochs
    assert summary["best_epoch"] in (1, 2)

    ev = ["--checkpoint", str(run), *data, "--eval-data", t["eval"], "--json"]
    assert main(["evaluate", "retrieval", *ev]) == 0
    r = _last_json(capsys)
    assert r["n"] == 4 and 0 <= r["a2v"]["r1"] <= 1  # the whole eval.json: no split asked for, none needed

    assert main(["embed", t["eval"], str(tmp_path / "emb.npz"), "--checkpoint", str(run)]) == 0
    ids = list(np.load(tmp_path / "emb.npz")["video_ids"])
    assert ids == [e["video_id"] for e in json.loads(open(t["eval"]).read())["data"]]  # ids verbatim, in order

    assert main(["evaluate", "finetune", "--recipe", "as20k", *ev, "--max-steps", "2"]) == 0
    out = _last_json(capsys)["joint"]
    assert out["recipe"]["name"] == "as20k" and out["loss"] == "bce" and out["steps"] == 2
    assert out["last"]["n"] == 4 and 0 <= out["last"]["mAP"] <= 1


def test_a_split_asked_of_a_file_without_splits_says_so(official_tree):
    from cavmae_lite.data import load_dataset, resolve_split

    assert resolve_split(official_tree["eval"], None, "test") is None  # not asked: the whole file
    with pytest.raises(ValueError, match="no 'split' keys"):
        load_dataset(official_tree["eval"], micro_config(), split="test")
