"""Importing the package before torch picks libgomp's wait policy (cavmae_lite.omp): PASSIVE when other processes
are busy, libgomp's default on a quiet machine, and never over the user's own choice."""

import os
import subprocess
import sys

from cavmae_lite.omp import busy_cores, choose_wait_policy

BUSY = "import time\nt = time.time()\nwhile time.time() - t < 30:\n    pass\n"


def _policy(**env) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "CAVMAE_OMP_WAIT_POLICY")}
    code = "import cavmae_lite, os; print(os.environ.get('OMP_WAIT_POLICY', '<unset>'))"
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_explicit_choices_are_kept():
    assert _policy(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    assert _policy(OMP_WAIT_POLICY="ACTIVE", CAVMAE_OMP_WAIT_POLICY="PASSIVE") == "ACTIVE"
    assert _policy(CAVMAE_OMP_WAIT_POLICY="PASSIVE") == "PASSIVE"
    assert _policy(CAVMAE_OMP_WAIT_POLICY="default") == "<unset>"
    assert choose_wait_policy({"OMP_WAIT_POLICY": "ACTIVE"}) is None  # torch is imported here: never touched


def test_auto_sleeps_when_another_process_keeps_a_core_busy():
    rival = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        import time

        time.sleep(0.5)
        assert busy_cores() >= 0.5
        assert _policy() == "PASSIVE"
    finally:
        rival.kill()
        rival.wait()
    assert 0.0 <= busy_cores() <= (os.cpu_count() or 1) + 1e-9
