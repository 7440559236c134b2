"""`make setup`'s environment creation (scripts/make_venv.sh) with fake interpreters, and the declared dependencies.

The fakes are shell scripts standing in for BOOTSTRAP_PYTHON: they answer make_venv.sh's two probes (the version,
and ``import venv, ensurepip``) and act out ``-m venv DIR``. Nothing here touches the real environment.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("sh") is None,
                                reason="needs make and sh")

# make passes its command-line variables to sub-makes in MAKEFLAGS: under `make test PYTHON=python` a nested
# `make setup` would install into that interpreter. The nested make sees only what each test gives it.
_MAKE_ENV_DROP = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PYTHON", "VENV", "BOOTSTRAP_PYTHON")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _MAKE_ENV_DROP}


def make_setup(venv: Path, bootstrap: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "setup", f"VENV={venv}", f"BOOTSTRAP_PYTHON={bootstrap}"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=120)


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_python(tmp_path: Path, version: str = "3.11", has_venv: bool = True, on_venv: str = "exit 0") -> Path:
    """A fake python3: reports ``version``, whether venv + ensurepip import, and runs ``on_venv`` (sh, the target
    directory in $3) for ``-m venv DIR``; anything else exits 3."""
    return _script(tmp_path / "bin" / "python3", f"""\
if [ "$1" = "-c" ]; then
    case "$2" in
        *version_info*) echo {version}; exit 0 ;;
        *ensurepip*) exit {0 if has_venv else 1} ;;
    esac
fi
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    {on_venv}
fi
exit 3
""")


# What `-m venv DIR` leaves: a venv that works as far as make_venv.sh and ensure_env.py can tell (bin/python
# answers every call with 0), one without pip (bin/python fails), one abandoned midway (exit 1).
_GOOD_VENV = 'mkdir -p "$3/bin" && echo "home = /x" > "$3/pyvenv.cfg" && printf "#!/bin/sh\\nexit 0\\n" > ' \
             '"$3/bin/python" && chmod +x "$3/bin/python"; exit 0'
_NO_PIP_VENV = 'mkdir -p "$3/bin" && echo "home = /x" > "$3/pyvenv.cfg" && printf "#!/bin/sh\\nexit 1\\n" > ' \
               '"$3/bin/python" && chmod +x "$3/bin/python"; exit 0'
_MIDWAY = 'mkdir -p "$3/bin" && echo "home = /x" > "$3/pyvenv.cfg"; echo "Error: something broke" >&2; exit 1'


def test_an_old_python_is_refused_with_the_fix_and_no_venv(tmp_path):
    venv = tmp_path / "venv"
    r = make_setup(venv, fake_python(tmp_path, version="3.8", on_venv='mkdir -p "$3"; exit 0'))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "needs Python >= 3.10" in out and "Python 3.8" in out
    assert "BOOTSTRAP_PYTHON=" in out and "conda" in out
    assert not venv.exists()


def test_a_python_without_venv_or_ensurepip_gets_the_apt_package_named(tmp_path):
    venv = tmp_path / "venv"
    r = make_setup(venv, fake_python(tmp_path, version="3.11", has_venv=False, on_venv='mkdir -p "$3"; exit 0'))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "apt install python3.11-venv" in out and "python3-venv" in out
    assert not venv.exists()


def test_no_python_at_all(tmp_path):
    venv = tmp_path / "venv"
    r = make_setup(venv, tmp_path / "no-such-python3")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "cannot run" in out and "Python >= 3.10" in out
    assert not venv.exists()


@pytest.mark.parametrize("on_venv, message", [(_MIDWAY, "removed the unfinished"), (_NO_PIP_VENV, "no working pip")])
def test_a_venv_that_fails_midway_is_removed(tmp_path, on_venv, message):
    venv = tmp_path / "venv"
    r = make_setup(venv, fake_python(tmp_path, on_venv=on_venv))
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert message in out and "python3.11-venv" in out
    assert not venv.exists()
    assert not list(tmp_path.glob("venv*"))


def test_a_half_made_venv_left_by_an_earlier_failure_is_made_again_then_setup_is_a_no_op(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)  # what an old `python3 -m venv` without ensurepip left: no bin/python
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    r = make_setup(venv, fake_python(tmp_path, on_venv=_GOOD_VENV))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "unfinished virtual environment" in out and "creating" in out
    assert (venv / "bin" / "python").exists()
    # Now it works: the next `make setup` does not even look at the bootstrap interpreter.
    boom = _script(tmp_path / "boom" / "python3", f'touch "{tmp_path}/boom-called"; exit 97\n')
    r = make_setup(venv, boom)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "creating" not in r.stdout + r.stderr
    assert not (tmp_path / "boom-called").exists()


def test_a_directory_that_is_not_a_venv_is_left_alone(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "notes.txt").write_text("mine")
    r = make_setup(venv, fake_python(tmp_path, on_venv=_GOOD_VENV))
    assert r.returncode != 0
    assert "is not a virtual environment" in r.stdout + r.stderr
    assert (venv / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="not running in a virtual environment")
def test_the_environment_running_the_tests_is_kept_as_it_is(tmp_path):
    """make_venv.sh on this (finished) venv: silent, success, and the bootstrap interpreter is never run."""
    boom = _script(tmp_path / "python3", f'touch "{tmp_path}/boom-called"; exit 97\n')
    r = subprocess.run(["sh", str(ROOT / "scripts" / "make_venv.sh"), str(boom), sys.prefix], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr
    assert not (tmp_path / "boom-called").exists()


# ----- the declared dependencies ---------------------------------------------------------------------------------

IMPORT_NAMES = {"pillow": "PIL"}  # distribution -> import name, where they differ


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()


def test_ensure_env_checks_every_declared_dependency():
    project = _pyproject()["project"]
    declared = [_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    wanted = {IMPORT_NAMES.get(n, n.replace("-", "_")) for n in declared}
    spec = importlib.util.spec_from_file_location("ensure_env", ROOT / "scripts" / "ensure_env.py")
    ensure_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ensure_env)
    assert set(ensure_env.REQUIRED) == wanted


def test_the_version_is_pyprojects():
    import cavmae_lite

    assert cavmae_lite.__version__ == _pyproject()["project"]["version"]
