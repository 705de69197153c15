"""Hostile input: every call gives PyTorch's result or a clear error from xpconv.

A clear error is a ``ValueError``, ``TypeError`` or ``MemoryError`` raised by
xpconv itself with a message that names what was wrong, never a traceback from
deep inside a library (AttributeError, IndexError, OverflowError, ...), a
silent wrong shape, or a run that eats the machine.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference as ref
import xpconv
from xpconv._engine import forced_route

torch = pytest.importorskip("torch")
F = torch.nn.functional
CLEAR = (ValueError, TypeError, MemoryError)
TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _torch_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, kw: dict) -> Any:
    """PyTorch's forward and gradients (float64), the exception it raises, or None.

    xpconv's deliberate extensions, 'same' at any stride and 'full', are
    given to PyTorch as the explicit padding they stand for. None: padding so
    large that PyTorch may materialise the padded input (its sizes are int64
    products, which can also wrap around to a size that fits and is then
    written: such a call once took the machine's memory); those calls are
    left to xpconv alone (a result or a clear error).
    """
    rank = w.ndim - 2
    try:
        pairs = _explicit_padding(x, w, kw)
        if pairs is not None:
            padded = [s + lo + hi for s, (lo, hi) in zip(x.shape[2:], pairs, strict=True)]
            if x.shape[0] * x.shape[1] * math.prod(padded) > 2**24:
                return None
        xt = torch.tensor(x, requires_grad=True)
        wt = torch.tensor(w, requires_grad=True)
        bt = None if b is None else torch.tensor(b, requires_grad=True)
        xin = xt
        if isinstance(kw.get("padding"), str) and kw["padding"] in ("same", "full"):
            assert pairs is not None
            xin = F.pad(xt, [p for pair in reversed(pairs) for p in pair])
            kw = {**kw, "padding": 0}
        yt = TORCH_CONV[rank](xin, wt, bt, **kw)
        yt.backward(torch.ones_like(yt))
        grads = (xt.grad, wt.grad, None if bt is None else bt.grad)
        # Inside the try: an empty result can still have a shape NumPy cannot
        # hold (torch accepts dilation 0 on an empty batch with huge padding).
        return yt.detach().numpy(), *(None if g is None else g.numpy() for g in grads)
    except Exception as error:
        return error


def _explicit_padding(x: np.ndarray, w: np.ndarray, kw: dict) -> list[tuple[int, int]] | None:
    """The (before, after) padding of each axis, or None for a padding PyTorch refuses as is."""
    rank, padding = w.ndim - 2, kw.get("padding", 0)
    if padding == "full":
        dilation = ref._ntuple(kw.get("dilation", 1), rank)
        return [(d * (k - 1),) * 2 for d, k in zip(dilation, w.shape[2:], strict=True)]
    if padding == "same":
        stride, dilation = (ref._ntuple(kw.get(k, 1), rank) for k in ("stride", "dilation"))
        return list(ref.padding_pairs("same", x.shape[2:], w.shape[2:], stride, dilation))
    pads = padding if isinstance(padding, tuple) else (padding,) * rank
    if len(pads) != rank or not all(type(p) is int and p >= 0 for p in pads):
        return None
    return [(p, p) for p in pads]


def _check_clear(error: BaseException) -> None:
    assert isinstance(error, CLEAR), f"{type(error).__name__}: {error}"
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    assert frame is not None
    # Raised by xpconv itself, not by the array library it called.
    assert "xpconv" in frame.tb_frame.f_code.co_filename, (error, frame.tb_frame.f_code)
    assert len(str(error)) > 20, error


# --------------------------------------------------------------------------- hypothesis

SIZES = st.integers(min_value=0, max_value=6)
SMALL = st.integers(min_value=-1, max_value=4)
ARG = st.one_of(
    SMALL,
    st.tuples(SMALL, SMALL),
    st.tuples(SMALL),
    st.tuples(SMALL, SMALL, SMALL),
    st.sampled_from(["same", "valid", "full", "", None, 1.5, True]),
    st.integers(min_value=2**40, max_value=2**62),
)


@st.composite
def _calls(draw: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
    rank = draw(st.integers(min_value=1, max_value=3))
    n, c, o = draw(SIZES), draw(SIZES), draw(SIZES)
    x_shape = (n, c, *draw(st.lists(SIZES, min_size=rank, max_size=rank)))
    w_shape = (o, draw(SIZES), *draw(st.lists(SIZES, min_size=rank, max_size=rank)))
    if draw(st.booleans()):  # a fitting weight most of the time: reach the kernels
        groups = draw(st.sampled_from([1, max(c, 1)]))
        w_shape = (max(o, 1) * groups, max(c, 1) // groups, *(max(s, 1) for s in w_shape[2:]))
        x_shape = (max(n, 1), max(c, 1), *(max(s, 3) for s in x_shape[2:]))
    else:
        groups = draw(st.one_of(SMALL, st.just(1)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0]) if draw(st.booleans()) else None
    kw = {name: draw(ARG) for name in ("stride", "padding", "dilation")}
    kw = {name: value for name, value in kw.items() if value is not None}
    return x, w, b, {**kw, "groups": groups}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_calls())
def test_torch_result_or_a_clear_error(call: tuple) -> None:
    x, w, b, kw = call
    expected = _torch_conv(x, w, b, kw)  # None: beyond what PyTorch can be asked
    try:
        y = xpconv.conv(x, w, b, **kw)
        grads = xpconv.conv_backward(np.ones_like(y), x, w, bias=b is not None, **kw)
    except Exception as error:
        _check_clear(error)
        return
    assert not isinstance(expected, BaseException), (
        f"xpconv accepted what PyTorch refuses: {expected}"
    )
    if expected is None:
        return
    for got, want in zip((y, *grads), expected, strict=True):
        if want is None:
            assert got is None
        else:
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- small bad inputs


def test_missing_arrays_are_named() -> None:
    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    for call, name in [
        (lambda: xpconv.conv2d(None, w), "x"),
        (lambda: xpconv.conv2d(x, None), "weight"),
        (lambda: xpconv.conv2d_backward(None, x, w), "grad_output"),
        (lambda: xpconv.conv_transpose2d(x, None), "weight"),
        (lambda: xpconv.unfold(None, 2), "x"),
        (lambda: xpconv.fold(None, 3, 2), "cols"),
    ]:
        with pytest.raises(TypeError, match=rf"{name} must be an array, got None"):
            call()


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "pattern"),
    [
        ((1, 3, 4, 4), (0, 3, 1, 1), "at least one output channel"),
        ((1, 0, 4, 4), (2, 0, 1, 1), "at least one input channel"),
        ((1, 0, 4, 4), (0, 0, 1, 1), "at least one output channel"),
    ],
)
def test_no_channels(backend: Any, x_shape: tuple, w_shape: tuple, pattern: str) -> None:
    x, w = backend.asarray(np.ones(x_shape)), backend.asarray(np.ones(w_shape))
    with pytest.raises(ValueError, match=pattern):
        xpconv.conv(x, w)
    with pytest.raises(ValueError, match=pattern):
        xpconv.conv_backward(backend.asarray(np.ones((1, w_shape[0], 4, 4))), x, w)


def test_empty_batch_through_every_function(backend: Any) -> None:
    """N = 0 gives empty results of the right shapes, bias or not (as PyTorch)."""
    xp = backend.xp
    x = backend.asarray(np.ones((0, 3, 5, 5)))
    w, b = backend.asarray(np.ones((4, 3, 3, 3))), backend.asarray(np.ones(4))
    assert tuple(xpconv.conv2d(x, w, b).shape) == (0, 4, 3, 3)
    grads = xpconv.conv2d_backward(backend.asarray(np.ones((0, 4, 3, 3))), x, w)
    assert tuple(grads.input.shape) == (0, 3, 5, 5)
    np.testing.assert_array_equal(backend.to_numpy(grads.weight), np.zeros((4, 3, 3, 3)))
    wt, bt = backend.asarray(np.ones((3, 2, 3, 3))), backend.asarray(np.ones(2))
    assert tuple(xpconv.conv_transpose2d(x, wt, bt, stride=2).shape) == (0, 2, 11, 11)
    cols = xp.zeros((0, 9, 9), dtype=xp.float64, device=backend.device)
    assert tuple(xpconv.fold(cols, (5, 5), 3).shape) == (0, 1, 5, 5)
    assert tuple(xpconv.unfold(x, 3).shape) == (0, 27, 9)


def test_huge_strides_do_not_overflow(backend: Any) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6))
    w = np.random.default_rng(1).standard_normal((4, 3, 2, 3))
    y = xpconv.conv2d(backend.asarray(x), backend.asarray(w), stride=(2**58, 2**62 - 1))
    ref.assert_close(backend, y, ref.conv(x, w, stride=(2**58, 2**62 - 1)), like=y)


def test_sparse_torch_tensors_are_refused() -> None:
    x = torch.ones(1, 2, 4, 4).to_sparse()
    with pytest.raises(TypeError, match=r"x must be a dense \(strided\) tensor"):
        xpconv.conv2d(x, torch.ones(3, 2, 2, 2))


@pytest.mark.parametrize("bias", [np.ones(2), "yes", 1, None])
def test_backward_bias_flag_must_be_a_bool(bias: object) -> None:
    x, w = np.ones((1, 1, 3, 3)), np.ones((2, 1, 2, 2))
    with pytest.raises(TypeError, match=r"bias must be True or False"):
        xpconv.conv2d_backward(np.ones((1, 2, 2, 2)), x, w, bias=bias)  # type: ignore[arg-type]


def test_big_endian_arrays_round_trip() -> None:
    """A big-endian input gives native-order results whose gradients match."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3))
    xb, wb = x.astype(">f8"), w.astype(">f8")
    y = xpconv.conv2d(xb, wb, padding=1)
    grads = xpconv.conv2d_backward(np.ones_like(y), xb, wb, padding=1)
    assert y.dtype == grads.input.dtype == np.float64
    np.testing.assert_array_equal(y, xpconv.conv2d(x, w, padding=1))
    expected = xpconv.conv2d_backward(np.ones_like(y), x, w, padding=1)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert xb.dtype == ">f8"  # the caller's arrays are not touched


# --------------------------------------------------------------------------- xp=


def test_xp_accepts_the_library_module_and_its_namespace() -> None:
    import array_api_compat

    x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    expected = xpconv.conv2d(x, w)
    for xp in (np, array_api_compat.array_namespace(x)):
        np.testing.assert_array_equal(xpconv.conv2d(x, w, xp=xp), expected)
    xt, wt = torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2)
    assert tuple(xpconv.conv2d(xt, wt, xp=torch).shape) == (1, 1, 2, 2)


