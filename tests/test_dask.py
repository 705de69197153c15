"""xpconv.dask: block-wise conv2d and backward on a 2-worker distributed cluster.

Results must equal xpconv on NumPy (itself tested against PyTorch), stay lazy
until computed, keep the input's batch chunks, and build a task graph whose
size grows linearly with the number of batch chunks.
"""

from __future__ import annotations

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import xpconv  # noqa: E402
import xpconv.dask  # noqa: E402

# (x shape, weight shape, stride, padding, dilation, groups)
CASES = [
    ((8, 3, 9, 9), (4, 3, 3, 3), 1, 0, 1, 1),
    ((8, 4, 9, 7), (6, 2, 3, 2), (2, 1), (1, 2), 1, 2),
    ((6, 4, 10, 10), (4, 1, 3, 3), 2, "same", 1, 4),
    ((6, 2, 9, 8), (3, 2, 3, 3), 1, "same", (2, 1), 1),
]


@pytest.fixture(scope="module")
def client():
    """An in-process LocalCluster with 2 single-threaded workers.

    ``processes=False`` starts in a fraction of a second and does not depend
    on free ports for worker dashboards; the client still pickles the graph
    it submits, so the block functions travel as they would between machines.
    """
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def _args(case):
    _, _, stride, padding, dilation, groups = case
    return {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def _data(case, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x_shape, w_shape = case[0], case[1]
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, w, b


def _graph_size(*arrays):
    graph = {}
    for a in arrays:
        graph.update(dict(a.__dask_graph__()))
    return len(graph)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_and_backward_equal_numpy(client, case):
    x, w, b = _data(case)
    kwargs = _args(case)
    dx = da.from_array(x, chunks=(2, -1, -1, -1))
    y = xpconv.dask.conv2d(dx, w, b, **kwargs)
    expected = xpconv.conv2d(x, w, b, **kwargs)
    assert y.shape == expected.shape
    assert y.dtype == expected.dtype
    assert y.chunks[0] == dx.chunks[0]
    np.testing.assert_allclose(y.compute(), expected, rtol=1e-12, atol=1e-12)

    gy = np.random.default_rng(1).standard_normal(expected.shape)
    grads = xpconv.dask.conv2d_backward(da.from_array(gy, chunks=(2, -1, -1, -1)), dx, w, **kwargs)
    assert grads.input.chunks == dx.chunks
    computed = dask.compute(*grads)
    for got, want in zip(computed, xpconv.conv2d_backward(gy, x, w, **kwargs), strict=True):
        assert isinstance(got, np.ndarray)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_float32_and_dask_parameters(client):
    x, w, b = _data(CASES[1], dtype=np.float32)
    kwargs = _args(CASES[1])
    dx = da.from_array(x, chunks=(3, -1, -1, -1))
    y = xpconv.dask.conv2d(dx, da.from_array(w, chunks=2), da.from_array(b, chunks=2), **kwargs)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.compute(), xpconv.conv2d(x, w, b, **kwargs), rtol=1e-5, atol=1e-5)


def test_channel_and_spatial_chunks_are_merged_per_batch_chunk(client):
    x, w, b = _data(CASES[0])
    dx = da.from_array(x, chunks=(2, 1, 4, 5))
    y = xpconv.dask.conv2d(dx, w, b)
    assert y.chunks[0] == (2, 2, 2, 2)
    assert all(len(c) == 1 for c in y.chunks[1:])
    np.testing.assert_allclose(y.compute(), xpconv.conv2d(x, w, b), rtol=1e-12)


def test_unbatched_and_no_bias(client):
    x, w, _ = _data(CASES[0])
    dx = da.from_array(x[0])
    y = xpconv.dask.conv2d(dx, w, padding=1)
    np.testing.assert_allclose(y.compute(), xpconv.conv2d(x[0], w, padding=1), rtol=1e-12)
    gy = np.ones(y.shape)
    grads = xpconv.dask.conv2d_backward(da.from_array(gy), dx, w, padding=1, bias=False)
    assert grads.bias is None
    want = xpconv.conv2d_backward(gy, x[0], w, padding=1, bias=False)
    gx, gw = dask.compute(grads.input, grads.weight)
    np.testing.assert_allclose(gx, want.input, rtol=1e-12)
    np.testing.assert_allclose(gw, want.weight, rtol=1e-12)


def test_lazy_until_compute(client):
    """Building the graph runs no task on the cluster; compute runs one per chunk and layer."""
    x, w, b = _data(CASES[0])
    dx = da.from_array(x, chunks=(2, -1, -1, -1))
    with distributed.get_task_stream(client) as built:
        y = xpconv.dask.conv2d(dx, w, b)
        grads = xpconv.dask.conv2d_backward(da.ones_like(y), dx, w)
    assert built.data == []
    with distributed.get_task_stream(client) as ran:
        dask.compute(y, *grads)
    names = [t["key"][0] if isinstance(t["key"], tuple) else t["key"] for t in ran.data]
    assert sum(n.startswith("xpconv-forward-") for n in names) == 4
    assert sum(n.startswith("xpconv-backward-") for n in names) == 4


def test_graph_grows_linearly_with_batch_chunks():
    x, w, b = _data(((16, 3, 8, 8), (4, 3, 3, 3), 1, 0, 1, 1))

    def sizes(n_chunks):
        dx = da.from_array(x, chunks=(16 // n_chunks, -1, -1, -1))
        y = xpconv.dask.conv2d(dx, w, b, padding=1)
        grads = xpconv.dask.conv2d_backward(da.ones_like(y), dx, w, padding=1)
        assert y.chunks[0] == dx.chunks[0]
        return _graph_size(y), _graph_size(*grads)

    (f2, _), (f4, b4), (f8, b8), (f16, b16) = (sizes(n) for n in (2, 4, 8, 16))
    # Forward: the same tasks for every chunk (an input block and a conv block).
    assert (f4 - f2) / 2 == (f8 - f4) / 4 == (f16 - f8) / 8 == 2
    # Backward: per-chunk tasks plus a tree reduction of the weight/bias
    # gradients, so doubling the chunks at most doubles the graph (plus a level).
    for small, big in ((b4, b8), (b8, b16)):
        assert 1.5 * small <= big <= 2 * small + 4
    assert b16 <= 10 * 16


def test_layer_forward_backward_step(client):
    """BlockwiseConv2d runs an xpconv.Conv2d (NumPy parameters) on Dask input."""
    x, _, _ = _data(CASES[1])
    layer = xpconv.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), groups=2, rng=0)
    twin = xpconv.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), groups=2, rng=0)
    wrapped = xpconv.dask.BlockwiseConv2d(layer)
    dx = da.from_array(x, chunks=(2, -1, -1, -1))
    y = wrapped(dx)
    y_ref = twin(x)
    np.testing.assert_allclose(y.compute(), y_ref, rtol=1e-12)
    gx = wrapped.backward(y * 2.0)
    gx_ref = twin.backward(y_ref * 2.0)
    np.testing.assert_allclose(gx.compute(), gx_ref, rtol=1e-12, atol=1e-12)
    wrapped.step(0.1)
    twin.step(0.1)
    assert isinstance(layer.weight, np.ndarray)
    np.testing.assert_allclose(layer.weight, twin.weight, rtol=1e-12)
    np.testing.assert_allclose(layer.bias, twin.bias, rtol=1e-12)


