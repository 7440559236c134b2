"""The shipped tutorial model: present, small, current with the recipe, loaded without training, and still good on
freshly generated test data."""

import json

import pytest
import torch

from cavmae_lite import CAVMAE, CAVMAEConfig, CAVMAESync, zoo
from cavmae_lite.checkpoints import load_pretrained


def trained_config(card):
    """The model config a card's recipe trains: its model sizes with the run's loss settings."""
    from cavmae_lite.config import TrainConfig
    from cavmae_lite.train.objective import run_config

    from cavmae_lite.config import config_from_dict

    return run_config(config_from_dict(card["recipe"]["model"]), TrainConfig.from_dict(card["recipe"]["train"]))


MAKE_ZOO = "the shipped tutorial model is out of date: run `make zoo` (cavmae-lite zoo build) and commit the result"


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_shipped_files_exist_are_small_and_fp16(name):
    from safetensors import safe_open

    w, c = zoo.weights_path(name=name), zoo.card_path(name=name)
    assert w.name == f"{name}.safetensors", "the shipped weights are a safetensors file (no pickle)"
    assert w.is_file() and c.is_file(), f"cavmae_lite/weights/{name}.safetensors and .json must be committed: {MAKE_ZOO}"
    assert w.stat().st_size <= 20e6
    with safe_open(w, framework="pt") as f:
        floats = [f.get_tensor(k) for k in f.keys()]
        meta = f.metadata()
    assert floats and all(v.dtype == torch.float16 for v in floats if v.is_floating_point())
    card = zoo.read_card(name=name)
    from cavmae_lite.config import config_from_dict

    assert config_from_dict(json.loads(meta["model_config"])) == trained_config(card)
    assert meta["recipe_key"] == card["recipe_key"]
    assert not (w.parent / f"{name}.pt").exists()


def test_mask_ratio_picks_the_model_trained_at_it():
    recon, card = zoo.pretrained_tiny_info(mask_ratio=0.75)
    assert card["name"] == "tiny-mask75" and card["path"].name == "tiny-mask75.safetensors"
    train = card["recipe"]["train"]
    assert (train["mask_ratio_a"], train["mask_ratio_v"]) == (0.75, 0.75)  # what the card says it was trained at
    assert recon.config.norm_pix_loss is False and recon.config.patch_size == 8
    assert recon.config == trained_config(card)  # loss weights, direction, temperature: what it was trained with
    assert zoo.pretrained_tiny_info()[1]["name"] == "tiny" == zoo.pretrained_tiny_info(mask_ratio=0.3)[1]["name"]
    with pytest.raises(ValueError, match="no shipped tutorial model was trained at mask ratio 0.5.*tiny-mask75"):
        zoo.pretrained_tiny(mask_ratio=0.5)
    with pytest.raises(ValueError, match="unknown tutorial model 'huge'"):
        zoo.recipe("huge")


def test_loading_reads_no_pickle_and_keeps_the_fp16_values(monkeypatch):
    from safetensors.torch import load_file

    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("the tutorial model must load without torch.load"))
    model = zoo.pretrained_tiny()
    stored = load_file(zoo.weights_path())
    state = model.state_dict()
    assert stored.keys() == state.keys()
    assert all(torch.equal(state[k], v.float()) for k, v in stored.items())