@pytest.mark.parametrize("xp", ["numpy", 3, object()], ids=["string", "int", "object"])
def test_xp_that_is_no_namespace(xp: object) -> None:
    with pytest.raises(TypeError, match=r"xp must be an array API namespace"):
        xpconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), xp=xp)


def test_xp_of_another_library() -> None:
    with pytest.raises(TypeError, match=r"is not the namespace of the arrays"):
        xpconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), xp=torch)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (
            lambda: xpconv.conv2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 1, 1)), padding=10**12),
            r"conv2d's output would have shape \(1, 1, 2000000000002, 2000000000002\)",
        ),
        (
            lambda: xpconv.conv1d(np.ones((1, 1, 2)), np.ones((1, 1, 1)), padding=10**15),
            r"conv1d's output would have shape \(1, 1, 2000000000000002\): 14\.2 PiB",
        ),
        (
            lambda: xpconv.conv_transpose3d(
                np.ones((1, 1, 2, 2, 2)), np.ones((1, 1, 1, 1, 1)), stride=10**7
            ),
            r"conv_transpose3d's output would have shape",
        ),
        (
            lambda: xpconv.unfold(np.ones((1, 1, 2, 2)), 3, padding=10**6),
            r"unfold's result would have shape \(1, 9, 4000000000000\)",
        ),
        (
            lambda: xpconv.fold(np.ones((1, 9, 1)), (10**6, 10**6), 3, stride=10**6),
            r"fold's result would have shape",
        ),
        (
            # Fits as an output, but one output row's columns (10**5 channels x 3x3 taps x
            # 10**7 columns) cannot exist.
            lambda: xpconv.conv2d(
                np.ones((1, 1, 1, 10**7), dtype=np.float32),
                np.ones((1, 1, 1, 1), dtype=np.float32),
                padding=(10**5, 0),
            ),
            r"conv2d's output would have shape",
        ),
    ],
)
def test_absurd_sizes_fail_at_once(call: Any, pattern: str) -> None:
    start = time.perf_counter()
    with pytest.raises(MemoryError, match=pattern) as info:
        call()
    assert time.perf_counter() - start < 1.0
    assert "memory" in str(info.value)


