"""Where a run's work executes: this process, a pool of local worker processes, or a Dask cluster,
all behind one ``submit`` / :func:`wait_first` interface.

A function given to a pool or a cluster must be a top-level function of an importable module (it
travels by name). Worker processes are spawned, each with its own number of torch threads, so
that they do not oversubscribe the cores. dask.distributed is imported only when a scheduler is
used. Imports nothing else of the package.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures


def set_threads(n: int | None) -> None:
    """Give torch ``n`` threads in this process (None or 0: leave torch's default)."""
    if n:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


class LocalExecutor:
    """In-process execution behind the same submit / wait interface as the process pool."""

    def submit(self, fn, *args):
        fut = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - surfaced by .result(), as a pool would
            fut.set_exception(exc)
        return fut

    def shutdown(self):
        pass


def wait_first(pending: set, dask_client=None) -> tuple[set, set]:
    """Block until at least one future of ``pending`` is done: ``(done, not_done)``."""
    if dask_client is not None:
        from distributed import wait

        done, not_done = wait(list(pending), return_when="FIRST_COMPLETED")
        return set(done), set(not_done)
    done, not_done = wait_futures(pending, return_when=FIRST_COMPLETED)
    return set(done), set(not_done)


def _init_worker(threads: int) -> None:
    set_threads(threads)


def local_executor(workers: int, torch_threads: int | None = None):
    """``(executor, torch threads per worker)``: this process for 1 worker, else a pool of spawned
    processes with ``cpu_count // workers`` torch threads each (so they do not oversubscribe)."""
    if workers <= 1:
        return LocalExecutor(), torch_threads
    threads = torch_threads or max(1, (os.cpu_count() or 1) // workers)
    # spawn: a forked copy of a process that already runs torch's thread pool can deadlock
    return ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(threads,)), threads


def dask_client(scheduler: str):
    """``(client, threads)``: a dask.distributed client of the scheduler at ``scheduler``
    (``tcp://host:8786``) and how many threads its workers have in all (at least 1)."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise RuntimeError("--scheduler needs dask.distributed: pip install 'napari-cervseg[dask]'") from exc
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise RuntimeError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start one"
                           " (`dask scheduler` + `dask worker ADDRESS`) or drop --scheduler") from exc
    info = client.scheduler_info().get("workers", {})
    return client, max(1, sum(w.get("nthreads", 1) for w in info.values()))
