"""Independent pieces of NumPy work on several CPU threads.

NumPy runs each elementwise operation on one thread. Where xpconv's work is
a loop of independent, cache-sized pieces (the depthwise kernel's chunks,
:mod:`xpconv._depthwise`; the samples of an im2col convolution,
:func:`xpconv._engine._sample_workers`), Python threads can run the pieces
side by side: NumPy lets go of the GIL inside each operation. Where the
pieces include matrix products, the BLAS is held at one thread meanwhile
(:func:`single_threaded_blas`): the pieces are the parallelism. The other
libraries need none of this (PyTorch has its own threads, CuPy the GPU, JAX
and Dask their own schedulers), so threads are used for NumPy arrays only.

How many: ``XPCONV_NUM_THREADS`` if set, otherwise the CPUs this process may
run on; :func:`thread_limit` caps it for a block of code (as
``threadpoolctl`` does for the BLAS)::

    with xpconv.thread_limit(1):
        y = xpconv.conv2d(x, w)  # everything on the calling thread

Either way there are never more threads than CPUs this process may run on
(``os.sched_getaffinity(0)`` where the OS has it, else ``os.cpu_count()``):
``XPCONV_NUM_THREADS=64`` on a 2-CPU machine, or in a container or batch job
pinned to 2 CPUs, means 2. More threads than CPUs cannot run the pieces any
sooner; they only take turns and thrash the caches.

``XPCONV_NUM_THREADS`` must be a positive integer. Anything else (``abc``,
``0``, ``-3``, ``2.5``) is reported with a :class:`RuntimeWarning` that names
the variable and the value, when xpconv is imported (and again if the
variable is changed to another bad value later), and is then ignored: one
thread per CPU, as if it were unset. This is what the OpenMP runtimes do with
a bad ``OMP_NUM_THREADS`` (GCC's libgomp prints "Invalid value for environment
variable OMP_NUM_THREADS" and uses its default). It is not an error, because
the variable only tunes speed, never results, and an exception at import
would break every program that imports xpconv, even one that never runs a
depthwise layer (numexpr's ``int(os.environ[...])`` at import did just that,
pydata/numexpr#421). Run Python with ``-W error::RuntimeWarning`` (or pytest
with ``filterwarnings = error``) to make it fail instead.
"""

from __future__ import annotations

import contextlib
import operator
import os
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = ["blas_threads", "run_all", "single_threaded_blas", "thread_count", "thread_limit"]

T = TypeVar("T")

_ENV = "XPCONV_NUM_THREADS"

_LIMIT: ContextVar[int | None] = ContextVar("xpconv_thread_limit", default=None)


class _Pool:
    """The shared thread pool, with the process and size it was made for."""

    executor: ThreadPoolExecutor | None = None
    pid = 0
    size = 0
    lock = threading.Lock()


