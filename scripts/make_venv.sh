#!/bin/sh
# Create the virtual environment that `make setup` installs cavmae-lite into, or say why it cannot and how to fix it.
#
#   sh scripts/make_venv.sh BOOTSTRAP_PYTHON VENV        (the Makefile's `venv` target; defaults: python3 .venv)
#
# A quick no-op when VENV is already a working environment. Never leaves a half-made VENV behind: when the creation
# fails (a Python older than 3.10, no venv / ensurepip module as on Debian / Ubuntu without python3-venv, a full
# disk, Ctrl-C) the unfinished directory is removed, and a broken one that an earlier failure left (no bin/python, or
# no pip) is removed and made again. POSIX sh, so that it can explain itself on a machine with no usable Python.
set -u
PY=${1:-python3}
VENV=${2:-.venv}

say() { printf '[setup] %s\n' "$@" >&2; }

conda_hint="or conda: conda create -n cavmae-lite python=3.11 pip && conda activate cavmae-lite && make lab PYTHON=python"

# ----- an existing environment ---------------------------------------------------------------------------------
# .cavmae-lite-setup: written by scripts/ensure_env.py after a successful install (so pip was there).
if [ -x "$VENV/bin/python" ] && [ -f "$VENV/.cavmae-lite-setup" ]; then exit 0; fi
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then exit 0; fi
if [ -e "$VENV" ] || [ -L "$VENV" ]; then
    if [ -f "$VENV/pyvenv.cfg" ] || { [ -d "$VENV" ] && [ -z "$(ls -A "$VENV" 2>/dev/null)" ]; }; then
        say "$VENV is an unfinished virtual environment (no working bin/python, or no pip): removing it"
        rm -rf "$VENV"
    else
        say "$VENV exists and is not a virtual environment: move it away, or choose another place (make setup VENV=...)."
        exit 1
    fi
fi

# ----- the interpreter that creates it -------------------------------------------------------------------------
if ! ver=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); then
    say "cannot run '$PY' to create $VENV: cavmae-lite needs Python >= 3.10 with its venv module." \
        "Fix: install one (Debian/Ubuntu: sudo apt install python3 python3-venv; macOS: brew install python@3.12)," \
        "  or name one: make setup BOOTSTRAP_PYTHON=/path/to/python3.11," \
        "  $conda_hint"
    exit 1
fi
where=$(command -v "$PY" 2>/dev/null || echo "$PY")
[ "$where" = "$PY" ] && shown=$PY || shown="$PY ($where)"
major=${ver%%.*}
minor=${ver#*.}
case "$major$minor" in
    '' | *[!0-9]*) say "'$PY' reported an unexpected version '$ver'; cavmae-lite needs Python >= 3.10."; exit 1 ;;
esac
if [ "$major" -lt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -lt 10 ]; }; then
    found=""
    for cand in python3.14 python3.13 python3.12 python3.11 python3.10; do
        found=$(command -v "$cand" 2>/dev/null) && "$found" -c 'import venv, ensurepip' >/dev/null 2>&1 && break
        found=""
    done
    say "cavmae-lite needs Python >= 3.10, and $shown is Python $ver: $VENV not created."
    if [ -n "$found" ]; then
        say "Fix: make setup BOOTSTRAP_PYTHON=$found   (a newer Python found on this machine)"
    else
        say "Fix: install a newer Python and name it: make setup BOOTSTRAP_PYTHON=/path/to/python3.11" \
            "  (Debian/Ubuntu: sudo apt install python3.11 python3.11-venv, older Ubuntu via the deadsnakes PPA;" \
            "  macOS: brew install python@3.11; or pyenv install 3.11)"
    fi
    say "  $conda_hint"
    exit 1
fi
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    say "$shown (Python $ver) cannot create virtual environments: its venv / ensurepip modules are missing" \
        "  (Debian / Ubuntu ship them separately). $VENV not created." \
        "Fix: sudo apt install python$ver-venv   (python3-venv for the system python3), then make setup again;" \
        "  or another Python: make setup BOOTSTRAP_PYTHON=/path/to/python3.11;" \
        "  $conda_hint"
    exit 1
fi

# ----- create it, all or nothing --------------------------------------------------------------------------------
say "creating $VENV with $where (Python $ver)"
trap 'rm -rf "$VENV"; say "interrupted: removed the unfinished $VENV"; exit 130' INT TERM HUP
if ! "$PY" -m venv "$VENV"; then
    rm -rf "$VENV"
    say "'$PY -m venv $VENV' failed (its message is above): removed the unfinished $VENV." \
        "Fix: on Debian / Ubuntu, sudo apt install python$ver-venv (python3-venv for the system python3); check the" \
        "  free disk space; or another Python: make setup BOOTSTRAP_PYTHON=/path/to/python3.11;" \
        "  $conda_hint"
    exit 1
fi
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$VENV"
    say "the new $VENV has no working pip (ensurepip failed): removed it." \
        "Fix: on Debian / Ubuntu, sudo apt install python$ver-venv (python3-venv for the system python3);" \
        "  or another Python: make setup BOOTSTRAP_PYTHON=/path/to/python3.11;" \
        "  $conda_hint"
    exit 1
fi
trap - INT TERM HUP
exit 0
