"""Files that are not checkpoints, as a new user would try them: each gets a message that says what is wrong,
from the library (load_checkpoint, load_pretrained, from_official) and from the CLI (exit status 2, one line)."""

from __future__ import annotations

import io
import os
import pickle
import re
import shlex

import numpy as np
import pytest
import torch

from cavmae_lite import CAVMAE, load_checkpoint
from cavmae_lite.checkpoints import CheckpointError, load_pretrained, read_state_dict
from cavmae_lite.cli import main

NOT_TORCH = "is not a torch checkpoint"
REFUSING = "refusing to load .* Python objects beyond tensors"


class ShellPayload:
    """A pickle whose loading would run a shell command (it creates a marker file)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _npz_bytes() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, w=np.zeros(3))
    return buf.getvalue()


# name -> (file name, bytes maker (given the marker path), message pattern)
BAD_FILES = {
    "random bytes": ("model.pt", lambda m: b"\x13\x37" + bytes(torch.randint(0, 256, (998,)).tolist()),
                     f"{NOT_TORCH}: it starts with bytes"),
    "empty file": ("model.pth", lambda m: b"", "is empty \\(0 bytes\\)"),
    "truncated zip checkpoint": ("model.pt", lambda m: _torch_bytes({"w": torch.randn(128, 128)})[:30_000],
                                 "is corrupt or truncated"),
    "pickle with a malicious global": ("model.pkl", lambda m: pickle.dumps({"w": ShellPayload(m)}, protocol=2),
                                       REFUSING + ".*posix.system"),
    "torch.save with a malicious global": ("model.pt", lambda m: _torch_bytes({"w": ShellPayload(m)}), REFUSING),
    "JSON file": ("config.pth", lambda m: b'{"embed_dim": 768, "num_heads": 12}\n', f"{NOT_TORCH}: it is JSON"),
    "plain pickle": ("model.pkl", lambda m: pickle.dumps({"epoch": 3}, protocol=4),
                     "is a pickle that is not a torch checkpoint"),
    "NumPy archive": ("weights.pt", lambda m: _npz_bytes(), f"{NOT_TORCH}: a zip archive without data.pkl"),
}


@pytest.fixture(params=list(BAD_FILES))
def bad_file(request, tmp_path):
    name, make, message = BAD_FILES[request.param]
    marker = tmp_path / "marker"
    path = tmp_path / name
    path.write_bytes(make(marker))
    yield path, message
    assert not marker.exists(), "loading executed code from the file"


def test_load_checkpoint_says_what_is_wrong(bad_file):
    path, message = bad_file
    with pytest.raises(CheckpointError, match=message) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)
    assert "weights_only` set to `False`" not in str(e.value)  # never torch's advice to load unsafely


def test_every_loader_says_the_same(bad_file):
    path, message = bad_file
    for load in (read_state_dict, load_pretrained, CAVMAE.from_official):
        with pytest.raises(CheckpointError, match=message):
            load(path)


@pytest.mark.parametrize("command", ["info", "evaluate", "reconstruct", "convert"])
def test_the_cli_prints_one_line_and_exits_2(bad_file, command, tmp_path, capsys):
    path, message = bad_file
    argv = {"info": ["info", "--checkpoint", str(path)],
            "evaluate": ["evaluate", "retrieval", "--checkpoint", str(path), "--data", str(tmp_path / "data")],
            "reconstruct": ["reconstruct", str(tmp_path / "clip.mp4"), "--checkpoint", str(path)],
            "convert": ["convert", str(path), str(tmp_path / "out")]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cavmae-lite {command}: error: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_missing_file_and_a_folder_without_weights(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a folder"):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="checkpoint.pt .* model.safetensors"):
        read_state_dict(tmp_path)
    assert main(["info", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    assert "not found" in capsys.readouterr().err


def test_a_safetensors_file_given_to_load_checkpoint_is_named(tmp_path):
    from cavmae_lite.checkpoints import save_safetensors

    path = save_safetensors({"w": torch.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="safetensors file: read it with read_state_dict"):
        load_checkpoint(path)
    assert torch.equal(read_state_dict(path).tensors["w"], torch.zeros(2))
