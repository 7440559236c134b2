"""The shipped tutorial model: present, small, current with the recipe, loaded without training, and still good on
freshly generated test data."""

import json

import pytest
import torch

from cavmae_lite import CAVMAE, CAVMAEConfig, zoo
from cavmae_lite.checkpoints import load_pretrained

MAKE_ZOO = "the shipped tutorial model is out of date: run `make zoo` (cavmae-lite zoo build) and commit the result"


def test_shipped_files_exist_are_small_and_fp16():
    from safetensors import safe_open

    w, c = zoo.weights_path(), zoo.card_path()
    assert w.name == "tiny.safetensors", "the shipped weights are a safetensors file (no pickle)"
    assert w.is_file() and c.is_file(), "cavmae_lite/weights/tiny.safetensors and tiny.json must be committed: run `make zoo`"
    assert w.stat().st_size <= 20e6
    with safe_open(w, framework="pt") as f:
        floats = [f.get_tensor(k) for k in f.keys()]
        meta = f.metadata()
    assert floats and all(v.dtype == torch.float16 for v in floats if v.is_floating_point())
    assert json.loads(meta["model_config"])["embed_dim"] == 192 and meta["recipe_key"] == zoo.read_card()["recipe_key"]
    assert not (w.parent / "tiny.pt").exists()


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


def test_card_matches_todays_recipe_and_generator():
    card = zoo.read_card()
    assert zoo.card_is_current(card), f"{MAKE_ZOO} (card {card.get('recipe_key')}, code {zoo.recipe_key()})"
    for key in ("recipe", "torch", "machine", "wall_minutes", "steps", "metrics"):
        assert key in card
    assert card["recipe"]["data"]["generator"] == zoo.recipe()["data"]["generator"]


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


def test_shipped_model_on_a_freshly_generated_test_split(tmp_path):
    """Regenerates the default test split (600 clips) and checks the shipped weights still retrieve: a generator
    change that breaks them turns this red."""
    from cavmae_lite.data import make_synthetic
    from cavmae_lite.data.synthetic import FULL_SIZES

    data = make_synthetic(tmp_path / "test", 0, *FULL_SIZES, mp4=0, workers=2, progress=False, only="test")
    model = zoo.pretrained_tiny()
    m = zoo.evaluate_model(model, data, split="test")
    assert m["n"] == 600
    r1 = (m["retrieval"]["a2v"]["r1"], m["retrieval"]["v2a"]["r1"])
    assert min(r1) >= 0.35, f"shipped model R@1 on fresh test data {r1} < 0.35: {MAKE_ZOO}"
    rec = m["reconstruction"]
    assert rec["rec_a"] < 0.8 * rec["rec_a_zero"] and rec["rec_v"] < 0.8 * rec["rec_v_zero"]


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
    assert card["recipe_key"] == "2887fc9cc81c"


def test_shipped_weights_are_a_checkpoint_the_cli_takes(capsys):
    from cavmae_lite.cli import main

    assert main(["info", "--checkpoint", str(zoo.weights_path())]) == 0
    out = capsys.readouterr().out
    assert "ours layout, CAVMAE, 247 tensors" in out and "float16" in out and "width 192" in out
