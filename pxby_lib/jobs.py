"""A stage's independent runs (its seeds) in parallel worker processes.

`run_jobs(fn, jobs, workers, threads)` calls `fn(**job)` for every job and returns the
results in job order. With workers > 1 each job runs in a fresh process ('spawn': no
forked torch state), which imports pxby_lib first (so the pinned numerics hold there
too) and runs `threads` torch threads. With workers == 1 the jobs run here, one after
the other. Both give the same bytes (tests/test_jobs.py): a job's result depends on its
arguments and its thread count only, never on which worker ran it or when.

Why processes and not threads: the models here are small, and two processes with one
thread each train 1.2-1.6x faster than one process with two (measured on 2 cores:
LSTM, Transformer, Mamba training steps, `benchmarks/bench_models.py`).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def plan(cores: int, n_jobs: int) -> tuple[int, int]:
    """(workers, threads per training job) for `n_jobs` jobs on `cores` cores: as many
    workers as jobs allow, the cores shared out between them. A fixed function of the
    parameters, not of the machine: the thread count is part of the numerics."""
    workers = max(1, min(cores, n_jobs))
    return workers, max(1, cores // workers)


def _init_worker(threads: int) -> None:
    import pxby_lib  # noqa: F401  (pins the numerics before torch starts)
    from pxby_lib.runtime import set_threads

    set_threads(threads)


def run_jobs(fn: Callable[..., Any], jobs: Sequence[dict], workers: int, threads: int) -> list[Any]:
    """fn(**job) for every job, `workers` at a time, `threads` torch threads each."""
    from pxby_lib.runtime import set_threads

    if workers <= 1 or len(jobs) <= 1:
        set_threads(threads)
        return [fn(**job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_init_worker, initargs=(threads,)) as pool:
        futures = [pool.submit(fn, **job) for job in jobs]
        return [f.result() for f in futures]