def test_errors():
    x, w, b = _data(CASES[0])
    dx = da.from_array(x, chunks=(2, -1, -1, -1))
    with pytest.raises(TypeError, match="x must be a dask"):
        xpconv.dask.conv2d(x, w)
    with pytest.raises(TypeError, match="dtype"):
        xpconv.dask.conv2d(dx, w.astype(np.float32))
    with pytest.raises(TypeError, match="floating dtype"):
        xpconv.dask.conv2d(dx.astype(np.int64), w.astype(np.int64))
    with pytest.raises(ValueError, match="bias"):
        xpconv.dask.conv2d(dx, w, b[:2])
    with pytest.raises(ValueError, match="stride"):
        xpconv.dask.conv2d(dx, w, stride=0)
    with pytest.raises(ValueError, match="4-D"):
        xpconv.dask.conv2d(dx[0, 0], w)
    with pytest.raises(ValueError, match="grad_output"):
        xpconv.dask.conv2d_backward(dx, dx, w)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="one array library"):
        xpconv.dask.conv2d(dx, torch.asarray(w))
    with pytest.raises(RuntimeError, match="forward"):
        xpconv.dask.BlockwiseConv2d(xpconv.Conv2d(3, 4, 3)).backward(dx)


# ----------------------------------------------------------------- generic core path on Dask


