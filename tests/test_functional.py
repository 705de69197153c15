"""Fixed cases of every public function against the loop reference and PyTorch, on every backend."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import reference as ref
import xpconv
from reference import assert_close, thin
from xpconv._geometry import conv_geometry
from xpconv._im2col import col2im

DTYPES = ["float64", "float32"]

# (input shape, weight shape, keyword arguments): one feature per case.
CONV_CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "plain": ((2, 3, 6, 5), (4, 3, 3, 3), {}),
    "stride2": ((2, 2, 7, 7), (3, 2, 3, 3), {"stride": 2}),
    "stride_pair": ((1, 2, 8, 7), (2, 2, 2, 3), {"stride": (2, 3)}),
    "padding_pair": ((2, 2, 5, 6), (3, 2, 3, 2), {"padding": (1, 2)}),
    "same_s1": ((2, 2, 5, 6), (3, 2, 3, 4), {"padding": "same"}),
    "same_s2": ((1, 2, 7, 6), (3, 2, 3, 2), {"padding": "same", "stride": 2}),
    "same_s3_dil": (
        (1, 1, 8, 7),
        (2, 1, 2, 3),
        {"padding": "same", "stride": (3, 2), "dilation": 2},
    ),
    "valid": ((2, 1, 6, 6), (2, 1, 4, 3), {"padding": "valid"}),
    "dilation": ((1, 2, 8, 8), (2, 2, 3, 3), {"dilation": (2, 3), "padding": 1}),
    "groups": ((2, 4, 5, 5), (6, 2, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
    "depthwise": ((2, 3, 6, 5), (6, 1, 3, 3), {"groups": 3, "padding": 1}),
    "kernel1x1": ((2, 3, 4, 5), (5, 3, 1, 1), {}),
    "kernel1x1_stride": ((1, 3, 5, 5), (2, 3, 1, 1), {"stride": 2, "padding": 1}),
    "kernel_equals_input": ((3, 2, 3, 4), (2, 2, 3, 4), {}),
    "unbatched": ((2, 5, 6), (3, 2, 3, 3), {"padding": 1}),
    "unbatched_same_s2": ((3, 5, 4), (3, 1, 2, 2), {"padding": "same", "stride": 2, "groups": 3}),
}

TRANSPOSE_CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "plain": ((2, 3, 4, 5), (3, 2, 3, 3), {}),
    "stride2_outpad": ((1, 2, 3, 4), (2, 3, 3, 2), {"stride": 2, "output_padding": 1}),
    "stride_pair_padding": (
        (2, 2, 4, 3),
        (2, 2, 3, 3),
        {"stride": (2, 3), "padding": (1, 2), "output_padding": (1, 2)},
    ),
    "dilation_outpad": ((1, 2, 3, 3), (2, 1, 2, 2), {"dilation": 3, "output_padding": 2}),
    "groups": ((2, 4, 3, 3), (4, 3, 2, 3), {"groups": 2, "stride": 2, "padding": 1}),
    "depthwise": ((1, 3, 4, 4), (3, 1, 3, 3), {"groups": 3, "padding": 1}),
    "kernel1x1": ((2, 3, 3, 2), (3, 4, 1, 1), {"stride": 2}),
    "unbatched": ((3, 4, 4), (3, 2, 2, 2), {"stride": 2}),
}

# The subsets that also run on the slow backends (see reference.thin).
SLOW_CONV = ["same_s3_dil", "groups", "unbatched"]
SLOW_TRANSPOSE = ["stride_pair_padding", "groups", "unbatched"]
SLOW_WINDOW = ["nonsquare", "dilation", "unbatched"]

WINDOW_CASES: dict[str, tuple[tuple[int, ...], Any, dict[str, Any]]] = {
    "plain": ((2, 3, 5, 4), 2, {}),
    "nonsquare": ((1, 2, 6, 5), (3, 2), {"stride": (2, 1), "padding": (1, 0)}),
    "dilation": ((2, 1, 7, 7), 3, {"dilation": (2, 3), "padding": 2}),
    "stride_gt_kernel": ((1, 2, 7, 8), (2, 1), {"stride": 3}),
    "kernel1x1": ((2, 3, 3, 4), 1, {}),
    "unbatched": ((2, 5, 5), 3, {"stride": 2, "padding": 1}),
}


def _data(shape: tuple[int, ...], seed: int, dtype: str = "float64") -> np.ndarray:
    """Random data, rounded to ``dtype`` and returned as float64 (the exact oracle input)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(dtype).astype(np.float64)


