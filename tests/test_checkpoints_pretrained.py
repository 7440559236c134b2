"""save_pretrained / from_pretrained (config.json + model.safetensors) and load_pretrained, the one loader of a
pretraining model from our runs, our checkpoints, save_pretrained folders and official files."""

from __future__ import annotations

import json
import os

import pytest
import torch

from cavmae_lite import CAVMAE, CAVMAEClassifier, CAVMAEConfig, save_checkpoint, to_official_state_dict
from cavmae_lite.checkpoints import (
    CheckpointError,
    detect_layout,
    detect_model,
    load_pretrained,
    read_state_dict,
    save_safetensors,
)

MODES = ["multimodal", "audio_only", "video_only", "missing_video", "missing_audio"]


def small_config(**overrides) -> CAVMAEConfig:
    """128 mel bins (what the official layout implies), 2 heads: sizes from_official must be told."""
    fields = {"img_size": 32, "audio_length": 32, "num_mel_bins": 128, "embed_dim": 32, "num_heads": 2,
              "modality_specific_depth": 1, "joint_depth": 1, "decoder_embed_dim": 16, "decoder_depth": 1,
              "decoder_num_heads": 2, "mlp_ratio": 2.0, "contrast_weight": 0.1}
    fields.update(overrides)
    return CAVMAEConfig(**fields)


@torch.no_grad()
def perturbed(model):
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def batch(config: CAVMAEConfig, n: int = 2):
    g = torch.Generator().manual_seed(3)
    return (torch.randn(n, config.audio_length, config.num_mel_bins, generator=g),
            torch.randn(n, 3, config.img_size, config.img_size, generator=g),
            torch.rand(n, config.num_audio_tokens, generator=g), torch.rand(n, config.num_video_tokens, generator=g))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def pretrained_dir(tmp_path):
    model = perturbed(CAVMAE(small_config(norm_pix_loss=False)))
    return model, model.save_pretrained(tmp_path / "cavmae")


@pytest.fixture
def classifier_dir(tmp_path):
    model = perturbed(CAVMAEClassifier(small_config(), num_classes=5))
    return model, model.save_pretrained(tmp_path / "clf")


# ----------------------------------------------------------------------------------------------------
# save_pretrained / from_pretrained
# ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def test_pretraining_model_round_trip_gives_identical_outputs(pretrained_dir):
    model, folder = pretrained_dir
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["CAVMAE"] and config["model_type"] == "cavmae"
    assert config["embed_dim"] == 32 and config["norm_pix_loss"] is False and "num_classes" not in config
    loaded = CAVMAE.from_pretrained(folder)
    assert type(loaded) is CAVMAE and not loaded.training and loaded.config == model.config
    assert same_weights(loaded, model)
    audio, video, noise_a, noise_v = batch(model.config)
    a = model(audio, video, noise_a=noise_a, noise_v=noise_v)
    b = loaded(audio, video, noise_a=noise_a, noise_v=noise_v)
    for name in ("loss", "loss_rec_a", "loss_rec_v", "loss_c", "mask_a", "mask_v", "pred_a", "pred_v", "audio_emb"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


@torch.no_grad()
def test_classifier_round_trip_gives_identical_outputs(classifier_dir):
    model, folder = classifier_dir
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["CAVMAEClassifier"] and config["num_classes"] == 5
    loaded = CAVMAEClassifier.from_pretrained(str(folder))
    assert type(loaded) is CAVMAEClassifier and loaded.num_classes == 5 and same_weights(loaded, model)
    audio, video, _, _ = batch(model.config)
    for mode in MODES:
        assert torch.equal(model(audio, video, mode), loaded(audio, video, mode)), mode


def test_save_pretrained_overwrites_atomically_with_the_usual_file_mode(pretrained_dir):
    model, folder = pretrained_dir
    perturbed(model).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]  # no temp files
    assert same_weights(CAVMAE.from_pretrained(folder), model)
    umask = os.umask(0o022)
    os.umask(umask)
    for p in folder.iterdir():
        assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p  # not mkstemp's 0600
    with pytest.raises(NotADirectoryError):
        model.save_pretrained(folder / "config.json")
    with pytest.raises(TypeError, match="CAVMAE or CAVMAEClassifier"):
        from cavmae_lite.checkpoints import save_pretrained

        save_pretrained(torch.nn.Linear(2, 2), folder)


def test_from_pretrained_refuses_the_wrong_class(pretrained_dir, classifier_dir):
    with pytest.raises(CheckpointError, match="holds a CAVMAEClassifier, not a CAVMAE: load it with "
                                              "CAVMAEClassifier.from_pretrained"):
        CAVMAE.from_pretrained(classifier_dir[1])
    with pytest.raises(CheckpointError, match="holds a CAVMAE, not a CAVMAEClassifier"):
        CAVMAEClassifier.from_pretrained(pretrained_dir[1])


