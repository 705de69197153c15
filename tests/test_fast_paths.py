"""Backend fast paths in xpconv._backend give exactly what the generic array-API code gives."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import reference as ref
import xpconv
from xpconv import _backend, _engine
from xpconv._engine import forced_route
from xpconv._geometry import conv_geometry
from xpconv._im2col import _stacked_windows, im2col, im2col_gemm, pad_input, pad_region
from xpconv._tiles import plan_tiles

GEOMETRIES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "plain": ((2, 3, 6, 5), (4, 3, 3, 3), {}),
    "padded": ((3, 2, 5, 6), (2, 2, 3, 3), {"padding": (1, 2)}),
    "strided_dilated": (
        (2, 2, 11, 10),
        (3, 2, 3, 2),
        {"stride": (2, 3), "dilation": (2, 1), "padding": 1},
    ),
    "kernel1x1": ((2, 4, 3, 5), (2, 4, 1, 1), {}),
    "groups": ((2, 4, 5, 5), (4, 2, 3, 3), {"groups": 2, "padding": 1}),
    "signal": ((2, 3, 13), (2, 3, 4), {"stride": 3, "dilation": 2, "padding": 2}),
    "volume": ((2, 2, 5, 4, 6), (3, 2, 2, 3, 2), {"stride": (1, 2, 2), "padding": (1, 0, 1)}),
    "rank4": ((1, 2, 3, 4, 3, 4), (2, 2, 2, 2, 1, 2), {"stride": (1, 1, 2, 1), "padding": 1}),
}


def _geometry(case: str) -> Any:
    x_shape, w_shape, kw = GEOMETRIES[case]
    return x_shape, conv_geometry(x_shape, w_shape, **kw)


def _generic_cols(padded: Any, geom: Any, xp: Any) -> Any:
    stacked = _stacked_windows(padded, geom, xp)
    return xp.reshape(stacked, (geom.column_rows, -1))


@pytest.mark.parametrize("case", list(GEOMETRIES))
@pytest.mark.parametrize("with_buffer", [False, True])
def test_window_copy_equals_stacked_slices(backend: Any, case: str, with_buffer: bool) -> None:
    x_shape, geom = _geometry(case)
    xp = backend.xp
    x = backend.asarray(np.random.default_rng(0).standard_normal(x_shape))
    padded = pad_input(x, geom, xp)
    expected = backend.to_numpy(_generic_cols(padded, geom, xp))
    size = expected.size
    buf = _backend.workspace_buffer(x, size + 7)
    fast = _backend.window_copy(padded, geom, buf if with_buffer else None)
    if fast is None:  # no fast path on this backend: the generic code is what runs
        assert buf is None
        got = im2col_gemm(padded, geom, xp, out=buf)
    else:
        got = fast
        assert tuple(fast.shape) == expected.shape
    np.testing.assert_array_equal(backend.to_numpy(got), expected)


def test_window_copy_writes_into_the_buffer() -> None:
    _, geom = _geometry("strided_dilated")
    x = np.random.default_rng(1).standard_normal(GEOMETRIES["strided_dilated"][0])
    padded = pad_input(x, geom, np)
    buf = np.full(10_000, np.nan)
    cols = _backend.window_copy(padded, geom, buf)
    assert cols is not None
    assert np.shares_memory(cols, buf)
    np.testing.assert_array_equal(cols, _generic_cols(padded, geom, np))


def test_window_copy_ignores_unusable_buffers() -> None:
    _, geom = _geometry("plain")
    x = np.random.default_rng(2).standard_normal(GEOMETRIES["plain"][0])
    expected = _generic_cols(x, geom, np)
    for buf in (np.empty(3), np.empty(10_000, dtype=np.float32), np.empty((100, 100))):
        cols = _backend.window_copy(x, geom, buf)
        assert cols is not None
        assert not np.shares_memory(cols, buf)
        np.testing.assert_array_equal(cols, expected)


@pytest.mark.parametrize("case", ["padded", "strided_dilated", "signal", "volume"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_window_copy_on_a_tile_view(backend: Any, case: str, dtype: str) -> None:
    """The fast path reads a tile (a band of samples and rows: a non-contiguous
    view of the padded input) correctly, with the tile's own geometry."""
    x_shape, geom = _geometry(case)
    xp = backend.xp
    x = backend.asarray(np.random.default_rng(3).standard_normal(x_shape), dtype)
    padded = pad_input(x, geom, xp)
    bands = list(plan_tiles(geom, 1, limit=1))  # one output row of one sample each
    tile = bands[len(bands) - 1]
    view = padded[tile.batch, :, tile.rows, ...]
    expected = backend.to_numpy(_generic_cols(view, tile.geom, xp))
    fast = _backend.window_copy(view, tile.geom, _backend.workspace_buffer(x, 10_000))
    if fast is None:  # only NumPy and CuPy have this fast path
        assert str(backend) not in ("numpy", "cupy")
        return
    np.testing.assert_array_equal(backend.to_numpy(fast), expected)


