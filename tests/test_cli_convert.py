"""`cavmae-lite convert OFFICIAL.pth OUT_DIR`: official CAV-MAE weights -> a save_pretrained folder, exactly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from official_reference import OfficialReference

from cavmae_lite import CAVMAE, CAVMAEClassifier, CAVMAEConfig, to_official_state_dict
from cavmae_lite.cli import main

DATA = Path(__file__).parent / "data"
# width 64 and decoder width 24: the base head counts (12, 16) do not divide them, so convert must be told
SMALL = CAVMAEConfig(img_size=32, audio_length=64, num_mel_bins=128, embed_dim=64, num_heads=2,
                     modality_specific_depth=2, joint_depth=1, decoder_embed_dim=24, decoder_depth=2,
                     decoder_num_heads=4, mlp_ratio=2.0)
HEADS = ["--num-heads", "2", "--decoder-num-heads", "4"]


def tsv_patterns(name: str) -> set[str]:
    """The official key names with block indices made generic: blocks_a.0.attn.qkv.weight -> blocks_a.#.attn..."""
    keys = [line.split("\t")[0] for line in (DATA / name).read_text().splitlines() if line.strip()]
    return {re.sub(r"\.\d+\.", ".#.", k) for k in keys}


def random_official(model: torch.nn.Module, tsv: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor of an official-layout state dict of ``model``'s sizes, filled at random (scale 0.05, as trained
    weights); its key names are checked against the official file's list (tests/data)."""
    g = torch.Generator().manual_seed(seed)
    sd = {k: 0.05 * torch.randn(v.shape, generator=g) for k, v in to_official_state_dict(model).items()}
    assert {re.sub(r"\.\d+\.", ".#.", k) for k in sd} == tsv_patterns(tsv)
    return sd


@pytest.fixture
def pretraining_pth(tmp_path):
    sd = random_official(CAVMAE(SMALL), "official_state_dict_keys.tsv")
    path = tmp_path / "cav-mae-small.pth"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)  # as the released files: DataParallel's prefix
    return sd, path


@pytest.fixture
def finetuned_pth(tmp_path):
    sd = random_official(CAVMAEClassifier(SMALL, num_classes=7), "official_ft_state_dict_keys.tsv", seed=1)
    path = tmp_path / "cav-mae-ft.pth"
    torch.save({f"module.{k}": v for k, v in sd.items()}, path)
    return sd, path


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_pretraining_checkpoint_round_trip_is_exact(pretraining_pth, tmp_path, capsys):
    sd, path = pretraining_pth
    out = tmp_path / "converted"
    assert main(["convert", str(path), str(out), *HEADS]) == 0
    assert "CAVMAE" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["CAVMAE"] and config["num_heads"] == 2 and config["decoder_num_heads"] == 4
    assert config["norm_pix_loss"] is True
    model = CAVMAE.from_pretrained(out)
    assert_same(to_official_state_dict(model), sd)
    c = model.config
    assert (c.embed_dim, c.modality_specific_depth, c.joint_depth, c.decoder_embed_dim, c.decoder_depth) == \
        (64, 2, 1, 24, 2)
    assert (c.img_size, c.audio_length, c.num_mel_bins, c.mlp_ratio) == (32, 64, 128, 2.0)


def test_finetuned_checkpoint_becomes_a_classifier(finetuned_pth, tmp_path):
    sd, path = finetuned_pth
    out = tmp_path / "ft"
    assert main(["convert", str(path), str(out), "--num-heads", "2"]) == 0
    assert json.loads((out / "config.json").read_text())["architectures"] == ["CAVMAEClassifier"]
    clf = CAVMAEClassifier.from_pretrained(out)
    assert clf.num_classes == 7
    assert_same(to_official_state_dict(clf), sd)
    with pytest.raises(ValueError, match="CAVMAEClassifier.from_pretrained"):
        CAVMAE.from_pretrained(out)


@torch.no_grad()
def test_the_converted_model_computes_what_the_official_code_does(pretraining_pth, finetuned_pth, tmp_path):
    sd, path = pretraining_pth
    assert main(["convert", str(path), str(tmp_path / "pre"), *HEADS, "--no-norm-pix-loss"]) == 0
    model = CAVMAE.from_pretrained(tmp_path / "pre")
    assert model.config.norm_pix_loss is False
    ref = OfficialReference(sd, num_heads=2, decoder_num_heads=4, norm_pix_loss=False)
    g = torch.Generator().manual_seed(5)
    audio, video = torch.randn(2, 64, 128, generator=g), torch.randn(2, 3, 32, 32, generator=g)
    noise_a, noise_v = torch.rand(2, SMALL.num_audio_tokens, generator=g), torch.rand(2, 4, generator=g)
    ours, theirs = model(audio, video, noise_a=noise_a, noise_v=noise_v), ref.forward(audio, video, noise_a, noise_v)
    assert torch.equal(ours.mask_a, theirs["mask_a"])
    torch.testing.assert_close(ours.pred_a, theirs["pred_a"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.pred_v, theirs["pred_v"], atol=1e-5, rtol=1e-4)
    sd, path = finetuned_pth
    assert main(["convert", str(path), str(tmp_path / "ft"), "--num-heads", "2"]) == 0
    clf = CAVMAEClassifier.from_pretrained(tmp_path / "ft")
    torch.testing.assert_close(clf(audio, video, "multimodal"), OfficialReference(sd, num_heads=2).classify(
        audio, video, "multimodal"), atol=1e-5, rtol=1e-4)


def test_head_counts_the_weights_cannot_tell_are_asked_for(pretraining_pth, tmp_path, capsys):
    _, path = pretraining_pth
    assert main(["convert", str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "num_heads" in err and "--num-heads" in err and len(err.strip().splitlines()) == 1
    assert main(["convert", str(path), str(tmp_path / "out"), "--num-heads", "2"]) == 2
    assert "decoder_num_heads" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_nonorm_file_name_warns_without_the_flag(pretraining_pth, tmp_path):
    sd, _ = pretraining_pth
    path = tmp_path / "cav-mae-base-nonorm.pth"
    torch.save(sd, path)
    with pytest.warns(UserWarning, match="no-norm-pix-loss"):
        assert main(["convert", str(path), str(tmp_path / "out"), *HEADS]) == 0


def test_refuses_what_is_not_an_official_checkpoint(tmp_path, capsys):
    ours = CAVMAE(SMALL)
    run = tmp_path / "ours.pt"
    torch.save({"model": ours.state_dict(), "model_config": SMALL.to_dict()}, run)
    assert main(["convert", str(run), str(tmp_path / "out")]) == 2
    assert "already a cavmae-lite checkpoint" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    assert main(["convert", str(run), str(tmp_path / "file")]) == 2
    assert "OUT_DIR must be a folder" in capsys.readouterr().err
