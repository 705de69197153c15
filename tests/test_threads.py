"""xpconv's own threads (xpconv._threads): how many, and that results do not
depend on them."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np
import pytest

import xpconv
from xpconv import _depthwise, _threads
from xpconv._backend import host_workers


@pytest.fixture
def many_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this process may run on 16 CPUs, so that XPCONV_NUM_THREADS up
    to 16 is taken as it is, not capped at this machine's CPUs."""
    monkeypatch.setattr(_threads, "_cpus", lambda: 16)


def _cpus_here() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@pytest.mark.usefixtures("many_cpus")
def test_thread_count_follows_env_and_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPCONV_NUM_THREADS", "3")
    assert _threads.thread_count() == 3
    with xpconv.thread_limit(2):
        assert _threads.thread_count() == 2
        with xpconv.thread_limit(5):  # a limit, not a request: 3 are available
            assert _threads.thread_count() == 3
        assert _threads.thread_count() == 2
    assert _threads.thread_count() == 3
    monkeypatch.delenv("XPCONV_NUM_THREADS")
    assert _threads.thread_count() == 16


def test_thread_count_is_capped_at_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """More threads than CPUs only take turns: 100000 asked for means the CPUs."""
    monkeypatch.setenv("XPCONV_NUM_THREADS", "100000")
    assert _threads.thread_count() == _cpus_here()
    with xpconv.thread_limit(100000):
        assert _threads.thread_count() == _cpus_here()
    monkeypatch.setattr(_threads, "_cpus", lambda: 3)
    assert _threads.thread_count() == 3