def test_core_conv2d_on_dask_arrays(client):
    """xpconv.conv2d itself accepts all-Dask inputs (lazily; it may merge batch chunks)."""
    x, w, b = _data(CASES[1])
    kwargs = _args(CASES[1])
    dx, dw, db = da.from_array(x, chunks=(2, -1, -1, -1)), da.from_array(w), da.from_array(b)
    y = xpconv.conv2d(dx, dw, db, **kwargs)
    assert isinstance(y, da.Array)
    np.testing.assert_allclose(y.compute(), xpconv.conv2d(x, w, b, **kwargs), rtol=1e-12)
    grads = xpconv.conv2d_backward(da.ones_like(y), dx, dw, **kwargs)
    want = xpconv.conv2d_backward(np.ones(y.shape), x, w, **kwargs)
    for got, exp in zip(dask.compute(*grads), want, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------- any rank: conv1d, conv3d, conv

# (forward, backward, x shape, weight shape, conv arguments)
ND_CASES = [
    (
        "conv1d",
        "conv1d_backward",
        (6, 4, 11),
        (6, 2, 3),
        {"stride": 2, "padding": "same", "groups": 2},
    ),
    ("conv3d", "conv3d_backward", (6, 2, 5, 4, 3), (3, 2, 2, 3, 2), {"padding": (1, 0, 1)}),
    (
        "conv",
        "conv_backward",
        (4, 2, 3, 4, 3, 3),
        (2, 1, 2, 2, 1, 2),
        {"dilation": (1, 2, 1, 1), "groups": 2},
    ),
]


@pytest.mark.parametrize("case", ND_CASES, ids=lambda c: c[0])
def test_nd_forward_and_backward_equal_numpy(client, case):
    forward, backward, x_shape, w_shape, kwargs = case
    rng = np.random.default_rng(2)
    x, w, b = (rng.standard_normal(s) for s in (x_shape, w_shape, w_shape[:1]))
    chunks = (2, *(-1,) * (len(x_shape) - 1))
    dx = da.from_array(x, chunks=chunks)
    y = getattr(xpconv.dask, forward)(dx, w, b, **kwargs)
    expected = getattr(xpconv, forward)(x, w, b, **kwargs)
    assert isinstance(y, da.Array)
    assert y.shape == expected.shape
    assert y.chunks[0] == dx.chunks[0]
    np.testing.assert_allclose(y.compute(), expected, rtol=1e-12, atol=1e-12)

    gy = rng.standard_normal(expected.shape)
    grads = getattr(xpconv.dask, backward)(da.from_array(gy, chunks=chunks), dx, w, **kwargs)
    assert grads.input.chunks == dx.chunks
    want = getattr(xpconv, backward)(gy, x, w, **kwargs)
    for got, exp in zip(dask.compute(*grads), want, strict=True):
        assert isinstance(got, np.ndarray)
        assert got.shape == exp.shape
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)


def test_nd_spatial_chunks_merged_and_unbatched(client):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((4, 2, 4, 5, 3)), rng.standard_normal((3, 2, 2, 2, 2))
    dx = da.from_array(x, chunks=(1, 1, 2, 3, 3))
    y = xpconv.dask.conv3d(dx, w, stride=(1, 2, 1))
    assert y.chunks[0] == (1, 1, 1, 1)
    assert all(len(c) == 1 for c in y.chunks[1:])
    np.testing.assert_allclose(y.compute(), xpconv.conv3d(x, w, stride=(1, 2, 1)), rtol=1e-12)
    y1 = xpconv.dask.conv3d(da.from_array(x[0]), w, padding=1)
    np.testing.assert_allclose(y1.compute(), xpconv.conv3d(x[0], w, padding=1), rtol=1e-12)
    gy = np.ones(y1.shape)
    grads = xpconv.dask.conv3d_backward(da.from_array(gy), da.from_array(x[0]), w, padding=1)
    want = xpconv.conv3d_backward(gy, x[0], w, padding=1)
    for got, exp in zip(dask.compute(*grads), want, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)


def test_nd_layer_through_blockwise_conv(client):
    """BlockwiseConv runs an xpconv.Conv1d like the NumPy layer."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3, 10))
    layer, twin = (xpconv.Conv1d(3, 4, 3, stride=2, padding="same", rng=0) for _ in range(2))
    wrapped = xpconv.dask.BlockwiseConv(layer)
    y = wrapped(da.from_array(x, chunks=(2, -1, -1)))
    y_ref = twin(x)
    np.testing.assert_allclose(y.compute(), y_ref, rtol=1e-12)
    gx = wrapped.backward(y * 2.0)
    np.testing.assert_allclose(gx.compute(), twin.backward(y_ref * 2.0), rtol=1e-12, atol=1e-12)
    wrapped.step(0.1)
    twin.step(0.1)
    np.testing.assert_allclose(layer.weight, twin.weight, rtol=1e-12)
    np.testing.assert_allclose(layer.bias, twin.bias, rtol=1e-12)


def test_nd_errors():
    x = da.from_array(np.ones((2, 3, 5, 5, 5)), chunks=(1, -1, -1, -1, -1))
    w = np.ones((4, 3, 3, 3, 3))
    with pytest.raises(ValueError, match=r"^conv1d expects a 3-D weight"):
        xpconv.dask.conv1d(x, w)
    with pytest.raises(ValueError, match=r"^conv1d_backward expects a 3-D weight"):
        xpconv.dask.conv1d_backward(x, x, w)
    with pytest.raises(ValueError, match=r"^stride must be an int or a tuple of 3 ints"):
        xpconv.dask.conv3d(x, w, stride=(1, 2))
    with pytest.raises(ValueError, match=r"grad_output must have the convolution's output shape"):
        xpconv.dask.conv3d_backward(x, x, w)
    with pytest.raises(ValueError, match=r"^x must be 4-D \(N, C, H, W\) for xpconv.dask"):
        xpconv.dask.conv(x, np.ones((4, 3, 2, 2)))
