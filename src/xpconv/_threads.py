"""Independent pieces of NumPy work on several CPU threads.

NumPy runs each elementwise operation on one thread. Where xpconv's work is
a loop of independent, cache-sized pieces of elementwise arithmetic (the
depthwise kernel's chunks, :mod:`xpconv._depthwise`), Python threads can run
the pieces side by side: NumPy lets go of the GIL inside each operation. The
matrix products need none of this (the BLAS has its own threads), and neither
do the other libraries (PyTorch has its own threads, CuPy the GPU, JAX and
Dask their own schedulers), so :func:`xpconv._backend.host_workers` asks for
threads for NumPy arrays only.

How many: ``XPCONV_NUM_THREADS`` if set, otherwise the CPUs this process may
run on; :func:`thread_limit` caps it for a block of code (as
``threadpoolctl`` does for the BLAS)::

    with xpconv.thread_limit(1):
        y = xpconv.conv2d(x, w)  # everything on the calling thread
"""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["run_all", "thread_count", "thread_limit"]

T = TypeVar("T")

_LIMIT: ContextVar[int | None] = ContextVar("xpconv_thread_limit", default=None)


class _Pool:
    """The shared thread pool, with the process and size it was made for."""

    executor: ThreadPoolExecutor | None = None
    pid = 0
    size = 0
    lock = threading.Lock()


def _available() -> int:
    env = os.environ.get("XPCONV_NUM_THREADS", "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            msg = f"XPCONV_NUM_THREADS must be a positive integer, got {env!r}"
            raise ValueError(msg)
        return value
    if hasattr(os, "sched_getaffinity"):  # the CPUs this process may use (Linux)
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def thread_count() -> int:
    """Threads xpconv's own NumPy loops may use (at least 1)."""
    limit = _LIMIT.get()
    available = _available()
    return available if limit is None else min(limit, available)


@contextlib.contextmanager
def thread_limit(threads: int) -> Iterator[None]:
    """Run xpconv's own NumPy loops on at most ``threads`` threads inside the block.

    Parameters
    ----------
    threads : int
        Most threads; 1 keeps everything on the calling thread.

    Raises
    ------
    TypeError, ValueError
        If `threads` is not an integer, or is below 1.

    Notes
    -----
    Only the depthwise kernel's forward pass on NumPy arrays has such loops
    (:mod:`xpconv._threads`); the BLAS's threads are not affected (use
    ``threadpoolctl`` for those). Outside any limit xpconv uses
    ``XPCONV_NUM_THREADS`` threads if that is set, otherwise one per CPU the
    process may run on. The limit is a :class:`contextvars.ContextVar`, so
    threads and asyncio tasks each see their own. Results do not depend on it.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> x, w = np.ones((2, 4, 8, 8)), np.ones((4, 1, 3, 3))
    >>> with xpconv.thread_limit(1):
    ...     y = xpconv.conv2d(x, w, padding=1, groups=4)  # depthwise, on one thread
    >>> float(y[0, 0, 4, 4])
    9.0
    """
    if isinstance(threads, bool) or not isinstance(threads, int):
        msg = f"threads must be a positive integer, got {threads!r}"
        raise TypeError(msg)
    if threads < 1:
        msg = f"threads must be a positive integer, got {threads!r}"
        raise ValueError(msg)
    token = _LIMIT.set(threads)
    try:
        yield
    finally:
        _LIMIT.reset(token)


def _submit(tasks: Sequence[Callable[[], T]]) -> list[Future[T]]:
    """Submit the tasks to a pool of at least ``len(tasks)`` threads.

    The pool is shared by every calling thread and made larger when a call
    needs more threads than it has. The old, smaller pool is shut down then,
    and a pool that is shut down refuses new tasks. Looking up the pool and
    submitting to it under one lock means no thread can submit to a pool that
    another has just shut down; the tasks already submitted to it still run
    (``shutdown(wait=False)`` cancels nothing), and its threads end once they
    are done. A child process made by ``fork`` inherits the pool but none of
    its threads: it makes a pool of its own (and must not shut the inherited
    one down, whose lock may be held by a thread that is gone).
    """
    with _Pool.lock:
        pid = os.getpid()
        if _Pool.executor is None or _Pool.pid != pid or _Pool.size < len(tasks):
            if _Pool.executor is not None and _Pool.pid == pid:
                _Pool.executor.shutdown(wait=False)
            _Pool.executor = ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="xpconv")
            _Pool.pid, _Pool.size = pid, len(tasks)
        return [_Pool.executor.submit(task) for task in tasks]


def run_all(tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Run the tasks, the first on the calling thread and the others on the pool.

    Returns their results in order; an exception in a task is raised here.
    Safe to call from any number of threads at once.
    """
    if len(tasks) <= 1:
        return [task() for task in tasks]
    pending = _submit(tasks[1:])
    first = tasks[0]()
    return [first, *(future.result() for future in pending)]