# --------------------------------------------------------------------------- non-finite values

# Layers that take each route: im2col (per sample and one GEMM), the
# transposed-convolution and col2im input gradients, depthwise, pointwise.
ROUTES = {
    "per_sample": ((2, 3, 6, 6), (4, 3, 3, 3), {"padding": 1}),
    "one_gemm": ((2, 24, 6, 6), (8, 24, 3, 3), {"padding": 1}),
    "col2im": ((2, 3, 7, 7), (4, 3, 3, 3), {"padding": 1, "stride": 2}),
    "transposed": ((2, 8, 6, 6), (4, 8, 3, 3), {"padding": 1}),
    "depthwise": ((2, 3, 6, 6), (3, 1, 3, 3), {"padding": 1, "groups": 3}),
    "depthwise_dilated": ((2, 3, 7, 7), (3, 1, 3, 3), {"padding": 2, "groups": 3, "dilation": 2}),
    "pointwise": ((2, 3, 4, 4), (5, 3, 1, 1), {}),
    "grouped": ((2, 4, 6, 6), (4, 2, 3, 3), {"padding": 1, "groups": 2}),
    "signal": ((2, 3, 9), (4, 3, 3), {"padding": 1}),
    "volume": ((1, 2, 4, 4, 4), (2, 1, 3, 3, 3), {"padding": 1, "groups": 2}),
}


