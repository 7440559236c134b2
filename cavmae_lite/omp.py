"""How PyTorch's CPU threads wait between parallel regions, chosen before torch is imported.

PyTorch's CPU threads come from libgomp, whose idle threads spin for a while before they sleep. On a quiet machine
that is fastest; on a machine shared with another multi-threaded job the spinning threads take the cores the others
need. Measured with ``benchmarks/bench_contention.py`` (ten-minute recipe, 2 threads, s / step; 2026-12-03):

=======================================  =================  ==============================
machine                                  libgomp default    ``OMP_WAIT_POLICY=PASSIVE``
=======================================  =================  ==============================
quiet                                    0.64               0.76
beside another 2-thread training run     4.77               1.12
beside a 2-thread matmul loop            1.21               1.15
=======================================  =================  ==============================

``CAVMAE_OMP_WAIT_POLICY``: ``auto`` (the default) sets ``OMP_WAIT_POLICY=PASSIVE`` when other processes keep at
least half a core busy at import time (sampled from ``/proc/stat`` over 0.1 s) and leaves libgomp's default
otherwise; ``PASSIVE`` / ``ACTIVE`` set that policy; ``default`` leaves it alone. An ``OMP_WAIT_POLICY`` you set
yourself always wins. It only acts when ``cavmae_lite`` is imported before torch (the CLI always is).
"""

from __future__ import annotations

import os
import sys
import time

BUSY_CORES = 0.5  # other processes' load (cores) above which "auto" picks PASSIVE


def busy_cores(seconds: float = 0.1) -> float | None:
    """Cores kept busy by all processes over the next ``seconds`` (this one sleeps meanwhile), from ``/proc/stat``;
    None where that file does not exist."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
        return sum(ticks), ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # total, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return 0.0 if total <= 0 else (total - (idle1 - idle0)) / total * (os.cpu_count() or 1)


def choose_wait_policy(env: dict[str, str] | None = None) -> str | None:
    """The ``OMP_WAIT_POLICY`` to set (None: leave it) for the environment ``env`` (default ``os.environ``)."""
    env = os.environ if env is None else env
    if "OMP_WAIT_POLICY" in env or "torch" in sys.modules:
        return None
    choice = env.get("CAVMAE_OMP_WAIT_POLICY", "auto")
    if choice == "default":
        return None
    if choice != "auto":
        return choice
    busy = busy_cores()
    return "PASSIVE" if busy is not None and busy >= BUSY_CORES else None


def apply_wait_policy() -> str | None:
    """Set ``OMP_WAIT_POLICY`` as :func:`choose_wait_policy` says; returns what was set."""
    policy = choose_wait_policy()
    if policy:
        os.environ["OMP_WAIT_POLICY"] = policy
    return policy


__all__ = ["BUSY_CORES", "apply_wait_policy", "busy_cores", "choose_wait_policy"]