def test_from_pretrained_missing_files_say_which(pretrained_dir, tmp_path):
    _, folder = pretrained_dir
    with pytest.raises(FileNotFoundError, match="does not exist"):
        CAVMAE.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="is a file"):
        CAVMAE.from_pretrained(folder / "config.json")
    (folder / "model.safetensors").rename(tmp_path / "weights.bak")
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        CAVMAE.from_pretrained(folder)
    (tmp_path / "weights.bak").rename(folder / "model.safetensors")
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        CAVMAE.from_pretrained(folder)


@pytest.mark.parametrize("damage,message", [
    (lambda b: b[: len(b) // 2], "corrupt or truncated"),
    (lambda b: b"", "empty"),
    (lambda b: os.urandom(300), "corrupt or truncated"),
])
def test_from_pretrained_corrupt_weights(pretrained_dir, damage, message):
    _, folder = pretrained_dir
    w = folder / "model.safetensors"
    w.write_bytes(damage(w.read_bytes()))
    with pytest.raises(CheckpointError, match=message):
        CAVMAE.from_pretrained(folder)


def test_from_pretrained_bad_config_json(pretrained_dir, classifier_dir):
    _, folder = pretrained_dir
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        CAVMAE.from_pretrained(folder)
    _, folder = classifier_dir
    config = json.loads((folder / "config.json").read_text())
    del config["num_classes"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="num_classes"):
        CAVMAEClassifier.from_pretrained(folder)


def test_weights_that_do_not_fit_the_config_list_the_keys(pretrained_dir):
    _, folder = pretrained_dir
    config = json.loads((folder / "config.json").read_text())
    config["joint_depth"] = 2
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"missing \(\d+\).*encoder.joint_blocks.1"):
        CAVMAE.from_pretrained(folder)


# ----------------------------------------------------------------------------------------------------
# load_pretrained: our runs and checkpoints, save_pretrained folders, official files
# ----------------------------------------------------------------------------------------------------


def test_load_pretrained_reads_every_kind_of_weights(tmp_path, pretrained_dir):
    model, folder = pretrained_dir
    run = tmp_path / "run"
    save_checkpoint({"model": model.state_dict(), "model_config": model.config.to_dict(), "state": {"step": 3}},
                    run / "checkpoint.pt")
    official = tmp_path / "audio_model.25.pth"
    torch.save({f"module.{k}": v for k, v in to_official_state_dict(model).items()}, official)
    loaded = {
        "run dir": load_pretrained(run),
        "our .pt": load_pretrained(run / "checkpoint.pt"),
        "save_pretrained folder": load_pretrained(folder),
        "its weights file": load_pretrained(folder / "model.safetensors"),
        "official .pth": load_pretrained(official, num_heads=2, decoder_num_heads=2, norm_pix_loss=False,
                                         contrast_weight=0.1),  # what the weights cannot tell
    }
    for what, m in loaded.items():
        assert type(m) is CAVMAE and not m.training, what
        assert m.config == model.config, what
        assert same_weights(m, model), what


def test_load_pretrained_is_weights_only_on_official_files(tmp_path):
    marker = tmp_path / "marker"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("executed",))

    path = tmp_path / "cav-mae.pth"
    torch.save({"blocks_a.0.norm1_a.weight": torch.ones(2), "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_pretrained(path)
    assert not marker.exists()


def test_load_pretrained_says_what_it_cannot_load(tmp_path, classifier_dir, pretrained_dir):
    with pytest.raises(CheckpointError, match="fine-tuned classifier.*CAVMAEClassifier.from_pretrained"):
        load_pretrained(classifier_dir[1])
    ft = tmp_path / "ft.pth"
    torch.save(to_official_state_dict(classifier_dir[0]), ft)
    with pytest.raises(CheckpointError, match="CAVMAEClassifier.from_official"):
        load_pretrained(ft)
    bare = tmp_path / "bare.pt"
    torch.save(pretrained_dir[0].state_dict(), bare)
    with pytest.raises(CheckpointError, match="without its config"):
        load_pretrained(bare)
    assert load_pretrained(bare, config=pretrained_dir[0].config).config.norm_pix_loss is False
    with pytest.raises(CheckpointError, match="records norm_pix_loss=False"):
        load_pretrained(pretrained_dir[1], norm_pix_loss=True)


def test_read_state_dict_recognises_safetensors_by_content_and_passes_state_dicts_through(tmp_path):
    model = CAVMAE(small_config())
    path = save_safetensors(model.state_dict(), tmp_path / "weights.pt",
                            metadata={"model_config": json.dumps(model.config.to_dict())})
    read = read_state_dict(path)
    assert read.source == str(path) and read.extra["model_config"]["embed_dim"] == 32
    assert read_state_dict(read) is read
    assert (detect_layout(read.tensors), detect_model(read.tensors)) == ("ours", "CAVMAE")
    assert same_weights(load_pretrained(path), model)
    official = to_official_state_dict(CAVMAEClassifier(small_config(), 3))
    assert (detect_layout(official), detect_model(official)) == ("official", "CAVMAEClassifier")
    with pytest.raises(CheckpointError, match="not a CAV-MAE"):
        detect_layout({"encoder.layer.0.attention.self.query.weight": torch.zeros(1)})  # a BERT, say