def _conv_problem(
    case: str, dtype: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    xs, ws, kw = CONV_CASES[case]
    return _data(xs, 1, dtype), _data(ws, 2, dtype), _data(ws[:1], 3, dtype), kw


def _unchanged(backend: Any, arrays: dict[str, Any], copies: dict[str, np.ndarray]) -> None:
    for name, a in arrays.items():
        np.testing.assert_array_equal(backend.to_numpy(a), copies[name], err_msg=f"{name} modified")


# --------------------------------------------------------------------------- conv2d


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(CONV_CASES, SLOW_CONV))
def test_conv2d_matches_reference(backend: Any, case: str, dtype: str) -> None:
    x, w, b, kw = _conv_problem(case, dtype)
    xb, wb, bb = (backend.asarray(a, dtype) for a in (x, w, b))
    y = xpconv.conv2d(xb, wb, bb, **kw)
    assert_close(backend, y, ref.conv2d(x, w, b, **kw), like=xb)
    _unchanged(backend, {"x": xb, "weight": wb, "bias": bb}, {"x": x, "weight": w, "bias": b})


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float32"]))
@pytest.mark.parametrize("case", thin(CONV_CASES, SLOW_CONV))
def test_conv2d_matches_torch(backend: Any, case: str, dtype: str) -> None:
    pytest.importorskip("torch")
    x, w, b, kw = _conv_problem(case, dtype)
    xb, wb, bb = (backend.asarray(a, dtype) for a in (x, w, b))
    assert_close(backend, xpconv.conv2d(xb, wb, bb, **kw), ref.torch_conv2d(x, w, b, **kw), like=xb)
    assert_close(backend, xpconv.conv2d(xb, wb, **kw), ref.torch_conv2d(x, w, None, **kw), like=xb)


