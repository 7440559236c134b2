"""The shared worker pool of make-data, prepare and cache: results, order, progress counts, torch threads."""

import pytest
import torch

from cavmae_lite.data.pool import resolve_workers, run_parallel


def _square(x: int) -> int:
    return x * x


def _threads(_) -> int:
    return torch.get_num_threads()


def test_resolve_workers():
    assert resolve_workers(3, 10) == 3
    assert resolve_workers(8, 2) == 2  # never more processes than jobs
    assert resolve_workers(None, 0) == 1
    assert 1 <= resolve_workers(None, 100, cap=2) <= 2


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_order_or_as_completed(workers):
    jobs = list(range(7))
    assert run_parallel(_square, jobs, workers, progress=False) == [j * j for j in jobs]
    assert sorted(run_parallel(_square, jobs, workers, progress=False, ordered=False)) == [j * j for j in jobs]
    assert run_parallel(_square, [], workers, progress=False) == []


def test_sizes_must_match_the_jobs():
    with pytest.raises(ValueError, match="one count per job: 3 jobs, 2 sizes"):
        run_parallel(_square, [1, 2, 3], 1, progress=False, sizes=[5, 5])


def test_torch_threads_are_limited_in_the_jobs_and_restored():
    before = torch.get_num_threads()
    assert run_parallel(_threads, [0, 1], 1, progress=False, torch_threads=1) == [1, 1]
    assert torch.get_num_threads() == before
    assert run_parallel(_threads, [0, 1], 2, progress=False, torch_threads=1) == [1, 1]