def test_window_copy_with_huge_strides() -> None:
    """An axis of one output position is never stepped along: a stride of
    2**60 must not overflow the strided view (it did, in as_strided)."""
    x = np.random.default_rng(4).standard_normal((2, 3, 5, 6))
    w = np.random.default_rng(5).standard_normal((2, 3, 2, 2))
    y = xpconv.conv2d(x, w, stride=2**60)
    np.testing.assert_allclose(y, ref.conv(x, w, stride=2**60), rtol=1e-12)
    grads = xpconv.conv2d_backward(np.ones_like(y), x, w, stride=(2**60, 2**59), dilation=2)
    expected = ref.conv_backward(np.ones_like(y), x, w, stride=(2**60, 2**59), dilation=2)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_gemm_order_matches_unfold(backend: Any) -> None:
    """GEMM-order columns are unfold's (N, C*K, L) columns with the batch moved."""
    x_shape, geom = _geometry("volume")
    xp = backend.xp
    x = backend.asarray(np.random.default_rng(4).standard_normal(x_shape))
    cols = backend.to_numpy(
        im2col_gemm(pad_input(x, geom, xp), geom, xp, out=_backend.workspace_buffer(x, 10**4))
    )
    per_sample = backend.to_numpy(im2col(x, geom, xp))  # (N, CKK, L)
    np.testing.assert_array_equal(cols, per_sample.transpose(1, 0, 2).reshape(cols.shape))


