"""Backend fast paths in xpconv._backend give exactly what the generic array-API code gives."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import reference as ref
import xpconv
from xpconv import _backend, functional
from xpconv._geometry import conv_geometry
from xpconv._im2col import _stacked_windows, im2col, im2col_gemm, pad_input, pad_region

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
}


def _geometry(case: str) -> Any:
    x_shape, w_shape, kw = GEOMETRIES[case]
    return x_shape, conv_geometry(x_shape, w_shape, **kw)


def _generic_cols(padded: Any, geom: Any, xp: Any) -> Any:
    stacked = _stacked_windows(padded, geom, xp)
    return xp.reshape(stacked, (geom.in_channels * geom.kernel_area, -1))


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
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
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


@pytest.mark.parametrize("case", ["padded", "strided_dilated"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_window_copy_on_a_batch_chunk_view(backend: Any, case: str, dtype: str) -> None:
    """The fast path reads a sliced (non-contiguous) chunk of the padded input correctly."""
    x_shape, geom = _geometry(case)
    xp = backend.xp
    x = backend.asarray(np.random.default_rng(3).standard_normal(x_shape), dtype)
    padded = pad_input(x, geom, xp)
    sh, dh, kh = geom.stride[0], geom.dilation[0], geom.kernel_hw[0]
    sub = replace(geom, batch=2, out_hw=(2, geom.out_hw[1]))
    last_two = slice(geom.batch - 2, geom.batch)
    view = padded[last_two, :, sh : sh + sh + dh * (kh - 1) + 1, :]  # output rows 1 and 2
    expected = backend.to_numpy(_generic_cols(view, sub, xp))
    fast = _backend.window_copy(view, sub, _backend.workspace_buffer(x, 10_000))
    if fast is None:  # only NumPy and CuPy have this fast path
        assert str(backend) not in ("numpy", "cupy")
        return
    np.testing.assert_array_equal(backend.to_numpy(fast), expected)


def test_gemm_order_matches_unfold(backend: Any) -> None:
    """GEMM-order columns are unfold's (N, C*KH*KW, L) columns with the batch moved."""
    x_shape, geom = _geometry("strided_dilated")
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
}