@pytest.mark.parametrize("value", ["abc", "0", "-3", "2.5", "two"])
def test_bad_env_value_is_named_and_ignored(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Like a bad OMP_NUM_THREADS: a warning naming it, then one thread per CPU."""
    monkeypatch.setattr(_threads, "_cpus", lambda: 5)
    monkeypatch.setenv("XPCONV_NUM_THREADS", value)
    expected = re.escape(f"XPCONV_NUM_THREADS must be a positive integer, got {value!r}")
    with pytest.warns(RuntimeWarning, match=expected):
        assert _threads.thread_count() == 5


_IMPORT_SCRIPT = """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import xpconv
for warning in caught:
    print(warning.category.__name__, warning.message)
"""


def test_bad_env_value_is_reported_at_import() -> None:
    """Not first at the first depthwise convolution, which may come much later;
    and as a warning, so that importing xpconv still works."""
    env = {**os.environ, "XPCONV_NUM_THREADS": "abc"}
    command = [sys.executable, "-c", _IMPORT_SCRIPT]
    done = subprocess.run(command, env=env, check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    expected = "RuntimeWarning XPCONV_NUM_THREADS must be a positive integer, got 'abc'"
    assert expected in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1, ValueError),
        (np.int64(0), ValueError),
        (True, TypeError),
        (np.True_, TypeError),
        (1.5, TypeError),
        (np.float64(2.0), TypeError),
        ("2", TypeError),
    ],
)
def test_bad_thread_limit_is_named(value: Any, error: type[Exception]) -> None:
    limit = xpconv.thread_limit(value)
    expected = re.escape(f"threads must be a positive integer, got {value!r}")
    with pytest.raises(error, match=expected):
        limit.__enter__()


@pytest.mark.usefixtures("many_cpus")
@pytest.mark.parametrize("value", [np.int64(2), np.int32(3), np.uint8(1), np.array(2)])
def test_thread_limit_takes_any_integer(monkeypatch: pytest.MonkeyPatch, value: Any) -> None:
    """Any integer type, as workspace_limit takes: a count from NumPy is common."""
    monkeypatch.setenv("XPCONV_NUM_THREADS", "8")
    with xpconv.thread_limit(value):
        count = _threads.thread_count()
    assert count == int(value)
    assert type(count) is int


def test_run_all_keeps_order_and_raises() -> None:
    def task(i: int) -> Any:
        def run() -> int:
            time.sleep(0.01 * (3 - i))  # later tasks finish first
            return i

        return run

    assert _threads.run_all([task(i) for i in range(4)]) == [0, 1, 2, 3]

    def fail() -> int:
        msg = "in a worker"
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError, match="in a worker"):
        _threads.run_all([task(0), fail])


def test_run_all_uses_other_threads() -> None:
    seen: set[int] = set()
    barrier = threading.Barrier(3, timeout=10)  # only passes if 3 run at once

    def task() -> None:
        seen.add(threading.get_ident())
        barrier.wait()

    _threads.run_all([task, task, task])
    assert threading.get_ident() in seen
    assert len(seen) == 3


def test_run_all_from_many_threads_while_the_pool_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers that need more threads than the pool has make it grow while
    others are submitting to it: no call may find its pool shut down."""
    monkeypatch.setattr(_threads._Pool, "executor", None)
    monkeypatch.setattr(_threads._Pool, "size", 0)

    def fresh_pool() -> None:  # so that every round grows the pool from nothing
        _threads._Pool.executor, _threads._Pool.size = None, 0

    callers, rounds = 16, 20
    barrier = threading.Barrier(callers, action=fresh_pool, timeout=30)
    failed: list[BaseException] = []

    def caller(tasks: int) -> None:
        for _ in range(rounds):
            barrier.wait()
            try:
                got = _threads.run_all([functools.partial(int, i) for i in range(tasks)])
                assert got == list(range(tasks))
            except Exception as exc:  # collected, reported below
                failed.append(exc)

    threads = [threading.Thread(target=caller, args=(2 + k,)) for k in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failed, f"{len(failed)} of {callers * rounds} calls failed, first: {failed[0]!r}"


@pytest.mark.usefixtures("many_cpus")
def test_only_numpy_gets_threads(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XPCONV_NUM_THREADS", "3")
    expected = 3 if backend.backend.value == "numpy" else 1
    assert host_workers(backend.asarray(np.zeros(1))) == expected


def _depthwise_results(dtype: str) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 8, 9, 7)).astype(dtype)
    w = rng.standard_normal((8, 1, 3, 3)).astype(dtype)
    b = rng.standard_normal(8).astype(dtype)
    y = xpconv.conv2d(x, w, b, padding=1, groups=8)
    return [y, *xpconv.conv2d_backward(np.sin(y), x, w, padding=1, groups=8)]


@pytest.mark.usefixtures("many_cpus")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_depthwise_same_on_any_thread_count(monkeypatch: pytest.MonkeyPatch, dtype: str) -> None:
    """Each chunk is computed the same way whichever thread takes it, so the
    results are identical, bit for bit."""
    monkeypatch.setenv("XPCONV_NUM_THREADS", "3")
    monkeypatch.setattr(_depthwise, "CPU_CHUNK_BYTES", 4 * 11 * 9 * np.dtype(dtype).itemsize)
    shares: list[int] = []
    original = _threads.run_all

    def spy(tasks: Any) -> Any:
        shares.append(len(tasks))
        return original(tasks)

    monkeypatch.setattr(_depthwise, "run_all", spy)
    threaded = _depthwise_results(dtype)
    assert shares == [3, 3], shares  # the output and the input gradient
    with xpconv.thread_limit(1):
        single = _depthwise_results(dtype)
    assert shares[2:] == [1, 1], shares
    for a, b in zip(threaded, single, strict=True):
        np.testing.assert_array_equal(a, b)


# Run in a fresh interpreter: forking this one, where JAX or PyTorch may have
# started threads of their own, is unsafe for reasons that are not xpconv's.
_FORK_SCRIPT = """
import multiprocessing, os
import numpy as np
import xpconv
from xpconv import _depthwise, _threads

os.environ["XPCONV_NUM_THREADS"] = "2"
_threads._cpus = lambda: 2  # a pool even on one CPU
_depthwise.CPU_CHUNK_BYTES = 4 * 11 * 9 * 8
x = np.random.default_rng(5).standard_normal((6, 8, 9, 7))
w = np.ones((8, 1, 3, 3))

def conv():
    return xpconv.conv2d(x, w, padding=1, groups=8)

def child(queue):
    queue.put(conv())

expected = conv()  # the parent's pool now exists
ctx = multiprocessing.get_context("fork")
queue = ctx.Queue()
proc = ctx.Process(target=child, args=(queue,))
proc.start()
got = queue.get(timeout=30)
proc.join(timeout=10)
np.testing.assert_array_equal(got, expected)
print("child ok")
"""


@pytest.mark.skipif(sys.platform == "win32", reason="no fork on Windows")
def test_threads_work_after_fork() -> None:
    """A forked child inherits the pool but none of its threads: it must make its own."""
    command = [sys.executable, "-c", _FORK_SCRIPT]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert "child ok" in done.stdout