def _shares_memory(a: Any, b: Any) -> bool:
    """np.shares_memory for NumPy or CuPy arrays (a host copy would share nothing)."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        return bool(cupy.shares_memory(a, b))
    return bool(np.shares_memory(a, b))


@pytest.mark.parametrize(
    "shapes", [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)), ((1, 6, 2), (1, 2, 7))]
)
@pytest.mark.parametrize("transpose_a", [False, True])
def test_matmul_into_equals_matmul(backend: Any, shapes: Any, transpose_a: bool) -> None:
    xp = backend.xp
    rng = np.random.default_rng(5)
    a_np, b_np = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    a = backend.asarray(np.swapaxes(a_np, -1, -2).copy()) if transpose_a else backend.asarray(a_np)
    if transpose_a:
        a = xp.matrix_transpose(a)
    b = backend.asarray(b_np)
    buf = _backend.workspace_buffer(a, 500)
    out = _backend.matmul_into(a, b, buf)
    np.testing.assert_allclose(backend.to_numpy(out), a_np @ b_np, rtol=1e-12)
    if buf is not None:
        assert _shares_memory(out, buf)


def test_matmul_into_falls_back_without_room() -> None:
    a, b = np.ones((3, 4)), np.ones((4, 5))
    for buf in (None, np.empty(5), np.empty(100, dtype=np.float32)):
        out = _backend.matmul_into(a, b, buf)
        np.testing.assert_array_equal(out, np.full((3, 5), 4.0))
        assert buf is None or not np.shares_memory(out, buf)


def test_contiguous(backend: Any) -> None:
    xp = backend.xp
    x = backend.asarray(np.arange(24.0).reshape(2, 3, 4))
    t = xp.permute_dims(x, (2, 0, 1))
    c = _backend.contiguous(t)
    np.testing.assert_array_equal(backend.to_numpy(c), backend.to_numpy(t))
    if isinstance(c, np.ndarray):
        assert c.flags.c_contiguous


def test_set_into(backend: Any) -> None:
    xp = backend.xp
    out = xp.zeros((2, 3), dtype=xp.float64, device=backend.device)
    out = _backend.set_into(out, (slice(0, 1), slice(None)), backend.asarray(np.ones((1, 3))))
    np.testing.assert_array_equal(backend.to_numpy(out), [[1, 1, 1], [0, 0, 0]])


# (x shape, weight shape, kwargs): grouped, and one group with many column rows
# (one GEMM over the batch), add the bias on their own; one group with few rows
# (per-sample product) folds it into the products on NumPy and CuPy.
AGREE_CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "groups": ((3, 4, 8, 7), (6, 2, 3, 3), {"stride": (2, 1), "padding": 1, "groups": 2}),
    "per_sample_product": ((3, 4, 8, 7), (6, 4, 3, 3), {"stride": (2, 1), "padding": 1}),
    "one_gemm": ((2, 24, 6, 5), (5, 24, 3, 3), {"padding": 1, "dilation": (1, 2)}),
    "signal": ((3, 4, 17), (5, 4, 3), {"stride": 2, "padding": "same"}),
    "volume": ((2, 3, 5, 6, 4), (4, 3, 3, 2, 3), {"padding": 1, "dilation": (1, 2, 1)}),
}


def _conv_and_grads(x: Any, w: Any, b: Any, xp: Any, limit: int | None, **kw: Any) -> tuple:
    with xpconv.workspace_limit(limit):
        y = xpconv.conv(x, w, b, **kw)
        return (y, *xpconv.conv_backward(xp.sin(y), x, w, **kw))


def _inputs(backend: Any, case: str, dtype: str, seed: int) -> tuple[Any, Any, Any]:
    x_shape, w_shape, _ = AGREE_CASES[case]
    rng = np.random.default_rng(seed)
    shapes = (x_shape, w_shape, w_shape[:1])
    x, w, b = (backend.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes)
    return x, w, b


@pytest.mark.parametrize("case", list(AGREE_CASES))
@pytest.mark.parametrize("limit", [None, 2048], ids=["whole", "tiled"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fast_and_generic_convolutions_agree(
    backend: Any, case: str, limit: int | None, dtype: str
) -> None:
    """conv and conv_backward, bias included, give the same numbers without
    the native buffers and strided copies (the generic array-API code)."""
    x, w, b = _inputs(backend, case, dtype, 6)
    kw = AGREE_CASES[case][2]
    fast = _conv_and_grads(x, w, b, backend.xp, limit, **kw)
    with forced_route(scratch=False):
        generic = _conv_and_grads(x, w, b, backend.xp, limit, **kw)
    for f, g in zip(fast, generic, strict=True):
        ref.assert_routes_agree(backend, f, g, dtype)


@pytest.mark.parametrize("case", ["per_sample_product", "signal"])
@pytest.mark.parametrize("limit", [None, 2048], ids=["whole", "bands"])
def test_per_sample_and_single_gemm_routes_agree(
    backend: Any, case: str, limit: int | None
) -> None:
    """Layers with few column rows multiply sample by sample in both passes
    (the backward pass on grad_output as it is); the one-GEMM route gives the
    same numbers, whole or in bands of output rows (2048 bytes: one row each)."""
    x_shape, w_shape, kw = AGREE_CASES[case]
    geom = conv_geometry(x_shape, w_shape, **kw)
    assert _engine.plan(geom, np.zeros(1)).per_sample
    x, w, b = _inputs(backend, case, "float64", 9)
    by_sample = _conv_and_grads(x, w, b, backend.xp, limit, **kw)
    with forced_route(per_sample=False):
        assert not _engine.plan(geom, np.zeros(1)).per_sample
        one_gemm = _conv_and_grads(x, w, b, backend.xp, limit, **kw)
    for a, b_ in zip(by_sample, one_gemm, strict=True):
        ref.assert_routes_agree(backend, a, b_, "float64")


def test_bias_is_folded_where_a_buffer_exists() -> None:
    """On NumPy the bias rides in the per-sample products (so the tests above
    compare two routes); the array-API code adds it on its own."""
    folds = {}
    for case, (x_shape, w_shape, kw) in AGREE_CASES.items():
        geom = conv_geometry(x_shape, w_shape, **kw)
        folds[case] = _engine.plan(geom, np.zeros(1)).fold_bias
        with forced_route(scratch=False):
            assert not _engine.plan(geom, np.zeros(1)).fold_bias
    expected = {"groups": False, "per_sample_product": True, "one_gemm": False}
    assert folds == {**expected, "signal": True, "volume": True}


@pytest.mark.parametrize("case", ["plain", "strided_dilated", "groups", "volume"])
@pytest.mark.parametrize("with_buffer", [False, True])
def test_ones_row_columns(backend: Any, case: str, with_buffer: bool) -> None:
    """im2col_gemm(ones_row=True) is the columns with a row of ones below, on every route."""
    x_shape, geom = _geometry(case)
    xp = backend.xp
    x = backend.asarray(np.random.default_rng(7).standard_normal(x_shape))
    padded = pad_input(x, geom, xp)
    plain = backend.to_numpy(_generic_cols(padded, geom, xp))
    expected = np.concatenate([plain, np.ones((1, plain.shape[1]))])
    buf = _backend.workspace_buffer(x, expected.size + 3) if with_buffer else None
    if buf is not None:
        buf[...] = float("nan")  # stale values must not leak into the ones row
    got = im2col_gemm(padded, geom, xp, out=buf, ones_row=True)
    np.testing.assert_array_equal(backend.to_numpy(got), expected)


# Stride-1 geometries where the input gradient's padding is negative (cropped),
# asymmetric ('same' with an even kernel), dilated or grouped.
STRIDE1_CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "pad_beyond_kernel": ((2, 3, 4, 5), (2, 3, 3, 2), {"padding": (3, 2)}),
    "same_even_kernel": ((2, 3, 6, 7), (3, 3, 4, 2), {"padding": "same"}),
    "dilated_groups": ((2, 4, 9, 8), (4, 2, 3, 3), {"dilation": (2, 3), "groups": 2, "padding": 1}),
    "kernel1x1_padded": ((2, 3, 3, 4), (2, 3, 1, 1), {"padding": 2}),
    "more_outputs": ((2, 2, 6, 6), (5, 2, 3, 3), {"padding": 1}),
    "signal_same_even": ((2, 3, 9), (3, 3, 4), {"padding": "same", "dilation": 2}),
    "volume_cropped": ((1, 3, 3, 4, 5), (2, 3, 2, 3, 2), {"padding": (2, 0, 3)}),
}


@pytest.mark.parametrize("case", list(STRIDE1_CASES))
def test_stride1_input_grad_equals_col2im_route(backend: Any, case: str) -> None:
    """The stride-1 input gradient (a transposed convolution of grad_output)
    equals the col2im route and the float64 loop reference."""
    x_shape, w_shape, kw = STRIDE1_CASES[case]
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    gy = rng.standard_normal(ref.conv(x, w, **kw).shape)
    gx_ref, _, _ = ref.conv_backward(gy, x, w, **kw)
    geom = conv_geometry(x_shape, w_shape, **kw)
    gyb, xb, wb = backend.asarray(gy), backend.asarray(x), backend.asarray(w)
    routes = {}
    for by in ("transposed", "col2im"):
        with forced_route(input_grad_by=by):
            route = _engine.plan(geom, xb)
            routes[route.input_grad_by] = _engine.input_grad(gyb, wb, route, backend.xp)
    assert set(routes) == {"transposed", "col2im"}
    for got in routes.values():
        ref.assert_close(backend, got, gx_ref, like=gyb)


@pytest.mark.parametrize("per_sample", [True, False], ids=["per-sample", "one-gemm"])
@pytest.mark.parametrize("limit", [None, 200], ids=["one-tile", "row-bands"])
@pytest.mark.parametrize("case", ["plain", "padded", "strided_dilated", "signal", "volume"])
def test_forward_product_orders_agree(
    backend: Any, case: str, limit: int | None, per_sample: bool
) -> None:
    """The per-sample product and the single GEMM give the reference output,
    whole or cut into bands of rows by a tiny workspace."""
    x_shape, w_shape, kw = GEOMETRIES[case]
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    expected = ref.conv(x, w, b, **kw)
    geom = conv_geometry(x_shape, w_shape, **kw)
    with forced_route(per_sample=per_sample), xpconv.workspace_limit(limit):
        assert _engine.plan(geom, np.zeros(1)).per_sample is per_sample
        got = xpconv.conv(*(backend.asarray(a) for a in (x, w, b)), **kw)
    ref.assert_close(backend, got, expected, like=backend.asarray(x))


@pytest.mark.parametrize("limit", [None, 100], ids=["one-chunk", "chunked"])
@pytest.mark.parametrize("kernel", ["pointwise", "gemm"])
@pytest.mark.parametrize(
    ("x_shape", "rank"),
    [((3, 5, 3, 4), 2), ((5, 3, 4), 2), ((3, 5, 7), 1), ((2, 5, 2, 3, 2), 3)],
    ids=["image", "unbatched-image", "signal", "volume"],
)
def test_pointwise_kernel_equals_im2col_route(
    backend: Any, limit: int | None, kernel: str, x_shape: tuple[int, ...], rank: int
) -> None:
    """A 1x1..., stride-1, unpadded conv skips im2col; it gives the reference
    results, as the im2col route does, whole or with the weight gradient
    summed over batch chunks."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(x_shape)
    w, b = rng.standard_normal((6, 5, *(1,) * rank)), rng.standard_normal(6)
    y_ref = ref.conv(x, w, b)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref, gb_ref = ref.conv_backward(gy, x, w)
    batched = x if len(x_shape) == rank + 2 else x[None]
    geom = conv_geometry(batched.shape, w.shape)
    xb, wb, bb, gyb = (backend.asarray(a) for a in (x, w, b, gy))
    forced = {} if kernel == "pointwise" else {"kernel": "gemm"}
    with forced_route(**forced), xpconv.workspace_limit(limit):
        assert _engine.plan(geom, np.zeros(1)).kernel == kernel
        y = xpconv.conv(xb, wb, bb)
        grads = xpconv.conv_backward(gyb, xb, wb, bias=True)
    ref.assert_close(backend, y, y_ref, like=xb)
    ref.assert_close(backend, grads.input, gx_ref, like=xb)
    ref.assert_close(backend, grads.weight, gw_ref, like=xb)
    ref.assert_close(backend, grads.bias, gb_ref, like=xb)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kw"),
    [
        ((1, 2, 3, 3), (2, 3, 1, 1), {"dilation": 2, "output_padding": 1}),
        ((2, 4, 4, 3), (4, 1, 1, 1), {"dilation": 3, "output_padding": 2, "groups": 2}),
        ((1, 3, 4, 5), (3, 2, 3, 3), {"dilation": 2, "output_padding": 1, "padding": 1}),
        ((2, 4, 3, 4), (4, 3, 2, 3), {"dilation": (3, 2), "output_padding": (2, 1), "groups": 2}),
        ((2, 2, 3), (2, 3, 1), {"dilation": 2, "output_padding": 1}),
        ((1, 2, 2, 3, 2), (2, 2, 2, 1, 2), {"dilation": 3, "output_padding": (1, 2, 0)}),
    ],
    ids=["1x1", "1x1-groups", "3x3-padded", "groups", "signal-1", "volume"],
)
def test_stride1_conv_transpose_with_output_padding(
    backend: Any, x_shape: tuple, w_shape: tuple, kw: dict
) -> None:
    """Stride 1 with dilation allows output_padding: positions of the output
    that no input position reaches. The pointwise and transposed-convolution
    routes must leave them zero."""
    rng = np.random.default_rng(13)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    expected = ref.conv_transpose(x, w, **kw)
    got = xpconv.conv_transpose(backend.asarray(x), backend.asarray(w), **kw)
    ref.assert_close(backend, got, expected, like=backend.asarray(x))


