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
REQUIRED = ["torch", "torchaudio", "torchvision", "av", "soundfile", "einops", "matplotlib", "ipywidgets",
            "jupyterlab", "tqdm", "pytest", "nbmake"]


def wanted_stamp() -> str:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    return f"{ROOT}\n{digest}\n"


def installed_here() -> bool:
    spec = importlib.util.find_spec("cavmae_lite")
    return spec is not None and spec.origin is not None and Path(spec.origin).resolve().parents[1] == ROOT


def main() -> int:
    missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
    if not missing and STAMP.exists() and STAMP.read_text() == wanted_stamp() and installed_here():
        return 0
    print(f"[setup] installing cavmae-lite into {sys.prefix}" + (f" (missing: {', '.join(missing)})" if missing else ""),
          flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", f"{ROOT}[dev]"]
    rc = subprocess.call(cmd)
    if rc == 0:
        STAMP.write_text(wanted_stamp())
    return rc


if __name__ == "__main__":
    sys.exit(main())