def _pattern(a: Any) -> np.ndarray:
    a = np.asarray(a)
    return np.where(np.isnan(a), 2, np.where(np.isinf(a), 1, 0))


@pytest.mark.parametrize("forced", [{}, {"kernel": "gemm", "input_grad_by": "col2im"}])
@pytest.mark.parametrize(
    ("where", "value", "spot"),
    list(itertools.product(["x", "weight", "grad_output"], [np.inf, np.nan], ["first", "middle"])),
)
@pytest.mark.parametrize("route", ref.thin(list(ROUTES), ["transposed", "depthwise"]))
def test_non_finite_values_as_in_torch(
    backend: Any, route: str, where: str, value: float, spot: str, forced: dict
) -> None:
    """inf and NaN reach the same outputs as in PyTorch, on every route: the
    zero padding contributes exact zeros, never 0 * inf."""
    x_shape, w_shape, kw = ROUTES[route]
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(4)
    b = b[: w_shape[0]] if w_shape[0] <= 4 else rng.standard_normal(w_shape[0])
    gy = rng.standard_normal(ref.conv(x, w, **kw).shape)
    target = {"x": x, "weight": w, "grad_output": gy}[where]
    target[tuple(0 if spot == "first" else s // 2 for s in target.shape)] = value
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = TORCH_CONV[w.ndim - 2](xt, wt, bt, **kw)
    yt.backward(torch.tensor(gy))
    expected = (yt.detach(), xt.grad, wt.grad, bt.grad)
    xb, wb, bb, gyb = (backend.asarray(a) for a in (x, w, b, gy))
    with forced_route(**forced):
        got = (xpconv.conv(xb, wb, bb, **kw), *xpconv.conv_backward(gyb, xb, wb, **kw))
    for name, g, e in zip(("y", "dx", "dw", "db"), got, expected, strict=True):
        np.testing.assert_array_equal(
            _pattern(backend.to_numpy(g)), _pattern(e.numpy()), err_msg=name
        )


# --------------------------------------------------------------------------- layers


def test_layer_dtypes_of_other_libraries_and_names() -> None:
    assert xpconv.Conv2d(3, 8, 3, xp=torch, dtype=np.float32).weight.dtype == torch.float32
    assert xpconv.Conv1d(3, 8, 3, dtype="float32").weight.dtype == np.float32
    assert xpconv.Conv3d(2, 2, 1, xp=np, dtype=torch.float64).weight.dtype == np.float64
    with pytest.raises(TypeError, match=r"dtype must be a dtype or dtype name"):
        xpconv.Conv2d(3, 8, 3, dtype="float99")
    with pytest.raises(
        TypeError, match=r"dtype must be a real or complex floating dtype, got 'int32'"
    ):
        xpconv.Conv2d(3, 8, 3, dtype="int32")


def test_layer_on_a_missing_device_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"cuda"):
        xpconv.Conv2d(
            3, 8, 3, xp=torch, device="cuda" if not torch.cuda.is_available() else "meta0"
        )


def test_an_empty_spatial_axis_is_refused_as_in_torch() -> None:
    """PyTorch: "Only zero batch or zero channel inputs are supported"."""
    with pytest.raises(ValueError, match=r"x has an empty spatial axis, shape \(1, 1, 0\)"):
        xpconv.conv1d(np.ones((1, 1, 0)), np.ones((1, 1, 1)), padding=1)
    with pytest.raises(RuntimeError, match="Only zero batch or zero channel"):
        F.conv1d(torch.ones((1, 1, 0)), torch.ones((1, 1, 1)), padding=1)
    assert xpconv.conv1d(np.ones((0, 1, 0)), np.ones((1, 1, 1)), padding=1).shape == (0, 1, 2)