PADS = {
    "2d": ((1, 1), (1, 1)),
    "2d-asymmetric": ((0, 2), (3, 0)),
    "2d-none": ((0, 0), (0, 0)),
    "1d": ((2, 1),),
    "3d": ((1, 0), (0, 2), (1, 1)),
}


@pytest.mark.parametrize("pads", list(PADS))
@pytest.mark.parametrize("tail", [0, 5])
def test_padded_rows_equal_pad_and_concat(backend: Any, pads: str, tail: int) -> None:
    """The padded rows of the shifted-plane kernels and of pad_region, written
    into a buffer that held stale values, equal numpy.pad + a zero tail per
    row; a channel-major (permuted) view works."""
    pairs = PADS[pads]
    sizes = (4, 5, 3)[: len(pairs)]
    x_np = np.random.default_rng(8).standard_normal((3, 2, *sizes))
    planes = np.moveaxis(x_np, 1, 0)
    padded = np.pad(planes, ((0, 0), (0, 0), *pairs)).reshape(2, -1)
    expected = np.concatenate([padded, np.zeros((2, tail))], axis=1)
    axes = (1, 0, *range(2, x_np.ndim))
    x = backend.xp.permute_dims(backend.asarray(x_np), axes)
    buf = _backend.workspace_buffer(x, expected.size + 4)
    if buf is not None:
        buf[...] = float("nan")  # stale values must not leak into the borders or the tails
    got = _backend.padded_rows(x, pairs, tail, buf)
    if buf is None:  # no buffer on this backend: the kernels pad and concatenate
        assert got is None
        return
    assert got is not None
    assert _shares_memory(got, buf)
    np.testing.assert_array_equal(backend.to_numpy(got), expected)


