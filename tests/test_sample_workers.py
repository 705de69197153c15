"""The im2col passes split by samples across host threads (``Route.workers``).

The split changes where the work runs, never the result: every pass on
every chunking must give the loop reference, the BLAS's thread count must be
what it was afterwards, and only NumPy convolutions large enough to pay for
the threads are split.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import reference as ref
import xpconv
from xpconv import _engine, _threads
from xpconv._engine import forced_route
from xpconv._geometry import conv_geometry

threadpoolctl = pytest.importorskip("threadpoolctl")

CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "padded": ((5, 2, 7, 6), (3, 2, 3, 3), {"padding": (1, 2)}),
    "same": ((4, 3, 6, 6), (2, 3, 3, 3), {"padding": "same"}),  # covering tap, transposed grad
    "strided_dilated": ((3, 2, 11, 10), (3, 2, 3, 2), {"stride": (2, 3), "dilation": (2, 1)}),
    "groups": ((4, 4, 5, 5), (4, 2, 3, 3), {"groups": 2, "padding": 1}),
    "per_sample_signal": ((6, 1, 40), (5, 1, 8), {"stride": 4}),
    "volume": ((3, 2, 5, 4, 6), (3, 2, 2, 3, 2), {"stride": (1, 2, 2), "padding": (1, 0, 1)}),
}


@pytest.fixture
def four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four CPUs for xpconv's threads, whatever this machine has."""
    monkeypatch.delenv("XPCONV_NUM_THREADS", raising=False)
    monkeypatch.setattr(_threads, "_cpus", lambda: 4)


def _blas_threads() -> list[int]:
    return [
        info["num_threads"]
        for info in threadpoolctl.threadpool_info()
        if info["user_api"] == "blas"
    ]


@pytest.mark.usefixtures("four_cpus")
@pytest.mark.parametrize("workers", [2, 3])
@pytest.mark.parametrize("limit", [None, 300], ids=["whole", "bands"])
@pytest.mark.parametrize("case", list(CASES))
def test_split_samples_give_the_reference(case: str, limit: int | None, workers: int) -> None:
    """Forward, input, weight and bias gradients, and the transposed
    convolution, with the samples on 2 or 3 threads (uneven chunks), whole
    or cut into bands by a tiny workspace."""
    x_shape, w_shape, kw = CASES[case]
    rng = np.random.default_rng(3)
    x, w, b = (
        rng.standard_normal(x_shape),
        rng.standard_normal(w_shape),
        rng.standard_normal(w_shape[0]),
    )
    y_ref = ref.conv(x, w, b, **kw)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref, gb_ref = ref.conv_backward(gy, x, w, **kw)
    geom = conv_geometry(x_shape, w_shape, **kw)
    before = _blas_threads()
    with forced_route(workers=workers), xpconv.workspace_limit(limit):
        assert _engine.plan(geom, x).workers == workers
        y = xpconv.conv(x, w, b, **kw)
        grads = xpconv.conv_backward(gy, x, w, **kw, bias=True)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads.input, gx_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads.weight, gw_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grads.bias, gb_ref, rtol=1e-10, atol=1e-12)
    assert _blas_threads() == before


@pytest.mark.usefixtures("four_cpus")
def test_transposed_convolution_splits_too() -> None:
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((5, 4, 6, 7)), rng.standard_normal((4, 3, 3, 3))
    kw = {"stride": 2, "padding": 1, "output_padding": 1}
    expected = ref.conv_transpose(x, w, **kw)
    with forced_route(workers=2):
        got = xpconv.conv_transpose(x, w, **kw)
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.usefixtures("four_cpus")
def test_who_splits() -> None:
    """NumPy convolutions large enough, on as many threads as xpconv and the
    BLAS allow and the batch has; never a small one, a depthwise one or one
    on another library."""
    big = conv_geometry((8, 64, 32, 32), (64, 64, 3, 3), padding=1)
    like = np.zeros(1)
    blas = _threads.blas_threads()
    assert _engine.plan(big, like).workers == max(1, min(4, blas))
    with xpconv.thread_limit(1):
        assert _engine.plan(big, like).workers == 1
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert _engine.plan(big, like).workers == 1
    few = conv_geometry((2, 64, 64, 64), (64, 64, 3, 3), padding=1)
    assert _engine.plan(few, like).workers == max(1, min(2, blas))
    small = conv_geometry((64, 1, 28, 28), (32, 1, 3, 3), padding=1)  # the MNIST layer
    assert _engine.plan(small, like).workers == 1
    depthwise = conv_geometry((8, 64, 32, 32), (64, 1, 3, 3), padding=1, groups=64)
    assert _engine.plan(depthwise, like).workers == 1
    assert _engine.plan(big, like.astype(np.float32)).kernel == "gemm"


def test_other_libraries_are_not_split(backend: Any) -> None:
    geom = conv_geometry((8, 64, 32, 32), (64, 64, 3, 3), padding=1)
    like = backend.asarray(np.zeros(1))
    with forced_route(workers=4):
        route = _engine.plan(geom, like)
    if backend.backend.value != "numpy":
        assert route.workers == 1


@pytest.mark.usefixtures("four_cpus")
def test_blas_threads_restored_after_an_error_and_across_threads() -> None:
    """A failing worker and callers on several threads at once leave the
    BLAS's thread count as they found it."""
    before = _blas_threads()
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((6, 3, 12, 12)), rng.standard_normal((4, 3, 3, 3))

    def fail(chunk: slice, route: Any) -> None:
        msg = "boom"
        raise RuntimeError(msg)

    route = _engine.plan(conv_geometry(x.shape, w.shape), x)
    route = replace(route, workers=2)
    with pytest.raises(RuntimeError, match="boom"):
        _engine._on_workers(route, fail)
    assert _blas_threads() == before

    expected = ref.conv(x, w)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            for _ in range(5):
                with forced_route(workers=2):
                    np.testing.assert_allclose(xpconv.conv(x, w), expected, rtol=1e-10)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _blas_threads() == before


@pytest.mark.usefixtures("four_cpus")
def test_workers_run_on_a_one_thread_blas_and_split_no_further() -> None:
    x = np.zeros((6, 3, 12, 12))
    route = replace(_engine.plan(conv_geometry(x.shape, (4, 3, 3, 3)), x), workers=3)
    seen = _engine._on_workers(
        route, lambda chunk, sub: (chunk, sub.geom.batch, _blas_threads(), _threads.thread_count())
    )
    assert [s[:2] for s in seen] == [(slice(0, 2), 2), (slice(2, 4), 2), (slice(4, 6), 2)]
    assert all(blas == [1] * len(blas) and threads == 1 for *_, blas, threads in seen)
