"""One worker pool with a tqdm progress bar, shared by ``make-data``, ``prepare`` and ``cache``.

:func:`run_parallel` calls ``fn(job)`` for every job, in this process when one worker is enough, else in a
``multiprocessing`` pool (``fork`` on Linux, ``spawn`` elsewhere: ``fn`` and the jobs must then be picklable,
i.e. ``fn`` a module-level function). The bar counts items, not jobs: a job that stands for 50 clips moves it
by 50 (``sizes``). tqdm and multiprocessing are imported on first use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def resolve_workers(workers: int | None, num_jobs: int, cap: int | None = None) -> int:
    """Processes to use: ``workers`` if given (0 or None: the machine's cores, at most ``cap``), never more
    than ``num_jobs`` and never fewer than 1."""
    default = os.cpu_count() or 1
    if cap is not None:
        default = min(default, cap)
    return max(1, min(workers or default, num_jobs))


def run_parallel(
    fn: Callable[[Any], Any],
    jobs: Sequence,
    workers: int = 1,
    desc: str = "",
    unit: str = "item",
    progress: bool = True,
    sizes: Sequence[int] | None = None,
    ordered: bool = True,
    leave: bool = False,
    torch_threads: int | None = None,
) -> list:
    """``[fn(job) for job in jobs]``, over ``workers`` processes, with a progress bar.

    sizes: how many items each job stands for (default 1 each); the bar's total is their sum.
    ordered: results in the jobs' order (True) or in the order they finish (False, keeps the bar moving when
      jobs take very different times).
    progress: show the bar (it is never shown when there is nothing to do); leave: keep it on screen afterwards.
    torch_threads: torch's intra-op threads while a job runs (1: one core per worker, and the same numbers
      whatever the worker count); restored afterwards in this process. None: left alone.
    """
    from tqdm.auto import tqdm

    sizes = [1] * len(jobs) if sizes is None else list(sizes)
    if len(sizes) != len(jobs):
        raise ValueError(f"sizes must give one count per job: {len(jobs)} jobs, {len(sizes)} sizes")
    results: list = []
    with tqdm(total=sum(sizes), desc=desc, unit=unit, disable=not progress or not jobs, leave=leave) as bar:
        if workers <= 1 or len(jobs) <= 1:
            with _torch_threads(torch_threads):
                for job, n in zip(jobs, sizes):
                    results.append(fn(job))
                    bar.update(n)
            return results
        import multiprocessing as mp

        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        workers = min(workers, len(jobs))
        init = (_set_torch_threads, (torch_threads,)) if torch_threads else (None, ())
        with ctx.Pool(workers, *init) as pool:
            if ordered:
                for r, n in zip(pool.imap(fn, jobs), sizes):
                    results.append(r)
                    bar.update(n)
            else:
                for i, r in pool.imap_unordered(_indexed, [(fn, i, job) for i, job in enumerate(jobs)]):
                    results.append(r)
                    bar.update(sizes[i])
    return results


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _indexed(task: tuple) -> tuple[int, Any]:
    """Worker side of an unordered run: ``(index, fn(job))``, so the bar can add that job's size."""
    fn, i, job = task
    return i, fn(job)


__all__ = ["resolve_workers", "run_parallel"]