@pytest.mark.parametrize("case", ["same_s1", "dilation", "depthwise"])
def test_same_padding_stride1_is_torch_same(backend: Any, case: str) -> None:
    """For stride 1, 'same' is exactly torch's own padding='same'."""
    torch = pytest.importorskip("torch")
    x, w, b, kw = _conv_problem(case, "float64")
    kw = {**kw, "padding": "same"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns about even kernels
        expected = torch.nn.functional.conv2d(
            torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **kw
        ).numpy()
    xb, wb, bb = (backend.asarray(a) for a in (x, w, b))
    y = xpconv.conv2d(xb, wb, bb, **kw)
    assert tuple(y.shape) == (*x.shape[:1], w.shape[0], *x.shape[2:])
    assert_close(backend, y, expected, like=xb)


@pytest.mark.parametrize(
    ("hw", "kernel", "stride", "out"),
    [((7, 6), (3, 2), 2, (4, 3)), ((5, 5), (1, 4), 3, (2, 2)), ((8, 1), (5, 1), (4, 1), (2, 1))],
)
def test_same_padding_output_is_ceil(
    backend: Any, hw: tuple, kernel: tuple, stride: Any, out: tuple
) -> None:
    """'same' output size is ceil(size / stride) for any stride (TensorFlow/JAX rule)."""
    x = _data((1, 1, *hw), 0)
    w = _data((1, 1, *kernel), 1)
    xb, wb = backend.asarray(x), backend.asarray(w)
    y = xpconv.conv2d(xb, wb, padding="same", stride=stride)
    assert tuple(y.shape) == (1, 1, *out)
    assert_close(backend, y, ref.conv2d(x, w, padding="same", stride=stride), like=xb)


def test_conv2d_hand_computed(backend: Any) -> None:
    """A result worked out by hand: 2x2 box filter, stride 2, on arange(16)."""
    x = backend.asarray(np.arange(16.0).reshape(1, 1, 4, 4))
    w = backend.asarray(np.ones((1, 1, 2, 2)))
    y = xpconv.conv2d(x, w, backend.asarray(np.array([0.5])), stride=2)
    assert_close(backend, y, np.array([[[[10.5, 18.5], [42.5, 50.5]]]]), like=x)


# --------------------------------------------------------------------------- conv2d_backward


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(CONV_CASES, SLOW_CONV))
def test_conv2d_backward_matches_torch_and_reference(backend: Any, case: str, dtype: str) -> None:
    x, w, _, kw = _conv_problem(case, dtype)
    y_shape = ref.conv2d(x, w, **kw).shape
    gy = _data(y_shape, 4, dtype)
    oracles = [ref.conv2d_backward(gy, x, w, **kw)]
    if _have_torch():
        oracles.append(ref.torch_conv2d_grads(gy, x, w, **kw))
    gyb, xb, wb = (backend.asarray(a, dtype) for a in (gy, x, w))
    grads = xpconv.conv2d_backward(gyb, xb, wb, **kw)
    assert isinstance(grads, xpconv.Conv2dGradients)
    assert grads._fields == ("input", "weight", "bias")
    for gx, gw, gb in oracles:
        assert_close(backend, grads.input, gx, like=xb)
        assert_close(backend, grads.weight, gw, like=xb)
        assert_close(backend, grads.bias, gb, like=xb)
    _unchanged(
        backend,
        {"grad_output": gyb, "x": xb, "weight": wb},
        {"grad_output": gy, "x": x, "weight": w},
    )
    no_bias = xpconv.conv2d_backward(gyb, xb, wb, bias=False, **kw)
    assert no_bias.bias is None
    assert_close(backend, no_bias.weight, oracles[0][1], like=xb)


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(
    "case",
    thin(
        [c for c, (_, _, kw) in CONV_CASES.items() if not isinstance(kw.get("padding"), str)],
        SLOW_CONV,
    ),
)
def test_conv_transpose2d_is_input_gradient(backend: Any, case: str) -> None:
    """conv_transpose2d(g, W) == conv2d_backward(g, x, W).input for the matching x."""
    x, w, _, kw = _conv_problem(case, "float64")
    gy = _data(ref.conv2d(x, w, **kw).shape, 4)
    gyb, xb, wb = (backend.asarray(a) for a in (gy, x, w))
    gx = xpconv.conv2d_backward(gyb, xb, wb, **kw).input
    # output_padding picks, among the input sizes that give this output size, the one of x.
    stride = ref._pair(kw.get("stride", 1))
    pad = ref._pair(kw.get("padding", 0))
    dil = ref._pair(kw.get("dilation", 1))
    out_pad = tuple(
        x.shape[-2 + a]
        + 2 * pad[a]
        - ((gy.shape[-2 + a] - 1) * stride[a] + dil[a] * (w.shape[-2 + a] - 1) + 1)
        for a in range(2)
    )
    t_kw = {k: v for k, v in kw.items() if k in ("stride", "padding", "dilation", "groups")}
    yt = xpconv.conv_transpose2d(gyb, wb, output_padding=out_pad, **t_kw)
    assert_close(backend, yt, backend.to_numpy(gx), like=gyb)
    assert_close(backend, yt, ref.conv2d_backward(gy, x, w, **kw)[0], like=gyb)