def _cpus() -> int:
    """The CPUs this process may run on (at least 1): no more threads can help."""
    if hasattr(os, "sched_getaffinity"):  # the affinity mask (Linux): containers, taskset
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _requested() -> int | None:
    """``XPCONV_NUM_THREADS`` as a positive integer; ``None`` if unset or bad.

    A bad value gets a :class:`RuntimeWarning` (see the module docstring),
    attributed to this line whoever asked, so that Python's default filter
    shows it once per distinct value rather than on every call.
    """
    text = os.environ.get(_ENV, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value >= 1:
        return value
    msg = (
        f"{_ENV} must be a positive integer, got {text!r}; ignoring it and using "
        f"one thread per CPU this process may run on ({_cpus()})"
    )
    warnings.warn(msg, RuntimeWarning, stacklevel=1)
    return None


def _available() -> int:
    """``XPCONV_NUM_THREADS`` (read on every call) or the CPUs, at most the CPUs."""
    cpus = _cpus()
    requested = _requested()
    return cpus if requested is None else min(requested, cpus)


def thread_count() -> int:
    """Threads xpconv's own NumPy loops may use (at least 1)."""
    limit = _LIMIT.get()
    available = _available()
    return available if limit is None else min(limit, available)


def explicit_thread_limit() -> int | None:
    """The limit set by an enclosing :func:`thread_limit`, or None (for work run elsewhere)."""
    return _LIMIT.get()


@contextlib.contextmanager
def thread_limit(threads: int) -> Iterator[None]:
    """Run xpconv's own NumPy loops on at most ``threads`` threads inside the block.

    Parameters
    ----------
    threads : int
        Most threads; 1 keeps everything on the calling thread. Any integer
        type is accepted (``operator.index``: ``int``, ``numpy.int64``, ...),
        but not ``bool`` or a float.

    Raises
    ------
    TypeError, ValueError
        If `threads` is not an integer, or is below 1.

    Notes
    -----
    On NumPy arrays, the depthwise kernel's forward pass shares its chunks
    out over these threads, and an im2col convolution with several samples
    splits them across the threads, with the BLAS held at one thread while
    they run (at most as many threads as the BLAS itself may use: a
    ``threadpoolctl`` limit of 1 also keeps the samples on one thread). With
    a limit of 1, xpconv leaves the BLAS's thread count alone; other threads
    of the program calling the BLAS during a split convolution get one
    thread. Outside any limit xpconv uses
    ``XPCONV_NUM_THREADS`` threads if that is set, otherwise one per CPU the
    process may run on, and never more threads than such CPUs, whatever the
    limit or the variable asks for. The limit is a
    :class:`contextvars.ContextVar`, so threads and asyncio tasks each see
    their own. Results do not depend on it.

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
    token = _LIMIT.set(_check_threads(threads))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def _check_threads(threads: object) -> int:
    """`threads` as an ``int`` if it is a positive integer of any integer type."""
    msg = f"threads must be a positive integer, got {threads!r}"
    if isinstance(threads, bool):  # an int to Python, but never meant as a count
        raise TypeError(msg)
    try:
        value = operator.index(threads)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(msg) from None
    if value < 1:
        raise ValueError(msg)
    return value


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


class _Blas:
    """NumPy's BLAS as ``threadpoolctl`` controls it, and who holds it at one thread."""

    lock = threading.Lock()
    libraries: Any = None  # threadpoolctl's selection of BLAS libraries; False: none
    users = 0  # callers inside single_threaded_blas() now
    limiter: Any = None  # what restores their thread counts when the last one leaves


def _blas_libraries() -> Any:
    """The BLAS libraries loaded in this process, found once (``False`` without threadpoolctl).

    Looked for at the first call, when NumPy (which loads its BLAS) has
    been imported by the caller's arrays.
    """
    if _Blas.libraries is None:
        try:
            import threadpoolctl
        except ImportError:  # pragma: no cover - a dependency; kept optional at run time
            _Blas.libraries = False
        else:
            found = threadpoolctl.ThreadpoolController().select(user_api="blas")
            _Blas.libraries = found if found.lib_controllers else False
    return _Blas.libraries


def blas_threads() -> int:
    """Threads the BLAS may use now; 1 where xpconv cannot set them (no work is split then)."""
    libraries = _blas_libraries()
    if not libraries:
        return 1
    return max(1, min(lib.num_threads for lib in libraries.lib_controllers))


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """The BLAS on one thread inside the block, for work split across xpconv's own threads.

    Several threads may hold it at once: the first to enter sets one
    thread, the last to leave restores the counts it found. (A BLAS on
    several threads, called from several threads, would run the calls one
    after the other or oversubscribe the CPUs.)
    """
    libraries = _blas_libraries()
    with _Blas.lock:
        if _Blas.users == 0 and libraries:
            _Blas.limiter = libraries.limit(limits=1)
        _Blas.users += 1
    try:
        yield
    finally:
        with _Blas.lock:
            _Blas.users -= 1
            if _Blas.users == 0 and _Blas.limiter is not None:
                _Blas.limiter.restore_original_limits()
                _Blas.limiter = None


# Report a bad XPCONV_NUM_THREADS now, when xpconv is imported, rather than
# at the first depthwise convolution, which may come much later or never.
_requested()
