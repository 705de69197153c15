"""Many Python threads calling xpconv at once, each inside its own workspace
and thread limits: every call must give exactly what the same call gives
when it runs alone.

The depthwise layers share chunks out over xpconv's thread pool
(:mod:`xpconv._threads`), which the calls make and grow while others are
submitting to it; the dense layers go through im2col and the BLAS. The limits
are context variables, so each thread must see its own and no other's.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

import xpconv
from xpconv import _threads

if TYPE_CHECKING:
    import pytest


@dataclass(frozen=True)
class Layer:
    """A convolution and its arguments, made from a fixed seed."""

    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]
    dtype: str
    options: dict[str, Any]

    def arrays(self) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(sum(self.x_shape) + sum(self.w_shape))
        x = rng.standard_normal(self.x_shape).astype(self.dtype)
        w = rng.standard_normal(self.w_shape).astype(self.dtype)
        b = rng.standard_normal(self.w_shape[0]).astype(self.dtype)
        return x, w, b


LAYERS = [
    # Depthwise (groups == C == O, stride 1): its forward pass, and the input
    # gradient's, share chunks of planes out over the pool. The first layer
    # has 3 chunks under the default limit or none, 128 under 4096 bytes, so
    # the calls below use from 1 to 16 threads each.
    Layer((4, 32, 32, 32), (32, 1, 3, 3), "float64", {"padding": 1, "groups": 32}),
    Layer((4, 8, 20, 20), (8, 1, 5, 5), "float32", {"padding": 2, "groups": 8, "dilation": 2}),
    # Dense and grouped, through im2col: chunks of samples and of output rows.
    Layer((4, 6, 12, 12), (10, 6, 3, 3), "float64", {"padding": 1}),
    Layer((3, 8, 11, 9), (12, 4, 3, 3), "float32", {"stride": 2, "groups": 2}),
]

DEFAULT = "default"  # no workspace_limit block: the default limit

# (layer, workspace limit, thread limit) of each calling thread: every layer
# under each kind of workspace limit, with thread limits from 1 to above the
# pool's size, so that the pool grows while others use it.
JOBS = [
    (LAYERS[0], None, 16),
    (LAYERS[0], 4096, 2),
    (LAYERS[0], DEFAULT, 5),
    (LAYERS[0], 4096, 8),
    (LAYERS[1], 4096, 3),
    (LAYERS[1], DEFAULT, 1),
    (LAYERS[1], None, 7),
    (LAYERS[1], 4096, 16),
    (LAYERS[2], DEFAULT, 4),
    (LAYERS[2], 4096, 1),
    (LAYERS[3], None, 2),
    (LAYERS[3], 4096, 12),
]

ROUNDS = 8


def _call(layer: Layer, workspace: int | str | None, threads: int) -> list[np.ndarray]:
    """conv2d and conv2d_backward of the layer, inside the given limits."""
    x, w, b = layer.arrays()
    with contextlib.ExitStack() as limits:
        if not isinstance(workspace, str):  # not DEFAULT
            limits.enter_context(xpconv.workspace_limit(workspace))
        limits.enter_context(xpconv.thread_limit(threads))
        y = xpconv.conv2d(x, w, b, **layer.options)
        grads = xpconv.conv2d_backward(np.cos(y), x, w, **layer.options)
    assert grads.bias is not None
    return [y, grads.input, grads.weight, grads.bias]


def test_threads_at_once_give_the_serial_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every thread gets, bit for bit, its call's result when run alone under
    the same limits (the weight gradient's sums are ordered by the chunks,
    which the workspace limit sets, so it is compared under the same limits)."""
    monkeypatch.setenv("XPCONV_NUM_THREADS", "16")
    monkeypatch.setattr(_threads, "_cpus", lambda: 16)  # 16 threads even on 2 CPUs
    expected = [_call(*job) for job in JOBS]

    def fresh_pool() -> None:  # each round's calls make and grow the pool anew
        _threads._Pool.executor, _threads._Pool.size = None, 0

    monkeypatch.setattr(_threads._Pool, "executor", None)
    monkeypatch.setattr(_threads._Pool, "size", 0)
    barrier = threading.Barrier(len(JOBS), action=fresh_pool, timeout=60)
    got: list[list[list[np.ndarray]]] = [[] for _ in JOBS]
    failed: list[tuple[int, BaseException]] = []

    def caller(k: int) -> None:
        try:
            for _ in range(ROUNDS):
                barrier.wait()  # all calls of a round start together
                got[k].append(_call(*JOBS[k]))
        except BaseException as exc:  # reported by the test, not lost in the thread
            failed.append((k, exc))
            barrier.abort()

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(len(JOBS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [(k, exc) for k, exc in failed if not isinstance(exc, threading.BrokenBarrierError)]
    assert not errors, f"{len(errors)} of {len(JOBS)} threads failed, first: {errors[0]!r}"
    assert not failed, failed
    for k, rounds in enumerate(got):
        for results in rounds:
            for name, a, b in zip(("y", "dx", "dw", "db"), results, expected[k], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{name} of {JOBS[k]}")