def test_padded_rows_decline_unusable_buffers() -> None:
    x = np.ones((2, 1, 3, 3))
    for buf in (None, np.empty(3), np.empty(100, dtype=np.float32), np.empty((10, 10))):
        assert _backend.padded_rows(x, ((1, 1), (1, 1)), 2, buf) is None


@pytest.mark.parametrize(
    ("x_shape", "padding", "rows", "in_buffer"),
    [
        ((3, 2, 5, 4), (2, 1), slice(0, 9), True),  # every row: top and bottom padding
        ((3, 2, 5, 4), (2, 1), slice(0, 2), False),  # only top padding rows: plain zeros
        ((3, 2, 5, 4), (2, 1), slice(1, 4), True),  # across the top edge
        ((3, 2, 5, 4), (2, 1), slice(3, 6), True),  # inside x: left and right padding only
        ((3, 2, 5, 4), (2, 1), slice(6, 9), True),  # across the bottom edge and only padding below
        ((3, 2, 5, 4), (4, 0), slice(9, 13), False),  # the bottom padding alone: plain zeros
        ((3, 2, 5, 4), (0, 0), slice(1, 4), False),  # no padding: a view of x
        ((3, 2, 7), (2,), slice(1, 6), True),  # a signal: the band and its padding
        ((3, 2, 4, 3, 5), (1, 2, 0), slice(2, 5), True),  # a volume: a band of slices
    ],
    ids=str,
)
def test_pad_region_equals_a_slice_of_the_padded_input(
    backend: Any, x_shape: tuple[int, ...], padding: Any, rows: slice, in_buffer: bool
) -> None:
    """A tile's rows padded on their own (into a buffer holding stale values
    where the backend has one) equal the same rows of the whole padded input."""
    x_np = np.random.default_rng(9).standard_normal(x_shape)
    rank = len(x_shape) - 2
    geom = conv_geometry(x_np.shape, (2, 2, *(3,) * rank), padding=padding)
    x = backend.asarray(x_np)
    tile = next(iter(plan_tiles(geom, 1, limit=None)))
    tile = replace(tile, batch=slice(1, 3), rows=rows)
    expected = backend.to_numpy(pad_input(x, geom, backend.xp))[1:3, :, rows]
    buf = _backend.workspace_buffer(x, expected.size + 3)
    if buf is not None:
        buf[...] = float("nan")
    got = pad_region(x, geom, tile, backend.xp, out=buf)
    np.testing.assert_array_equal(backend.to_numpy(got), expected)
    if buf is not None:
        assert _shares_memory(got, buf) == in_buffer
