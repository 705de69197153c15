"""Dask arrays through the core API: xpconv.conv and its backward go block-wise.

``xpconv.conv2d(dask_x, numpy_w)`` must keep Dask's batch chunks (one task per
chunk, as :mod:`xpconv.dask` does) instead of merging them into one block, and
accept NumPy weights next to a Dask input, for every rank, forward and
backward; also on a cluster of real worker processes, where every task is
pickled.
"""

from __future__ import annotations

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import xpconv  # noqa: E402

# (x shape, weight shape, kwargs)
CASES = {
    "signal": ((8, 3, 20), (4, 3, 3), {"stride": 2, "padding": 1}),
    "image": ((8, 4, 9, 7), (6, 2, 3, 2), {"stride": (2, 1), "padding": "same", "groups": 2}),
    "volume": ((6, 2, 5, 4, 6), (3, 2, 2, 3, 2), {"padding": 1}),
}
FUNCTIONS = {1: xpconv.conv1d, 2: xpconv.conv2d, 3: xpconv.conv3d}
BACKWARDS = {1: xpconv.conv1d_backward, 2: xpconv.conv2d_backward, 3: xpconv.conv3d_backward}


def _data(case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    x_shape, w_shape, kw = CASES[case]
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    return x, w, rng.standard_normal(w_shape[0]), kw


def _tasks(*arrays: da.Array) -> int:
    graph: dict = {}
    for a in arrays:
        graph.update(dict(a.__dask_graph__()))
    return len(graph)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("weights", ["numpy", "dask"])
def test_core_functions_go_blockwise(case: str, weights: str) -> None:
    x, w, b, kw = _data(case)
    rank = w.ndim - 2
    dx = da.from_array(x, chunks=(2, *x.shape[1:]))  # 4 (or 3) batch chunks
    wb = (w, b) if weights == "numpy" else (da.from_array(w), da.from_array(b))
    y = FUNCTIONS[rank](dx, *wb, **kw)
    assert isinstance(y, da.Array)
    assert y.chunks[0] == dx.chunks[0]  # the batch chunks are kept
    expected = xpconv.conv(x, w, b, **kw)
    np.testing.assert_allclose(y.compute(), expected, rtol=1e-12, atol=1e-12)
    gy = da.ones(y.shape, chunks=y.chunks)
    grads = BACKWARDS[rank](gy, dx, wb[0], **kw)
    assert grads.input.chunks[0] == dx.chunks[0]
    want = xpconv.conv_backward(np.ones(expected.shape), x, w, **kw)
    for got, exp in zip(dask.compute(*grads), want, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)
    # One task per batch chunk (and a few to sum the parameter gradients), not
    # a graph of tiles over a merged batch.
    n_chunks = len(dx.chunks[0])
    assert _tasks(y) <= 3 * n_chunks + 4


def test_generic_conv_and_unbatched_dask() -> None:
    x, w, b, kw = _data("image")
    dx = da.from_array(x[0], chunks=-1)  # (C, H, W), unbatched
    y = xpconv.conv(dx, w, b, **kw)
    np.testing.assert_allclose(y.compute(), xpconv.conv(x[0], w, b, **kw), rtol=1e-12)


def test_errors_are_the_core_ones() -> None:
    x, w, _, _ = _data("image")
    dx = da.from_array(x, chunks=(2, *x.shape[1:]))
    with pytest.raises(ValueError, match=r"conv3d expects a 5-D weight"):
        xpconv.conv3d(dx, w)
    with pytest.raises(TypeError, match=r"share one dtype"):
        xpconv.conv2d(dx, w.astype(np.float32), groups=2)


@pytest.fixture(scope="module")
def process_client():
    """Two worker processes: every task and array crosses a process boundary, pickled."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as client:
        yield client


@pytest.mark.parametrize("case", ["signal", "volume"])
def test_on_worker_processes(process_client, case: str) -> None:
    x, w, b, kw = _data(case)
    dx = da.from_array(x, chunks=(2, *x.shape[1:]))
    y = xpconv.conv(dx, w, b, **kw)
    grads = xpconv.conv_backward(da.ones(y.shape, chunks=y.chunks), dx, w, **kw)
    got = process_client.compute([y, *grads], sync=True)
    expected = xpconv.conv(x, w, b, **kw)
    want = xpconv.conv_backward(np.ones(expected.shape), x, w, **kw)
    for g, e in zip(got, (expected, *want), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)


def test_limits_in_force_when_built_apply_to_the_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks run after the ``with`` block, on Dask's threads: they get the limits it set."""
    from xpconv import _threads
    from xpconv import dask as xpconv_dask
    from xpconv._workspace import get_workspace_limit

    seen: list[tuple[int | None, int]] = []
    real = xpconv_dask._core_conv

    def spy(*args: object, **kwargs: object) -> object:
        seen.append((get_workspace_limit(), _threads.thread_count()))
        return real(*args, **kwargs)

    monkeypatch.setattr(xpconv_dask, "_core_conv", spy)
    x, w, b, kw = _data("image")
    dx = da.from_array(x, chunks=(2, *x.shape[1:]))
    with xpconv.workspace_limit(4096), xpconv.thread_limit(1):
        y = xpconv.conv2d(dx, w, b, **kw)
    unlimited = xpconv.conv2d(dx, w, b, **kw)
    # The threaded scheduler, even where a distributed Client is the default:
    # the spy lives in this process.
    got, want = dask.compute(y, unlimited, scheduler="threads")
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # The two graphs' tasks interleave: count them, one per batch chunk each.
    chunks = len(dx.chunks[0])
    assert len(seen) == 2 * chunks, seen
    assert seen.count((4096, 1)) == chunks, seen