# --------------------------------------------------------------------------- conv_transpose2d


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(TRANSPOSE_CASES, SLOW_TRANSPOSE))
def test_conv_transpose2d_matches_torch_and_reference(backend: Any, case: str, dtype: str) -> None:
    xs, ws, kw = TRANSPOSE_CASES[case]
    groups = kw.get("groups", 1)
    x, w, b = _data(xs, 5, dtype), _data(ws, 6, dtype), _data((ws[1] * groups,), 7, dtype)
    xb, wb, bb = (backend.asarray(a, dtype) for a in (x, w, b))
    y = xpconv.conv_transpose2d(xb, wb, bb, **kw)
    assert_close(backend, y, ref.conv_transpose2d(x, w, b, **kw), like=xb)
    if _have_torch():
        assert_close(backend, y, ref.torch_conv_transpose2d(x, w, b, **kw), like=xb)
        y0 = xpconv.conv_transpose2d(xb, wb, **kw)
        assert_close(backend, y0, ref.torch_conv_transpose2d(x, w, None, **kw), like=xb)
    _unchanged(backend, {"x": xb, "weight": wb, "bias": bb}, {"x": x, "weight": w, "bias": b})


def test_conv_transpose2d_hand_computed(backend: Any) -> None:
    x = backend.asarray(np.ones((1, 1, 2, 2)))
    w = backend.asarray(np.array([[[[1.0, 10.0], [100.0, 1000.0]]]]))
    y = xpconv.conv_transpose2d(x, w, stride=2)
    expected = np.array([[1.0, 10.0, 1.0, 10.0], [100.0, 1000.0, 100.0, 1000.0]] * 2)
    assert_close(backend, y, expected[None, None], like=x)


# --------------------------------------------------------------------------- unfold / fold


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(WINDOW_CASES, SLOW_WINDOW))
def test_unfold_matches_torch_and_reference(backend: Any, case: str, dtype: str) -> None:
    xs, k, kw = WINDOW_CASES[case]
    x = _data(xs, 8, dtype)
    xb = backend.asarray(x, dtype)
    cols = xpconv.unfold(xb, k, **kw)
    assert_close(backend, cols, ref.unfold(x, k, **kw), like=xb)
    if _have_torch():
        assert_close(backend, cols, ref.torch_unfold(x, k, **kw), like=xb)
    _unchanged(backend, {"x": xb}, {"x": x})


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(WINDOW_CASES, SLOW_WINDOW))
def test_fold_matches_torch_and_reference(backend: Any, case: str, dtype: str) -> None:
    xs, k, kw = WINDOW_CASES[case]
    out_size = xs[-2:]
    shape = ref.unfold(np.zeros(xs), k, **kw).shape
    c = _data(shape, 9, dtype)
    cb = backend.asarray(c, dtype)
    img = xpconv.fold(cb, out_size, k, **kw)
    assert_close(backend, img, ref.fold(c, out_size, k, **kw), like=cb)
    if _have_torch():
        assert_close(backend, img, ref.torch_fold(c, out_size, k, **kw), like=cb)
    _unchanged(backend, {"cols": cb}, {"cols": c})


@pytest.mark.parametrize("case", thin(WINDOW_CASES, SLOW_WINDOW))
def test_unfold_fold_adjoint(backend: Any, case: str) -> None:
    """sum(unfold(x) * c) == sum(x * fold(c)): fold is the adjoint of unfold."""
    xs, k, kw = WINDOW_CASES[case]
    x = _data(xs, 10)
    c = _data(ref.unfold(x, k, **kw).shape, 11)
    xb, cb = backend.asarray(x), backend.asarray(c)
    lhs = float(np.sum(backend.to_numpy(xpconv.unfold(xb, k, **kw)) * c))
    rhs = float(np.sum(x * backend.to_numpy(xpconv.fold(cb, xs[-2:], k, **kw))))
    assert lhs == pytest.approx(rhs, rel=1e-12)
    # fold(unfold(ones)) counts how many windows cover each pixel.
    ones = backend.asarray(np.ones(xs))
    counts = xpconv.fold(xpconv.unfold(ones, k, **kw), xs[-2:], k, **kw)
    assert_close(
        backend, counts, ref.fold(ref.unfold(np.ones(xs), k, **kw), xs[-2:], k, **kw), like=ones
    )


