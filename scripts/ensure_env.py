"""Install cavmae-lite (editable, with the dev extra) into the running interpreter when needed.

Quick no-op when the environment already has this checkout installed and pyproject.toml has not changed;
otherwise runs `pip install -e .[dev]`. Used by `make setup` (and so by `make lab` / `make test`).
"""

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAMP = Path(sys.prefix) / ".cavmae-lite-setup"
# The import names of pyproject.toml's dependencies and dev extra (tests/test_setup.py keeps the two in step).
REQUIRED = ["torch", "torchaudio", "torchvision", "av", "soundfile", "numpy", "PIL", "safetensors", "einops",
            "matplotlib", "ipywidgets", "jupyterlab", "tqdm",
            "pytest", "nbmake", "nbclient", "ruff", "tensorboard"]


def wanted_stamp() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{ROOT}\n{digest}\n"


def installed_here() -> bool:
    spec = importlib.util.find_spec("cavmae_lite")
    return spec is not None and spec.origin is not None and Path(spec.origin).resolve().parents[1] == ROOT


def main() -> int:
    if sys.version_info < (3, 10):  # noqa: UP036 — this check is for the interpreters pyproject.toml excludes
        print(f"[setup] cavmae-lite needs Python >= 3.10; {sys.executable} is {sys.version.split()[0]}.\n"
              "[setup] Fix: a virtual environment from a newer Python (rm -r .venv, then\n"
              "[setup]   make setup BOOTSTRAP_PYTHON=/path/to/python3.11), or PYTHON= naming a Python >= 3.10.",
              file=sys.stderr)
        return 1
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if not missing and STAMP.exists() and STAMP.read_text() == wanted_stamp() and installed_here():
        return 0
    if importlib.util.find_spec("pip") is None:
        print(f"[setup] {sys.executable} has no pip: install it (python -m ensurepip, or apt install python3-pip),\n"
              "[setup]   or use a virtual environment (make setup without PYTHON=).", file=sys.stderr)
        return 1
    print(f"[setup] installing cavmae-lite into {sys.prefix}" + (f" (missing: {', '.join(missing)})" if missing else ""),
          flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", f"{ROOT}[dev]"]
    rc = subprocess.call(cmd)
    if rc == 0:
        STAMP.write_text(wanted_stamp())
    return rc


if __name__ == "__main__":
    sys.exit(main())