@pytest.mark.parametrize("case", list(AGREE_CASES))
@pytest.mark.parametrize("limit", [None, 2048], ids=["whole", "tiled"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_fast_and_generic_convolutions_agree(
    backend: Any, case: str, limit: int | None, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conv2d and conv2d_backward, bias included, give the same numbers without the fast paths."""
    x_shape, w_shape, kw = AGREE_CASES[case]
    rng = np.random.default_rng(6)
    x, w, b = (
        backend.asarray(rng.standard_normal(shape), dtype=dtype)
        for shape in (x_shape, w_shape, w_shape[:1])
    )

    def run() -> tuple[Any, ...]:
        with xpconv.workspace_limit(limit):
            y = xpconv.conv2d(x, w, b, **kw)
            return (y, *xpconv.conv2d_backward(xp.sin(y), x, w, **kw))

    xp = backend.xp
    fast = run()
    monkeypatch.setattr("xpconv._im2col.window_copy", lambda *a, **k: None)
    monkeypatch.setattr("xpconv.functional.workspace_buffer", lambda *a, **k: None)
    generic = run()
    for f, g in zip(fast, generic, strict=True):
        ref.assert_routes_agree(backend, f, g, dtype)


@pytest.mark.parametrize("limit", [None, 2048], ids=["whole", "bands"])
def test_per_sample_and_single_gemm_routes_agree(
    backend: Any, limit: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layers with few column rows multiply sample by sample in both passes
    (the backward pass on grad_output as it is); the one-GEMM route gives the
    same numbers, whole or in bands of output rows (2048 bytes: one row each)."""
    x_shape, w_shape, kw = AGREE_CASES["per_sample_product"]
    geom = conv_geometry(x_shape, w_shape, **kw)
    assert functional._per_sample_product(geom)
    rng = np.random.default_rng(9)
    x, w, b = (backend.asarray(rng.standard_normal(s)) for s in (x_shape, w_shape, w_shape[:1]))

    def run() -> tuple[Any, ...]:
        with xpconv.workspace_limit(limit):
            y = xpconv.conv2d(x, w, b, **kw)
            return (y, *xpconv.conv2d_backward(backend.xp.sin(y), x, w, **kw))

    by_sample = run()
    monkeypatch.setattr(functional, "_per_sample_product", lambda geom: False)
    one_gemm = run()
    for a, b_ in zip(by_sample, one_gemm, strict=True):
        ref.assert_routes_agree(backend, a, b_, "float64")


def test_bias_is_folded_where_a_buffer_exists() -> None:
    """On NumPy the bias rides in the products (so the test above compares two routes)."""
    folds = {
        case: functional._folds_bias(conv_geometry(x_shape, w_shape, **kw), np.zeros(x_shape))
        for case, (x_shape, w_shape, kw) in AGREE_CASES.items()
    }
    assert folds == {"groups": False, "per_sample_product": True, "one_gemm": False}


@pytest.mark.parametrize("case", ["plain", "strided_dilated", "groups"])
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
}


@pytest.mark.parametrize("case", list(STRIDE1_CASES))
def test_stride1_input_grad_equals_col2im_route(
    backend: Any, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stride-1 input gradient (a convolution of grad_output) equals the
    generic col2im route and the float64 loop reference."""
    x_shape, w_shape, kw = STRIDE1_CASES[case]
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y_ref = ref.conv2d(x, w, None, **kw)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, _, _ = ref.conv2d_backward(gy, x, w, **kw)
    geom = conv_geometry(x_shape, w_shape, **kw)
    gyb, wb = backend.asarray(gy), backend.asarray(w)
    shortcut = functional._stride1_input_grad(gyb, wb, geom, backend.xp)
    monkeypatch.setattr(functional, "_input_grad_by_convolution", lambda geom: False)
    via_col2im, _, _ = functional.conv2d_grads(gyb, None, wb, geom, backend.xp, weight_grad=False)
    ref.assert_close(backend, shortcut, gx_ref, like=gyb)
    ref.assert_close(backend, via_col2im, gx_ref, like=gyb)


@pytest.mark.parametrize("per_sample", [True, False], ids=["per-sample", "one-gemm"])
@pytest.mark.parametrize("limit", [None, 200], ids=["one-tile", "row-bands"])
@pytest.mark.parametrize("case", ["plain", "padded", "strided_dilated"])
def test_forward_product_orders_agree(
    backend: Any, case: str, limit: int | None, per_sample: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-sample product and the single GEMM give the reference output,
    whole or cut into bands of rows by a tiny workspace."""
    from xpconv import functional

    monkeypatch.setattr(functional, "PER_SAMPLE_MAX_ROWS", 10**9 if per_sample else 0)
    chosen: list[bool] = []
    original = functional._per_sample_product

    def spy(geom: Any) -> bool:
        chosen.append(original(geom))
        return chosen[-1]

    monkeypatch.setattr(functional, "_per_sample_product", spy)
    x_shape, w_shape, kw = GEOMETRIES[case]
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    expected = ref.conv2d(x, w, b, **kw)
    with xpconv.workspace_limit(limit):
        got = xpconv.conv2d(*(backend.asarray(a) for a in (x, w, b)), **kw)
    ref.assert_close(backend, got, expected, like=backend.asarray(x))
    assert chosen, "conv2d_forward did not ask which product to use"
    assert set(chosen) == {per_sample}


@pytest.mark.parametrize("limit", [None, 100], ids=["one-chunk", "chunked"])
@pytest.mark.parametrize("shortcut", [True, False], ids=["pointwise", "im2col"])
@pytest.mark.parametrize("unbatched", [False, True], ids=["4d", "3d"])
def test_pointwise_shortcut_equals_im2col_route(
    backend: Any,
    limit: int | None,
    shortcut: bool,
    unbatched: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 1x1, stride-1, unpadded conv skips im2col; it gives the reference
    results, as the im2col route does, whole or with the weight gradient
    summed over batch chunks."""
    from xpconv import functional

    taken: list[bool] = []
    original = functional._is_pointwise

    def spy(geom: Any) -> bool:
        taken.append(original(geom))
        return taken[-1] and shortcut

    monkeypatch.setattr(functional, "_is_pointwise", spy)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 5, 3, 4))
    w, b = rng.standard_normal((6, 5, 1, 1)), rng.standard_normal(6)
    y_ref = ref.conv2d(x, w, b)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref, gb_ref = ref.conv2d_backward(gy, x, w)
    if unbatched:  # the first sample alone, as (C, H, W)
        x, gy, y_ref = x[0], gy[0], y_ref[0]
        gx_ref, gw_ref, gb_ref = ref.conv2d_backward(gy[None], x[None], w)
        gx_ref = gx_ref[0]
    xb, wb, bb, gyb = (backend.asarray(a) for a in (x, w, b, gy))
    with xpconv.workspace_limit(limit):
        y = xpconv.conv2d(xb, wb, bb)
        grads = xpconv.conv2d_backward(gyb, xb, wb, bias=True)
    ref.assert_close(backend, y, y_ref, like=xb)
    ref.assert_close(backend, grads.input, gx_ref, like=xb)
    ref.assert_close(backend, grads.weight, gw_ref, like=xb)
    ref.assert_close(backend, grads.bias, gb_ref, like=xb)
    assert taken
    assert all(taken)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kw"),
    [
        ((1, 2, 3, 3), (2, 3, 1, 1), {"dilation": 2, "output_padding": 1}),
        ((2, 4, 4, 3), (4, 1, 1, 1), {"dilation": 3, "output_padding": 2, "groups": 2}),
        ((1, 3, 4, 5), (3, 2, 3, 3), {"dilation": 2, "output_padding": 1, "padding": 1}),
        ((2, 4, 3, 4), (4, 3, 2, 3), {"dilation": (3, 2), "output_padding": (2, 1), "groups": 2}),
    ],
    ids=["1x1", "1x1-groups", "3x3-padded", "groups"],
)
def test_stride1_conv_transpose_with_output_padding(
    backend: Any, x_shape: tuple, w_shape: tuple, kw: dict
) -> None:
    """Stride 1 with dilation allows output_padding: rows of the output that no
    input pixel reaches. The 1x1 and stride-1 shortcuts must leave them zero."""
    rng = np.random.default_rng(13)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    expected = ref.conv_transpose2d(x, w, **kw)
    got = xpconv.conv_transpose2d(backend.asarray(x), backend.asarray(w), **kw)
    ref.assert_close(backend, got, expected, like=backend.asarray(x))


@pytest.mark.parametrize("pads", [(1, 1, 1, 1), (0, 2, 3, 0), (0, 0, 0, 0)], ids=str)
@pytest.mark.parametrize("tail", [0, 5])
def test_padded_rows_equal_pad_and_concat(backend: Any, pads: Any, tail: int) -> None:
    """The shifted-plane kernels' padded rows, written into a buffer that held
    stale values, equal numpy.pad + a zero tail per row; a channel-major (permuted) view works."""
    x_np = np.random.default_rng(8).standard_normal((3, 2, 4, 5))
    top, bottom, left, right = pads
    planes = np.transpose(x_np, (1, 0, 2, 3))
    padded = np.pad(planes, ((0, 0), (0, 0), (top, bottom), (left, right))).reshape(2, -1)
    expected = np.concatenate([padded, np.zeros((2, tail))], axis=1)
    x = backend.xp.permute_dims(backend.asarray(x_np), (1, 0, 2, 3))
    buf = _backend.workspace_buffer(x, expected.size + 4)
    if buf is not None:
        buf[...] = float("nan")  # stale values must not leak into the borders or the tails
    got = _backend.padded_rows(x, pads, tail, buf)
    if buf is None:  # no buffer on this backend: the kernels pad and concatenate
        assert got is None
        return
    assert got is not None
    assert _shares_memory(got, buf)
    np.testing.assert_array_equal(backend.to_numpy(got), expected)


def test_padded_rows_decline_unusable_buffers() -> None:
    x = np.ones((2, 1, 3, 3))
    for buf in (None, np.empty(3), np.empty(100, dtype=np.float32), np.empty((10, 10))):
        assert _backend.padded_rows(x, (1, 1, 1, 1), 2, buf) is None


@pytest.mark.parametrize(
    ("padding", "rows", "in_buffer"),
    [
        ((2, 1), slice(0, 9), True),  # every row: top and bottom padding
        ((2, 1), slice(0, 2), False),  # only top padding rows: plain zeros
        ((2, 1), slice(1, 4), True),  # across the top edge
        ((2, 1), slice(3, 6), True),  # inside x: left and right padding only
        ((2, 1), slice(6, 9), True),  # across the bottom edge and only padding below
        ((4, 0), slice(9, 13), False),  # the bottom padding alone: plain zeros
        ((0, 0), slice(1, 4), False),  # no padding: a view of x
    ],
    ids=str,
)
def test_pad_region_equals_a_slice_of_the_padded_input(
    backend: Any, padding: Any, rows: slice, in_buffer: bool
) -> None:
    """A chunk's rows padded on their own (into a buffer holding stale values
    where the backend has one) equal the same rows of the whole padded input."""
    x_np = np.random.default_rng(9).standard_normal((3, 2, 5, 4))
    geom = conv_geometry(x_np.shape, (2, 2, 3, 3), padding=padding)
    x = backend.asarray(x_np)
    key = (slice(1, 3), slice(None), rows, slice(None))
    expected = backend.to_numpy(pad_input(x, geom, backend.xp))[key]
    buf = _backend.workspace_buffer(x, expected.size + 3)
    if buf is not None:
        buf[...] = float("nan")
    got = pad_region(x, geom, key, backend.xp, out=buf)
    np.testing.assert_array_equal(backend.to_numpy(got), expected)
    if buf is not None:
        assert _shares_memory(got, buf) == in_buffer