def test_unfold_hand_computed(backend: Any) -> None:
    x = backend.asarray(np.arange(9.0).reshape(1, 1, 3, 3))
    expected = np.array([[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]], dtype=float)
    assert_close(backend, xpconv.unfold(x, 2), expected[None], like=x)


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize(
    "case", thin(["plain", "stride2", "padding_pair", "same_s2", "dilation", "groups"], ["same_s2"])
)
def test_col2im_scatter_equals_slices(backend: Any, case: str, dtype: str) -> None:
    """The 'scatter' col2im (native scatter-add) and the 'slices' col2im agree exactly."""
    xs, ws, kw = CONV_CASES[case]
    geom = conv_geometry(xs, ws, **kw)
    rows = geom.in_channels * geom.kernel_volume
    c = _data((geom.batch, rows, geom.out_volume), 12, dtype)
    cb = backend.asarray(c, dtype)
    by_slices = col2im(cb, geom, backend.xp, strategy="slices")
    by_scatter = col2im(cb, geom, backend.xp, strategy="scatter")
    # The oracle: fold with the geometry's padding (symmetric cases) or by definition.
    (top, bottom), (left, right) = geom.pad
    if top == bottom and left == right:
        expected = ref.fold(
            c,
            geom.in_size,
            geom.kernel,
            stride=geom.stride,
            padding=(top, left),
            dilation=geom.dilation,
        )
        assert_close(backend, by_slices, expected, like=cb)
    assert_close(backend, by_scatter, backend.to_numpy(by_slices), like=cb)
    _unchanged(backend, {"cols": cb}, {"cols": c})


def test_col2im_unknown_strategy(backend: Any) -> None:
    geom = conv_geometry((1, 1, 3, 3), (1, 1, 2, 2))
    cols = backend.asarray(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="strategy must be 'slices' or 'scatter', got 'atomic'"):
        col2im(cols, geom, backend.xp, strategy="atomic")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- xp= argument


def test_explicit_xp_argument(backend: Any) -> None:
    x, w, b, kw = _conv_problem("groups", "float64")
    xb, wb, bb = (backend.asarray(a) for a in (x, w, b))
    y = xpconv.conv2d(xb, wb, bb, xp=backend.xp, **kw)
    assert_close(backend, y, ref.conv2d(x, w, b, **kw), like=xb)
    cols = xpconv.unfold(xb, 2, xp=backend.xp)
    assert_close(backend, cols, ref.unfold(x, 2), like=xb)


# --------------------------------------------------------------------------- memory layouts


def test_non_contiguous_inputs(backend: Any) -> None:
    """Transposed and strided views (NumPy/torch) give the same results as fresh arrays."""
    xp = backend.xp
    big = _data((2, 4, 11, 12), 13)
    x = big[:, :, ::2, 1::2]
    w = _data((6, 2, 3, 2), 14)
    xv = backend.asarray(big)[:, :, ::2, 1::2]
    wv = xp.permute_dims(
        backend.asarray(np.ascontiguousarray(w.transpose(0, 1, 3, 2))), (0, 1, 3, 2)
    )
    kw = {"stride": (1, 2), "padding": "same", "groups": 2}
    y = xpconv.conv2d(xv, wv, **kw)
    assert_close(backend, y, ref.conv2d(x, w, **kw), like=xv)
    gy = _data(tuple(y.shape), 15)
    gyv = xp.permute_dims(
        backend.asarray(np.ascontiguousarray(gy.transpose(1, 0, 2, 3))), (1, 0, 2, 3)
    )
    grads = xpconv.conv2d_backward(gyv, xv, wv, **kw)
    for got, want in zip(grads, ref.conv2d_backward(gy, x, w, **kw), strict=True):
        assert_close(backend, got, want, like=xv)
    cols = xpconv.unfold(xv, (2, 3), stride=2, dilation=(2, 1))
    assert_close(backend, cols, ref.unfold(x, (2, 3), stride=2, dilation=(2, 1)), like=xv)
    np.testing.assert_array_equal(backend.to_numpy(xv), x)