def test_write_weights_round_trip_atomically(tmp_path):
    model = CAVMAE(CAVMAEConfig.tiny(contrast_weight=1.0)).eval()
    path = zoo.write_weights(model, "abc", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.safetensors"]  # no temporary file left
    back = load_pretrained(path)
    assert back.config == model.config
    assert all(torch.equal(b, a.half().float()) for a, b in zip(model.state_dict().values(), back.state_dict().values()))


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_card_matches_todays_recipe_and_generator(name):
    card = zoo.read_card(name=name)
    assert card["name"] == name
    assert zoo.card_is_current(card), f"{MAKE_ZOO} (card {card.get('recipe_key')}, code {zoo.recipe_key(name)})"
    for key in ("recipe", "torch", "machine", "wall_minutes", "steps", "metrics"):
        assert key in card
    assert card["recipe"] == zoo.recipe(name)


def test_loading_trains_nothing(monkeypatch):
    import cavmae_lite.train as train

    monkeypatch.setattr(train, "pretrain", lambda *a, **k: pytest.fail("pretrained_tiny must not train"))
    model, card = zoo.pretrained_tiny_info()
    assert not model.training and all(p.dtype == torch.float32 for p in model.parameters())
    assert card["path"] == zoo.weights_path()


def test_stale_card_warns(tmp_path):
    for p in (zoo.weights_path(), zoo.card_path()):
        (tmp_path / p.name).write_bytes(p.read_bytes())
    card = json.loads((tmp_path / "tiny.json").read_text())
    card["recipe_key"] = "0" * 12
    (tmp_path / "tiny.json").write_text(json.dumps(card))
    with pytest.warns(UserWarning, match="make zoo"):
        zoo.pretrained_tiny(directory=tmp_path)
    with pytest.raises(FileNotFoundError, match="make zoo"):
        zoo.pretrained_tiny(directory=tmp_path / "nowhere")


def test_recipe_key_follows_recipe_not_machine(monkeypatch):
    key = zoo.recipe_key()
    monkeypatch.setitem(zoo.BUILD_TRAIN, "log_every", 7)  # logging is not part of what is learned
    assert zoo.recipe_key() == key
    monkeypatch.setitem(zoo.BUILD_TRAIN, "keep_epochs", True)  # which checkpoints are kept: not learned either
    assert zoo.recipe_key() == key
    monkeypatch.setitem(zoo.BUILD_TRAIN, "contrast_groups", 2)  # a field added later, away from its neutral value
    assert zoo.recipe_key() != key
    monkeypatch.setitem(zoo.BUILD_TRAIN, "contrast_groups", 1)
    monkeypatch.setitem(zoo.BUILD_TRAIN, "max_steps", zoo.BUILD_TRAIN["max_steps"] + 1)
    assert zoo.recipe_key() != key


@pytest.fixture(scope="module")
def fresh_test_split(tmp_path_factory):
    """The default test split (600 clips), generated afresh: a generator change that breaks the shipped weights
    turns the tests below red."""
    from cavmae_lite.data import make_synthetic
    from cavmae_lite.data.synthetic import FULL_SIZES

    return make_synthetic(tmp_path_factory.mktemp("fresh") / "test", 0, *FULL_SIZES, mp4=0, workers=2,
                          progress=False, only="test")


def _r1(m):
    return m["retrieval"]["a2v"]["r1"], m["retrieval"]["v2a"]["r1"]


def _ratios(m):
    rec = m["reconstruction"]  # masked-patch MSE at 75 %, input units, over the mean-visible-patch baseline
    return rec["mse_a"] / rec["mse_a_mean"], rec["mse_v"] / rec["mse_v_mean"]


@pytest.mark.parametrize("name", [zoo.NAME, zoo.MASK75])
def test_shipped_models_on_a_freshly_generated_test_split(fresh_test_split, name):
    """Each model's R@1 and 75 % reconstruction on regenerated test clips hold its card's numbers, with a margin."""
    model, card = zoo.pretrained_tiny_info(mask_ratio=0.75 if name == zoo.MASK75 else None)
    m = zoo.evaluate_model(model, fresh_test_split, split="test")
    assert m["n"] == 600
    r1, card_r1 = _r1(m), _r1(card["metrics"])
    assert all(got >= want - 0.03 for got, want in zip(r1, card_r1)), f"{name}: R@1 {r1} vs the card's {card_r1}: {MAKE_ZOO}"
    ratios, card_ratios = _ratios(m), _ratios(card["metrics"])
    assert all(got <= want + 0.02 for got, want in zip(ratios, card_ratios)), (
        f"{name}: 75 % MSE / baseline {ratios} vs the card's {card_ratios}: {MAKE_ZOO}")
    if name == zoo.NAME:
        assert min(r1) >= 0.70, f"retrieval model R@1 on fresh test data {r1} < 0.70 (the issue asks 0.55)"
    else:  # the reconstruction model: well below copying the mean visible patch, in input units
        assert ratios[0] <= 0.6 and ratios[1] <= 0.7, f"reconstruction model at 75 %: MSE / baseline {ratios}"


def test_build_writes_fp16_weights_and_a_card(tmp_path):
    from cavmae_lite.data import make_synthetic

    data = make_synthetic(tmp_path / "data", 0, 128, 0, 8, mp4=0, workers=2, progress=False)  # one batch of 128
    card = zoo.build(tmp_path / "out", data, device="cpu", threads=1, max_steps=2, progress=False)
    assert card["steps"] == 2 and card["recipe_key"] is None  # a budget override is not the recipe
    assert card["metrics"]["n"] == 8 and len(card["history"]) >= 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["tiny.json", "tiny.safetensors"]
    with pytest.warns(UserWarning, match="make zoo"):  # not today's recipe: loads, but says so
        model, loaded = zoo.pretrained_tiny_info(directory=tmp_path / "out")
    assert loaded["steps"] == 2 and model.config == zoo.pretrained_tiny().config  # tiny sizes + the recipe's losses


def test_zoo_info_cli_prints_the_card(capsys):
    from cavmae_lite.cli import COMMANDS, main

    assert COMMANDS["zoo"][0] == "cavmae_lite.cli.zoo"  # argparse lives in the CLI package
    assert main(["zoo", "info"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["current"] is True and "history" not in card and card["metrics"]["n"] == 600
    assert card["recipe_key"] == zoo.recipe_key("tiny") and card["name"] == "tiny" and card["recipe"]["data"]["sizes"][0] == 15000
    assert main(["zoo", "info", "--name", "tiny-mask75"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["current"] is True and card["name"] == "tiny-mask75" and card["recipe"]["train"]["mask_ratio_v"] == 0.75


def test_shipped_weights_are_a_checkpoint_the_cli_takes(capsys):
    from cavmae_lite.cli import main

    assert main(["info", "--checkpoint", str(zoo.weights_path())]) == 0
    out = capsys.readouterr().out
    assert "ours layout, CAVMAE, 247 tensors" in out and "float16" in out and "width 192" in out


def test_training_data_extends_the_train_split_and_keeps_val_and_test(tmp_path, monkeypatch):
    """A recipe with more train clips than the default set gets its own folder whose val / test clips are the
    default set's (the extra train clips continue after the test block), and only that folder counts as the recipe's."""
    import cavmae_lite.data.synthetic as S
    from cavmae_lite.data import make_synthetic

    monkeypatch.setattr(S, "FULL_SIZES", (4, 1, 2))
    monkeypatch.setattr(S, "BLOCK_SIZES", (4, 1, 2))
    monkeypatch.setitem(zoo.DATA_SIZES, zoo.NAME, (6, 1, 2))
    monkeypatch.setattr(S, "default_data_dir", lambda: tmp_path / "synthetic")
    got = zoo.training_data(zoo.NAME, progress=False)
    assert got == tmp_path / "synthetic-train6" and zoo._data_matches(zoo.NAME, got)
    default = make_synthetic(tmp_path / "default", 0, 4, 1, 2, mp4=0, workers=1, progress=False)
    assert not zoo._data_matches(zoo.NAME, default)
    for clip in ("audio/val00000.wav", "audio/test00001.wav", "frame_3/test00000.jpg", "audio/train00003.wav"):
        assert (got / clip).read_bytes() == (default / clip).read_bytes()
    assert (got / "audio/train00005.wav").read_bytes() not in {p.read_bytes() for p in (default / "audio").iterdir()}


@pytest.fixture(scope="module")
def fresh_events_test_split(tmp_path_factory):
    """The events variant's test split (600 clips, 16 frames), generated afresh."""
    from cavmae_lite.data import make_synthetic
    from cavmae_lite.data.synthetic import FULL_SIZES

    return make_synthetic(tmp_path_factory.mktemp("fresh") / "events", 0, *FULL_SIZES, num_frames=zoo.SYNC_FRAMES,
                          mp4=0, workers=2, progress=False, only="test", events=True)


def _sync_numbers(report):
    clip = report["clip"][zoo.SYNC_CLIP_SCORE]
    return {"r1_a2v": clip["a2v"]["r1"], "r1_v2a": clip["v2a"]["r1"],
            "within_one": report["localisation"]["within_one"], "event": report["localisation"]["event"]["accuracy"]}


def test_shipped_sync_model_on_a_freshly_generated_test_split(fresh_events_test_split):
    """The Sync model holds its card's clip-level R@1 and localisation on regenerated events clips, finds the moment
    far more often than the shipped CAV-MAE, and retrieves clips at least as well."""
    model, card = zoo.pretrained_tiny_sync_info()
    assert isinstance(model, CAVMAESync) and card["name"] == zoo.SYNC
    m = zoo.evaluate_sync_model(model, fresh_events_test_split)
    assert m["n"] == 600
    got, want = _sync_numbers(m["sync"]), _sync_numbers(card["metrics"]["sync"])
    assert all(got[k] >= want[k] - 0.03 for k in got), f"Sync model on fresh data {got} vs its card's {want}: {MAKE_ZOO}"
    base = _sync_numbers(m["cavmae_tiny"])
    assert got["event"] >= base["event"] + 0.3 and got["within_one"] >= base["within_one"] + 0.15, (got, base)
    assert min(got["r1_a2v"], got["r1_v2a"]) >= min(base["r1_a2v"], base["r1_v2a"]) - 0.02, (got, base)