def test_read_only_numpy_inputs() -> None:
    x, w, b, kw = _conv_problem("groups", "float64")
    for a in (x, w, b):
        a.flags.writeable = False
    y = xpconv.conv2d(x, w, b, **kw)
    np.testing.assert_allclose(y, ref.conv2d(x, w, b, **kw), rtol=1e-12, atol=1e-12)
    gy = _data(y.shape, 16)
    gy.flags.writeable = False
    grads = xpconv.conv2d_backward(gy, x, w, **kw)
    np.testing.assert_allclose(
        grads.input, ref.conv2d_backward(gy, x, w, **kw)[0], rtol=1e-12, atol=1e-12
    )
    cols = xpconv.unfold(x, 2)
    cols.flags.writeable = False
    assert xpconv.fold(cols, x.shape[-2:], 2).shape == x.shape


def test_results_do_not_alias_scratch_buffers(backend: Any) -> None:
    """A result stays valid after later calls (no view into a reused workspace buffer)."""
    x1, w, b, kw = _conv_problem("same_s2", "float64")
    x2 = _data(x1.shape, 17)
    xb1, xb2, wb, bb = (backend.asarray(a) for a in (x1, x2, w, b))
    y1 = xpconv.conv2d(xb1, wb, bb, **kw)
    c1 = xpconv.unfold(xb1, 2)
    g1 = xpconv.conv2d_backward(y1, xb1, wb, **kw)
    y2 = xpconv.conv2d(xb2, wb, bb, **kw)
    xpconv.unfold(xb2, 2)
    xpconv.conv2d_backward(y2, xb2, wb, **kw)
    assert_close(backend, y1, ref.conv2d(x1, w, b, **kw), like=xb1)
    assert_close(backend, c1, ref.unfold(x1, 2), like=xb1)
    expected = ref.conv2d_backward(ref.conv2d(x1, w, b, **kw), x1, w, **kw)
    for got, want in zip(g1, expected, strict=True):
        assert_close(backend, got, want, like=xb1)
    # Modifying a result in place does not change the next call's result.
    if backend.backend.value in ("numpy", "torch"):
        y1[...] = 0.0
        assert_close(
            backend, xpconv.conv2d(xb2, wb, bb, **kw), ref.conv2d(x2, w, b, **kw), like=xb2
        )


def test_empty_batch_matches_torch(backend):
    """A batch of 0 gives empty outputs and zero weight/bias gradients, as in PyTorch."""
    torch = pytest.importorskip("torch")
    x_np = np.zeros((0, 4, 6, 5))
    w_np = np.random.default_rng(0).standard_normal((6, 2, 3, 3))
    xt = torch.tensor(x_np, requires_grad=True)
    wt = torch.tensor(w_np, requires_grad=True)
    bt = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, wt, bt, padding=1, groups=2)
    yt.sum().backward()
    x, w, b = (backend.asarray(a) for a in (x_np, w_np, np.zeros(6)))
    y = xpconv.conv2d(x, w, b, padding=1, groups=2)
    assert tuple(y.shape) == tuple(yt.shape)
    grads = xpconv.conv2d_backward(backend.xp.ones_like(y), x, w, padding=1, groups=2)
    assert tuple(grads.input.shape) == x_np.shape
    np.testing.assert_array_equal(backend.to_numpy(grads.weight), wt.grad.numpy())
    np.testing.assert_array_equal(backend.to_numpy(grads.bias), bt.grad.numpy())
