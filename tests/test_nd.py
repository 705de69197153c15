"""The N-d public API for D = 1, 3 and 4 (and 2-D through the generic functions), every backend.

Oracles: the float64 loop reference (any D) at 1e-10 (float32: 1e-4), and for
D <= 3 PyTorch (``F.conv1d/3d``, ``F.conv_transpose1d/3d``, autograd) and
unfoldNd. The gradients of a transposed convolution are also computed from
their definition, one basis vector at a time through the loop reference, so
D = 4 has an oracle that shares nothing with xpconv or with the convolution
loop.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import numpy as np
import pytest

import reference as ref
import xpconv
from reference import assert_close, thin

DTYPES = ["float64", "float32"]

Case = tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]

# (input shape, weight shape, keyword arguments); the name starts with the rank.
CONV_CASES: dict[str, Case] = {
    "1d_plain": ((2, 3, 7), (4, 3, 3), {}),
    "1d_int_args": ((2, 2, 9), (3, 2, 3), {"stride": 2, "padding": 1, "dilation": 2}),
    "1d_tuple_args": ((1, 2, 10), (3, 2, 2), {"stride": (3,), "padding": (2,), "dilation": (3,)}),
    "1d_same_even": ((2, 2, 6), (3, 2, 4), {"padding": "same"}),
    "1d_same_s2": ((1, 2, 7), (2, 2, 3), {"padding": "same", "stride": 2, "dilation": 2}),
    "1d_same_s3_even": ((1, 1, 8), (2, 1, 2), {"padding": "same", "stride": 3}),
    "1d_valid": ((2, 1, 5), (2, 1, 3), {"padding": "valid"}),
    "1d_groups_nobias": ((2, 4, 8), (6, 2, 3), {"groups": 2, "stride": 2, "padding": 1}),
    "1d_depthwise_s1": ((2, 3, 6), (3, 1, 3), {"groups": 3, "padding": 1}),
    "1d_depthwise_s2": ((1, 3, 7), (6, 1, 3), {"groups": 3, "stride": 2}),
    "1d_pointwise": ((2, 3, 5), (4, 3, 1), {}),
    "1d_unbatched": ((3, 6), (2, 3, 3), {"padding": 2}),
    "2d_same_s2": ((1, 2, 5, 6), (3, 2, 3, 2), {"padding": "same", "stride": 2}),
    "2d_groups_tuple": ((2, 4, 4, 5), (4, 2, 2, 3), {"groups": 2, "dilation": (1, 2)}),
    "3d_plain": ((2, 2, 4, 5, 3), (3, 2, 2, 3, 2), {}),
    "3d_int_args": ((1, 2, 5, 5, 5), (2, 2, 3, 3, 3), {"stride": 2, "padding": 1, "dilation": 1}),
    "3d_tuple_args": (
        (1, 2, 5, 6, 4),
        (3, 2, 2, 3, 2),
        {"stride": (1, 2, 1), "padding": (1, 0, 2), "dilation": (2, 1, 1)},
    ),
    "3d_same_even": ((1, 2, 4, 5, 3), (2, 2, 2, 3, 4), {"padding": "same"}),
    "3d_same_s2": ((1, 2, 5, 4, 3), (2, 2, 3, 2, 2), {"padding": "same", "stride": (2, 2, 1)}),
    "3d_valid": ((2, 1, 3, 4, 3), (2, 1, 2, 2, 2), {"padding": "valid"}),
    "3d_groups_nobias": ((1, 4, 3, 4, 3), (4, 2, 2, 2, 2), {"groups": 2, "padding": 1}),
    "3d_depthwise_s1": ((1, 3, 4, 4, 3), (3, 1, 3, 3, 3), {"groups": 3, "padding": 1}),
    "3d_depthwise_s2": ((2, 2, 5, 4, 4), (4, 1, 3, 2, 3), {"groups": 2, "stride": 2, "padding": 1}),
    "3d_pointwise": ((1, 3, 3, 2, 3), (2, 3, 1, 1, 1), {}),
    "3d_unbatched": ((2, 4, 3, 4), (3, 2, 2, 2, 2), {"stride": (1, 1, 2)}),
    "4d_plain": ((1, 2, 3, 4, 3, 3), (2, 2, 2, 2, 2, 2), {}),
    "4d_tuple_args": (
        (1, 2, 4, 3, 4, 3),
        (2, 2, 2, 1, 2, 2),
        {"stride": (2, 1, 1, 2), "padding": (1, 0, 1, 0), "dilation": (1, 1, 2, 1)},
    ),
    "4d_same_s2": ((1, 1, 4, 3, 3, 4), (2, 1, 2, 3, 2, 1), {"padding": "same", "stride": 2}),
    "4d_valid": ((2, 1, 3, 3, 2, 3), (1, 1, 2, 2, 1, 2), {"padding": "valid"}),
    "4d_depthwise_nobias": ((1, 2, 3, 3, 3, 3), (2, 1, 2, 2, 2, 2), {"groups": 2, "padding": 1}),
    "4d_unbatched": ((2, 3, 3, 3, 3), (1, 2, 2, 2, 2, 2), {"stride": 2}),
}

TRANSPOSE_CASES: dict[str, Case] = {
    "1d_plain": ((2, 3, 4), (3, 2, 3), {}),
    "1d_int_args": ((1, 2, 5), (2, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    "1d_tuple_args": (
        (2, 2, 4),
        (2, 2, 2),
        {"stride": (3,), "padding": (1,), "output_padding": (2,), "dilation": (2,)},
    ),
    "1d_groups_nobias": ((2, 4, 3), (4, 2, 3), {"groups": 2, "stride": 2}),
    "1d_depthwise": ((1, 3, 5), (3, 1, 3), {"groups": 3, "padding": 1}),
    "1d_unbatched": ((3, 4), (3, 2, 2), {"stride": 2}),
    "2d_generic": (
        (1, 2, 3, 3),
        (2, 2, 3, 2),
        {"stride": 2, "output_padding": 1, "padding": (1, 0)},
    ),
    "3d_plain": ((1, 2, 2, 3, 2), (2, 3, 2, 2, 2), {}),
    "3d_int_args": (
        (1, 2, 3, 2, 3),
        (2, 2, 3, 3, 3),
        {"stride": 2, "padding": 1, "output_padding": 1},
    ),
    "3d_tuple_args": (
        (2, 1, 2, 3, 2),
        (1, 2, 2, 3, 2),
        {
            "stride": (2, 1, 3),
            "padding": (0, 1, 1),
            "output_padding": (1, 0, 2),
            "dilation": (1, 2, 1),
        },
    ),
    "3d_dilation_outpad": ((1, 2, 2, 2, 3), (2, 1, 2, 2, 2), {"dilation": 2, "output_padding": 1}),
    "3d_groups_nobias": (
        (1, 4, 2, 2, 2),
        (4, 1, 2, 2, 2),
        {"groups": 2, "stride": 2, "padding": 1},
    ),
    "3d_depthwise_s2": ((1, 2, 3, 2, 3), (2, 1, 3, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
    "3d_unbatched": ((2, 2, 3, 2), (2, 1, 2, 2, 2), {"stride": (1, 2, 1)}),
    "4d_plain": ((1, 2, 2, 2, 2, 2), (2, 1, 2, 2, 2, 2), {}),
    "4d_tuple_args": (
        (1, 1, 2, 3, 2, 2),
        (1, 2, 2, 2, 1, 2),
        {"stride": (2, 1, 1, 2), "padding": (0, 1, 0, 1), "output_padding": (1, 0, 0, 1)},
    ),
    "4d_groups_nobias": ((1, 2, 2, 2, 2, 2), (2, 1, 2, 2, 2, 2), {"groups": 2, "stride": 2}),
    "4d_unbatched": ((1, 2, 2, 2, 2), (1, 2, 2, 2, 2, 2), {"dilation": 2, "output_padding": 1}),
}

# (input shape, kernel_size, keyword arguments)
WINDOW_CASES: dict[str, tuple[tuple[int, ...], Any, dict[str, Any]]] = {
    "1d_plain": ((2, 3, 7), (3,), {}),
    "1d_int_args": ((1, 2, 9), (2,), {"stride": 2, "padding": 1, "dilation": 2}),
    "1d_unbatched": ((3, 6), (2,), {"stride": (2,), "padding": (1,)}),
    "2d_tuple_args": ((1, 2, 4, 5), (2, 3), {"stride": (2, 1), "padding": 1}),
    "3d_plain": ((1, 2, 3, 4, 3), (2, 2, 2), {}),
    "3d_int_kernel": ((2, 1, 4, 4, 5), 2, {"stride": 2, "padding": 1, "dilation": 1}),
    "3d_tuple_args": (
        (1, 2, 4, 5, 3),
        (2, 3, 1),
        {"stride": (1, 2, 1), "padding": (1, 0, 1), "dilation": (2, 1, 1)},
    ),
    "3d_unbatched": ((2, 3, 3, 4), (2, 2, 2), {"stride": 2}),
    "4d_plain": ((1, 2, 3, 3, 3, 3), (2, 2, 2, 2), {}),
    "4d_tuple_args": (
        (2, 1, 3, 4, 3, 3),
        (2, 1, 2, 2),
        {"stride": (1, 2, 1, 2), "padding": (1, 0, 0, 1), "dilation": (1, 1, 2, 1)},
    ),
    "4d_unbatched": ((2, 3, 3, 2, 3), (2, 2, 1, 2), {}),
}

# The subsets that also run on the slow backends (see reference.thin).
SLOW_CONV = ["1d_same_s2", "3d_tuple_args", "4d_depthwise_nobias"]
SLOW_TRANSPOSE = ["1d_int_args", "3d_tuple_args", "4d_unbatched"]
SLOW_WINDOW = ["1d_unbatched", "3d_int_kernel", "4d_tuple_args"]


def _rank(case: str) -> int:
    return int(case[0])


def _data(shape: tuple[int, ...], seed: int, dtype: str = "float64") -> np.ndarray:
    """Random data, rounded to ``dtype`` and returned as float64 (the exact oracle input)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype).astype(np.float64)


def _unchanged(backend: Any, arrays: dict[str, Any], copies: dict[str, np.ndarray]) -> None:
    for name, a in arrays.items():
        np.testing.assert_array_equal(backend.to_numpy(a), copies[name], err_msg=f"{name} modified")


def _has_bias(case: str) -> bool:
    return "nobias" not in case


def _ranked(name: str, rank: int) -> Any:
    """``xpconv.conv3d`` for ('conv', 3); the generic function for rank 4."""
    return getattr(xpconv, f"{name}{rank}d") if rank <= 3 else getattr(xpconv, name)


def _have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _conv_problem(
    case: str, dtype: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    xs, ws, kw = CONV_CASES[case]
    b = _data(ws[:1], 3, dtype) if _has_bias(case) else None
    return _data(xs, 1, dtype), _data(ws, 2, dtype), b, kw


def _on(backend: Any, dtype: str, *arrays: np.ndarray | None) -> list[Any]:
    return [None if a is None else backend.asarray(a, dtype) for a in arrays]


def _spatial(shape: tuple[int, ...], rank: int) -> tuple[int, ...]:
    return tuple(shape[-rank:])


# --------------------------------------------------------------------------- conv


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(CONV_CASES, SLOW_CONV))
def test_conv_matches_reference_and_torch(backend: Any, case: str, dtype: str) -> None:
    """Generic ``conv`` and ``conv1d/3d`` against the loop and ``F.conv1d/2d/3d``.

    The generic function runs with the case's bias, the rank-checked one
    (``conv`` again for D = 4) without: both must match both oracles.
    """
    x, w, b, kw = _conv_problem(case, dtype)
    rank = _rank(case)
    xb, wb, bb = _on(backend, dtype, x, w, b)
    y = xpconv.conv(xb, wb, bb, **kw)
    y0 = _ranked("conv", rank)(xb, wb, **kw)
    assert_close(backend, y, ref.conv(x, w, b, **kw), like=xb)
    assert_close(backend, y0, ref.conv(x, w, None, **kw), like=xb)
    if rank <= 3 and _have("torch"):
        assert_close(backend, y, ref.torch_conv(x, w, b, **kw), like=xb)
        assert_close(backend, y0, ref.torch_conv(x, w, None, **kw), like=xb)
    arrays = {"x": xb, "weight": wb} if b is None else {"x": xb, "weight": wb, "bias": bb}
    copies = {"x": x, "weight": w} if b is None else {"x": x, "weight": w, "bias": b}
    _unchanged(backend, arrays, copies)


@pytest.mark.parametrize("case", thin([c for c in CONV_CASES if "same" in c], ["4d_same_s2"]))
def test_same_output_is_ceil_of_size_over_stride(backend: Any, case: str) -> None:
    """'same' gives ceil(size / stride) positions on every axis, for every rank."""
    xs, ws, kw = CONV_CASES[case]
    rank = len(ws) - 2
    stride = kw.get("stride", 1)
    stride = (stride,) * rank if isinstance(stride, int) else stride
    xb, wb = _on(backend, "float64", _data(xs, 1), _data(ws, 2))
    y = xpconv.conv(xb, wb, **kw)
    assert tuple(y.shape[:-rank]) == (*xs[:-rank][:-1], ws[0])
    assert _spatial(tuple(y.shape), rank) == tuple(
        math.ceil(n / s) for n, s in zip(_spatial(xs, rank), stride, strict=True)
    )


def test_conv4d_hand_computed(backend: Any) -> None:
    """A 4-D box filter on ones, stride 2: every output is the window volume plus the bias."""
    x = backend.asarray(np.ones((1, 1, 4, 4, 4, 4)))
    w = backend.asarray(np.ones((2, 1, 2, 2, 2, 2)))
    y = xpconv.conv(x, w, backend.asarray(np.array([0.5, -1.0])), stride=2)
    expected = np.stack([np.full((2, 2, 2, 2), 16.5), np.full((2, 2, 2, 2), 15.0)])[None]
    assert_close(backend, y, expected, like=x)


def test_conv1d_hand_computed(backend: Any) -> None:
    x = backend.asarray(np.arange(6.0).reshape(1, 1, 6))
    y = xpconv.conv1d(x, backend.asarray(np.array([[[1.0, 10.0]]])), stride=2, padding=1)
    # Windows (0, 0), (1, 2), (3, 4), (5, 0) of the padded signal.
    assert_close(backend, y, np.array([[[0.0, 21.0, 43.0, 5.0]]]), like=x)


# --------------------------------------------------------------------------- conv_backward


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(CONV_CASES, SLOW_CONV))
def test_conv_backward_matches_reference_and_torch(backend: Any, case: str, dtype: str) -> None:
    """``conv1d/3d_backward`` (``conv_backward`` for D = 2, 4) against the loop and autograd."""
    x, w, _, kw = _conv_problem(case, dtype)
    rank = _rank(case)
    gy = _data(ref.conv(x, w, **kw).shape, 4, dtype)
    oracles = [ref.conv_backward(gy, x, w, **kw)]
    if rank <= 3 and _have("torch"):
        oracles.append(ref.torch_conv_grads(gy, x, w, **kw))
    gyb, xb, wb = _on(backend, dtype, gy, x, w)
    fn = getattr(xpconv, f"conv{rank}d_backward") if rank in (1, 3) else xpconv.conv_backward
    grads = fn(gyb, xb, wb, **kw)
    assert isinstance(grads, xpconv.ConvGradients)
    for gx, gw, gb in oracles:
        assert_close(backend, grads.input, gx, like=xb)
        assert_close(backend, grads.weight, gw, like=xb)
        assert_close(backend, grads.bias, gb, like=xb)
    _unchanged(
        backend,
        {"grad_output": gyb, "x": xb, "weight": wb},
        {"grad_output": gy, "x": x, "weight": w},
    )
    no_bias = fn(gyb, xb, wb, bias=False, **kw)
    assert no_bias.bias is None
    assert_close(backend, no_bias.input, oracles[0][0], like=xb)
    assert_close(backend, no_bias.weight, oracles[0][1], like=xb)


# --------------------------------------------------------------------------- conv_transpose


def _transpose_problem(
    case: str, dtype: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    xs, ws, kw = TRANSPOSE_CASES[case]
    out_channels = ws[1] * kw.get("groups", 1)
    b = _data((out_channels,), 7, dtype) if _has_bias(case) else None
    return _data(xs, 5, dtype), _data(ws, 6, dtype), b, kw


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(TRANSPOSE_CASES, SLOW_TRANSPOSE))
def test_conv_transpose_matches_reference_and_torch(backend: Any, case: str, dtype: str) -> None:
    """Generic ``conv_transpose`` and ``conv_transpose1d/3d`` against the loop and torch."""
    x, w, b, kw = _transpose_problem(case, dtype)
    rank = _rank(case)
    xb, wb, bb = _on(backend, dtype, x, w, b)
    expected = ref.conv_transpose(x, w, b, **kw)
    y = xpconv.conv_transpose(xb, wb, bb, **kw)
    assert_close(backend, y, expected, like=xb)
    if rank <= 3:
        y_ranked = _ranked("conv_transpose", rank)(xb, wb, bb, **kw)
        assert_close(backend, y_ranked, expected, like=xb)
        if _have("torch"):
            assert_close(backend, y_ranked, ref.torch_conv_transpose(x, w, b, **kw), like=xb)
    arrays = {"x": xb, "weight": wb} if b is None else {"x": xb, "weight": wb, "bias": bb}
    copies = {"x": x, "weight": w} if b is None else {"x": x, "weight": w, "bias": b}
    _unchanged(backend, arrays, copies)


@functools.cache
def _transpose_grads_by_definition(case: str, dtype: str) -> tuple[np.ndarray, ...]:
    """(grad_output, dL/dx, dL/dW, dL/db) of L = sum(conv_transpose(x, W, b) * grad_output).

    conv_transpose is linear in x and in W, so each gradient entry is the loss
    of the loop reference applied to one basis vector: no adjoint formula, no
    convolution, nothing shared with xpconv.
    """
    x, w, _, kw = _transpose_problem(case, dtype)
    gy = _data(ref.conv_transpose(x, w, **kw).shape, 8, dtype)

    def by_basis(shape: tuple[int, ...], loss: Any) -> np.ndarray:
        grad = np.zeros(shape)
        for index in np.ndindex(*shape):
            e = np.zeros(shape)
            e[index] = 1.0
            grad[index] = loss(e)
        return grad

    gx = by_basis(x.shape, lambda e: np.sum(ref.conv_transpose(e, w, **kw) * gy))
    gw = by_basis(w.shape, lambda e: np.sum(ref.conv_transpose(x, e, **kw) * gy))
    rank = w.ndim - 2
    batch_axes = (0,) if gy.ndim == rank + 2 else ()
    gb = gy.sum(axis=(*batch_axes, *range(gy.ndim - rank, gy.ndim)))
    return gy, gx, gw, gb


def _torch_transpose_grads(
    gy: np.ndarray, x: np.ndarray, w: np.ndarray, kw: dict[str, Any]
) -> tuple[np.ndarray, ...]:
    torch = pytest.importorskip("torch")
    f = torch.nn.functional
    conv_t = {1: f.conv_transpose1d, 2: f.conv_transpose2d, 3: f.conv_transpose3d}[w.ndim - 2]
    xt, wt = (torch.from_numpy(a).requires_grad_() for a in (x, w))
    channels = w.shape[1] * kw.get("groups", 1)
    bt = torch.zeros(channels, dtype=torch.float64, requires_grad=True)
    conv_t(xt, wt, bt, **kw).backward(torch.from_numpy(gy))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(TRANSPOSE_CASES, SLOW_TRANSPOSE))
def test_conv_transpose_backward_matches_definition_and_torch(
    backend: Any, case: str, dtype: str
) -> None:
    x, w, _, kw = _transpose_problem(case, dtype)
    gy, gx, gw, gb = _transpose_grads_by_definition(case, dtype)
    oracles = [(gx, gw, gb)]
    if _rank(case) <= 3 and _have("torch"):
        oracles.append(_torch_transpose_grads(gy, x, w, kw))
    gyb, xb, wb = _on(backend, dtype, gy, x, w)
    grads = xpconv.conv_transpose_backward(gyb, xb, wb, **kw)
    assert isinstance(grads, xpconv.ConvGradients)
    for ogx, ogw, ogb in oracles:
        assert_close(backend, grads.input, ogx, like=xb)
        assert_close(backend, grads.weight, ogw, like=xb)
        assert_close(backend, grads.bias, ogb, like=xb)
    _unchanged(
        backend,
        {"grad_output": gyb, "x": xb, "weight": wb},
        {"grad_output": gy, "x": x, "weight": w},
    )
    assert xpconv.conv_transpose_backward(gyb, xb, wb, bias=False, **kw).bias is None


@pytest.mark.parametrize(
    "case", thin(["1d_int_args", "3d_tuple_args", "4d_tuple_args"], ["1d_int_args"])
)
def test_conv_transpose_is_conv_input_gradient(backend: Any, case: str) -> None:
    """conv_transpose(g, W, output_padding=op) == conv_backward(g, x, W).input, any rank."""
    xs, ws, kw = TRANSPOSE_CASES[case]
    # The transposed convolution's output is the convolution's input x.
    t_kw = {k: v for k, v in kw.items() if k != "output_padding"}
    y_shape = ref.conv_transpose(np.zeros(xs), np.zeros(ws), **kw).shape
    x = _data(y_shape, 9)
    w = _data(ws, 10)
    gy = _data(xs, 11)
    assert ref.conv(x, w, **t_kw).shape == gy.shape
    gyb, xb, wb = _on(backend, "float64", gy, x, w)
    expected = ref.conv_backward(gy, x, w, **t_kw)[0]
    assert_close(backend, xpconv.conv_backward(gyb, xb, wb, **t_kw).input, expected, like=xb)
    assert_close(backend, xpconv.conv_transpose(gyb, wb, **kw), expected, like=xb)


# --------------------------------------------------------------------------- unfold / fold


def _kernel_tuple(case: str) -> tuple[int, ...]:
    """The case's kernel as a tuple: the loop reference reads an int kernel as 2-D (as torch)."""
    _, k, _ = WINDOW_CASES[case]
    return (k,) * _rank(case) if isinstance(k, int) else tuple(k)


def _batched_oracle(fn: Any, a: np.ndarray, unbatched: bool, *args: Any, **kw: Any) -> np.ndarray:
    """unfoldNd takes batched arrays only: add and remove the batch axis around it."""
    return fn(a[None], *args, **kw)[0] if unbatched else fn(a, *args, **kw)


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(WINDOW_CASES, SLOW_WINDOW))
def test_unfold_matches_reference_and_unfoldnd(backend: Any, case: str, dtype: str) -> None:
    xs, k, kw = WINDOW_CASES[case]
    rank = _rank(case)
    unbatched = len(xs) == rank + 1
    x = _data(xs, 12, dtype)
    xb = backend.asarray(x, dtype)
    cols = xpconv.unfold(xb, k, **kw)
    kt = _kernel_tuple(case)
    assert_close(backend, cols, ref.unfold(x, kt, **kw), like=xb)
    if rank <= 3 and _have("unfoldNd"):
        expected = _batched_oracle(ref.nd_unfold, x, unbatched, kt, **kw)
        assert_close(backend, cols, expected, like=xb)
    _unchanged(backend, {"x": xb}, {"x": x})


@pytest.mark.parametrize("dtype", thin(DTYPES, ["float64"]))
@pytest.mark.parametrize("case", thin(WINDOW_CASES, SLOW_WINDOW))
def test_fold_matches_reference_and_foldnd(backend: Any, case: str, dtype: str) -> None:
    xs, k, kw = WINDOW_CASES[case]
    rank = _rank(case)
    unbatched = len(xs) == rank + 1
    kt = _kernel_tuple(case)
    out_size = _spatial(xs, rank)
    c = _data(ref.unfold(np.zeros(xs), kt, **kw).shape, 13, dtype)
    cb = backend.asarray(c, dtype)
    img = xpconv.fold(cb, out_size, k, **kw)
    assert_close(backend, img, ref.fold(c, out_size, kt, **kw), like=cb)
    if rank <= 3 and _have("unfoldNd"):
        expected = _batched_oracle(ref.nd_fold, c, unbatched, out_size, kt, **kw)
        assert_close(backend, img, expected, like=cb)
    _unchanged(backend, {"cols": cb}, {"cols": c})


@pytest.mark.parametrize("case", thin(["1d_int_args", "3d_tuple_args", "4d_tuple_args"], []))
def test_unfold_fold_adjoint(backend: Any, case: str) -> None:
    """sum(unfold(x) * c) == sum(x * fold(c)) for every rank."""
    xs, k, kw = WINDOW_CASES[case]
    out_size = _spatial(xs, _rank(case))
    kt = _kernel_tuple(case)
    x = _data(xs, 14)
    c = _data(ref.unfold(x, kt, **kw).shape, 15)
    xb, cb = backend.asarray(x), backend.asarray(c)
    lhs = float(np.sum(backend.to_numpy(xpconv.unfold(xb, k, **kw)) * c))
    rhs = float(np.sum(x * backend.to_numpy(xpconv.fold(cb, out_size, k, **kw))))
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_fold_rank_from_output_size_or_kernel(backend: Any) -> None:
    """An int output_size takes the rank of a tuple kernel_size, and the other way round."""
    x = _data((1, 2, 4, 4, 4), 16)
    kt = (2, 2, 2)
    c = ref.unfold(x, kt, stride=2)
    cb = backend.asarray(c)
    expected = ref.fold(c, (4, 4, 4), kt, stride=2)
    assert_close(backend, xpconv.fold(cb, 4, kt, stride=2), expected, like=cb)
    assert_close(backend, xpconv.fold(cb, (4, 4, 4), 2, stride=2), expected, like=cb)
    # unfold with an int kernel takes its rank from x (5-D: three spatial axes).
    xb = backend.asarray(x)
    assert_close(backend, xpconv.unfold(xb, 2, stride=2), c, like=xb)


# --------------------------------------------------------------------------- xp= and layouts


def test_explicit_xp_argument_any_rank(backend: Any) -> None:
    x, w, b, kw = _conv_problem("3d_tuple_args", "float64")
    xb, wb, bb = _on(backend, "float64", x, w, b)
    y = xpconv.conv3d(xb, wb, bb, xp=backend.xp, **kw)
    assert_close(backend, y, ref.conv(x, w, b, **kw), like=xb)
    cols = xpconv.unfold(xb, (2, 1, 2), xp=backend.xp)
    assert_close(backend, cols, ref.unfold(x, (2, 1, 2)), like=xb)
    import array_api_strict

    other = np if backend.xp is array_api_strict else array_api_strict
    with pytest.raises(TypeError, match=r"^xp=.* is not the namespace of the arrays"):
        xpconv.conv3d(xb, wb, bb, xp=other, **kw)


def test_views_lists_and_numpy_integers(backend: Any) -> None:
    """Strided and permuted views, list sizes and NumPy integers, through a 3-D layer's passes."""
    if ref.is_slow(backend):
        pytest.skip("thinned on slow eager backends (set XPCONV_TEST_THOROUGH=1 to run)")
    xp = backend.xp
    big = _data((2, 4, 7, 6, 9), 17)
    x = big[:, :, ::2, 1::2, ::3]
    w = _data((4, 2, 2, 2, 2), 18)
    xv = backend.asarray(big)[:, :, ::2, 1::2, ::3]
    perm = (0, 1, 4, 3, 2)
    wv = xp.permute_dims(backend.asarray(np.ascontiguousarray(w.transpose(perm))), perm)
    kw = {
        "stride": [1, 2, 1],
        "padding": [np.int64(1), 0, 1],
        "dilation": (np.int32(1), 1, 2),
        "groups": np.int64(2),
    }
    kw_ref = {"stride": (1, 2, 1), "padding": (1, 0, 1), "dilation": (1, 1, 2), "groups": 2}
    y = xpconv.conv3d(xv, wv, **kw)
    assert_close(backend, y, ref.conv(x, w, **kw_ref), like=xv)
    gy = _data(tuple(y.shape), 19)
    gyv = xp.permute_dims(
        backend.asarray(np.ascontiguousarray(gy.transpose(1, 0, 2, 3, 4))), (1, 0, 2, 3, 4)
    )
    grads = xpconv.conv3d_backward(gyv, xv, wv, **kw)
    for got, want in zip(grads, ref.conv_backward(gy, x, w, **kw_ref), strict=True):
        assert_close(backend, got, want, like=xv)
    y_t = xpconv.conv_transpose3d(gyv, wv, **kw)
    assert_close(backend, y_t, ref.conv_transpose(gy, w, **kw_ref), like=xv)
    cols = xpconv.unfold(xv, [2, 1, 2], stride=[2, np.int64(1), 1])
    assert_close(backend, cols, ref.unfold(x, (2, 1, 2), stride=(2, 1, 1)), like=xv)
    np.testing.assert_array_equal(backend.to_numpy(xv), x)


# --------------------------------------------------------------------------- errors


def _ones(backend: Any, *shape: int) -> Any:
    return backend.asarray(np.ones(shape))


def _call(backend: Any, fn: str, shapes: list[tuple[int, ...]], *args: Any, **kw: Any) -> Any:
    arrays = [_ones(backend, *s) for s in shapes]
    return getattr(xpconv, fn)(*arrays, *args, **kw)


# (function, array shapes, extra positional arguments, keywords, exception, exact message)
ERRORS: dict[str, tuple[str, list[tuple[int, ...]], tuple[Any, ...], dict[str, Any], Any, str]] = {
    "conv1d_x_1d": (
        "conv1d",
        [(5,), (1, 1, 3)],
        (),
        {},
        ValueError,
        "conv1d expects a 3-D (N, C, L) or 2-D (C, L) input x, got shape (5,)",
    ),
    "conv1d_x_4d": (
        "conv1d",
        [(1, 1, 1, 5), (1, 1, 3)],
        (),
        {},
        ValueError,
        "conv1d expects a 3-D (N, C, L) or 2-D (C, L) input x, got shape (1, 1, 1, 5)",
    ),
    "conv1d_weight_4d": (
        "conv1d",
        [(1, 1, 5), (1, 1, 3, 3)],
        (),
        {},
        ValueError,
        "conv1d expects a 3-D weight (out_channels, in_channels/groups, KL), "
        "got shape (1, 1, 3, 3)",
    ),
    "conv3d_x_3d": (
        "conv3d",
        [(1, 5, 5), (1, 1, 3, 3, 3)],
        (),
        {},
        ValueError,
        "conv3d expects a 5-D (N, C, D, H, W) or 4-D (C, D, H, W) input x, got shape (1, 5, 5)",
    ),
    "conv3d_x_6d": (
        "conv3d",
        [(1, 1, 1, 5, 5, 5), (1, 1, 3, 3, 3)],
        (),
        {},
        ValueError,
        "conv3d expects a 5-D (N, C, D, H, W) or 4-D (C, D, H, W) input x, "
        "got shape (1, 1, 1, 5, 5, 5)",
    ),
    "conv3d_weight_4d": (
        "conv3d",
        [(1, 1, 5, 5, 5), (1, 1, 3, 3)],
        (),
        {},
        ValueError,
        "conv3d expects a 5-D weight (out_channels, in_channels/groups, KD, KH, KW), "
        "got shape (1, 1, 3, 3)",
    ),
    "conv3d_stride_pair": (
        "conv3d",
        [(1, 1, 5, 5, 5), (1, 1, 3, 3, 3)],
        (),
        {"stride": (1, 2)},
        ValueError,
        "stride must be an int or a tuple of 3 ints, got (1, 2)",
    ),
    "conv3d_padding_pair": (
        "conv3d",
        [(1, 1, 5, 5, 5), (1, 1, 3, 3, 3)],
        (),
        {"padding": (1, 2)},
        ValueError,
        "padding must be an int or a tuple of 3 ints, got (1, 2)",
    ),
    "conv3d_dilation_4": (
        "conv3d",
        [(1, 1, 5, 5, 5), (1, 1, 3, 3, 3)],
        (),
        {"dilation": (1, 2, 1, 1)},
        ValueError,
        "dilation must be an int or a tuple of 3 ints, got (1, 2, 1, 1)",
    ),
    "conv_weight_2d": (
        "conv",
        [(1, 1, 5), (1, 3)],
        (),
        {},
        ValueError,
        "conv expects a weight (out_channels, ..., *kernel) with at least one spatial axis, "
        "got shape (1, 3)",
    ),
    "conv_x_rank_of_weight": (
        "conv",
        [(1, 1, 5, 5), (1, 1, 3)],
        (),
        {},
        ValueError,
        "conv expects a 3-D (N, C, L) or 2-D (C, L) input x, got shape (1, 1, 5, 5)",
    ),
    "conv_4d_x_7d": (
        "conv",
        [(1, 1, 1, 4, 4, 4, 4), (1, 1, 2, 2, 2, 2)],
        (),
        {},
        ValueError,
        "conv expects a 6-D (N, C, S1, S2, S3, S4) or 5-D (C, S1, S2, S3, S4) input x, "
        "got shape (1, 1, 1, 4, 4, 4, 4)",
    ),
    "conv_4d_stride_3": (
        "conv",
        [(1, 1, 4, 4, 4, 4), (1, 1, 2, 2, 2, 2)],
        (),
        {"stride": (1, 1, 1)},
        ValueError,
        "stride must be an int or a tuple of 4 ints, got (1, 1, 1)",
    ),
    "conv_4d_padding_word": (
        "conv",
        [(1, 1, 4, 4, 4, 4), (1, 1, 2, 2, 2, 2)],
        (),
        {"padding": "circular"},
        ValueError,
        "padding must be an int, a tuple of 4 ints, 'same', 'valid' or 'full', got 'circular'",
    ),
    "conv_backward_4d_grad_output": (
        "conv_backward",
        [(1, 1, 3, 3, 3, 2), (1, 1, 4, 4, 4, 4), (1, 1, 2, 2, 2, 2)],
        (),
        {},
        ValueError,
        "grad_output must have the conv output shape (1, 1, 3, 3, 3, 3), got (1, 1, 3, 3, 3, 2)",
    ),
    "conv3d_backward_grad_output": (
        "conv3d_backward",
        [(1, 1, 3, 3, 2), (1, 1, 5, 5, 5), (1, 1, 3, 3, 3)],
        (),
        {},
        ValueError,
        "grad_output must have the conv3d output shape (1, 1, 3, 3, 3), got (1, 1, 3, 3, 2)",
    ),
    "conv3d_backward_unbatched_grad_output": (
        "conv3d_backward",
        [(1, 1, 3, 3, 3), (1, 5, 5, 5), (1, 1, 3, 3, 3)],
        (),
        {},
        ValueError,
        "grad_output must have the conv3d output shape (1, 3, 3, 3), got (1, 1, 3, 3, 3)",
    ),
    "conv1d_backward_grad_output": (
        "conv1d_backward",
        [(1, 1, 2), (1, 1, 5), (1, 1, 3)],
        (),
        {},
        ValueError,
        "grad_output must have the conv1d output shape (1, 1, 3), got (1, 1, 2)",
    ),
    "conv1d_backward_weight_3d": (
        "conv1d_backward",
        [(1, 1, 3), (1, 1, 5), (1, 1, 3, 3, 3)],
        (),
        {},
        ValueError,
        "conv1d expects a 3-D weight (out_channels, in_channels/groups, KL), "
        "got shape (1, 1, 3, 3, 3)",
    ),
    "conv_transpose3d_weight_4d": (
        "conv_transpose3d",
        [(1, 1, 3, 3, 3), (1, 1, 2, 2)],
        (),
        {},
        ValueError,
        "conv_transpose3d expects a 5-D weight (in_channels, out_channels/groups, KD, KH, KW), "
        "got shape (1, 1, 2, 2)",
    ),
    "conv_transpose3d_x_3d": (
        "conv_transpose3d",
        [(1, 3, 3), (1, 1, 2, 2, 2)],
        (),
        {},
        ValueError,
        "conv_transpose3d expects a 5-D (N, C, D, H, W) or 4-D (C, D, H, W) input x, "
        "got shape (1, 3, 3)",
    ),
    "conv_transpose3d_stride_pair": (
        "conv_transpose3d",
        [(1, 1, 3, 3, 3), (1, 1, 2, 2, 2)],
        (),
        {"stride": (1, 2)},
        ValueError,
        "stride must be an int or a tuple of 3 ints, got (1, 2)",
    ),
    "conv_transpose3d_output_padding_pair": (
        "conv_transpose3d",
        [(1, 1, 3, 3, 3), (1, 1, 2, 2, 2)],
        (),
        {"stride": 2, "output_padding": (1, 1)},
        ValueError,
        "output_padding must be an int or a tuple of 3 ints, got (1, 1)",
    ),
    "conv_transpose3d_output_padding_too_big": (
        "conv_transpose3d",
        [(1, 1, 3, 3, 3), (1, 1, 2, 2, 2)],
        (),
        {"stride": 2, "output_padding": (1, 2, 1)},
        ValueError,
        "output_padding must be smaller than either stride or dilation, "
        "got output_padding=(1, 2, 1), stride=2, dilation=1",
    ),
    "conv_transpose3d_same": (
        "conv_transpose3d",
        [(1, 1, 3, 3, 3), (1, 1, 2, 2, 2)],
        (),
        {"padding": "same"},
        TypeError,
        "padding must be an int or a tuple of 3 ints for conv_transpose3d, got 'same'",
    ),
    "conv_transpose_x_rank_of_weight": (
        "conv_transpose",
        [(1, 1, 3), (1, 1, 2, 2, 2)],
        (),
        {},
        ValueError,
        "conv_transpose expects a 5-D (N, C, D, H, W) or 4-D (C, D, H, W) input x, "
        "got shape (1, 1, 3)",
    ),
    "conv_transpose_backward_grad_output": (
        "conv_transpose_backward",
        [(1, 1, 3, 3, 3), (1, 1, 3, 3, 3), (1, 1, 2, 2, 2)],
        (),
        {},
        ValueError,
        "grad_output must have the conv_transpose output shape (1, 1, 4, 4, 4), "
        "got (1, 1, 3, 3, 3)",
    ),
    "unfold_x_rank_of_kernel": (
        "unfold",
        [(1, 1, 5, 5, 5)],
        ((2, 2),),
        {},
        ValueError,
        "unfold expects a 4-D (N, C, H, W) or 3-D (C, H, W) input x, got shape (1, 1, 5, 5, 5)",
    ),
    "unfold_x_1d": (
        "unfold",
        [(5,)],
        (2,),
        {},
        ValueError,
        "unfold expects an input x (N, C, *spatial) or (C, *spatial) with at least one "
        "spatial axis, got shape (5,)",
    ),
    "unfold_3d_padding_pair": (
        "unfold",
        [(1, 1, 5, 5, 5)],
        ((2, 2, 2),),
        {"padding": (1, 1)},
        ValueError,
        "padding must be an int or a tuple of 3 ints, got (1, 1)",
    ),
    "unfold_3d_stride_4": (
        "unfold",
        [(1, 1, 5, 5, 5)],
        ((2, 2, 2),),
        {"stride": (1, 1, 1, 1)},
        ValueError,
        "stride must be an int or a tuple of 3 ints, got (1, 1, 1, 1)",
    ),
    "unfold_same": (
        "unfold",
        [(1, 1, 5, 5, 5)],
        ((2, 2, 2),),
        {"padding": "same"},
        TypeError,
        "padding must be an int or a tuple of 3 ints for unfold/fold, got 'same'",
    ),
    "fold_kernel_pair_for_3d": (
        "fold",
        [(1, 8, 27)],
        ((4, 4, 4), (2, 2)),
        {},
        ValueError,
        "kernel_size must be an int or a tuple of 3 ints, got (2, 2)",
    ),
    "fold_windows": (
        "fold",
        [(1, 8, 26)],
        ((4, 4, 4), (2, 2, 2)),
        {},
        ValueError,
        "cols.shape[-1] (26) must equal the number of windows 3x3x3 = 27 for output_size (4, 4, 4)",
    ),
    "fold_rows": (
        "fold",
        [(1, 7, 27)],
        ((4, 4, 4), (2, 2, 2)),
        {},
        ValueError,
        "cols.shape[-2] (7) must be divisible by the kernel volume 2x2x2 = 8",
    ),
    "fold_cols_4d": (
        "fold",
        [(1, 1, 8, 27)],
        ((4, 4, 4), (2, 2, 2)),
        {},
        ValueError,
        "cols must be 3-D (N, C*K, L) or 2-D (C*K, L), got shape (1, 1, 8, 27)",
    ),
    "fold_dilation_pair": (
        "fold",
        [(1, 8, 27)],
        ((4, 4, 4), 2),
        {"dilation": (1, 1)},
        ValueError,
        "dilation must be an int or a tuple of 3 ints, got (1, 1)",
    ),
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors_name_the_argument_and_the_expected_shape(backend: Any, case: str) -> None:
    fn, shapes, args, kw, exc, message = ERRORS[case]
    with pytest.raises(exc, match=f"^{re.escape(message)}$"):
        _call(backend, fn, shapes, *args, **kw)


@pytest.mark.parametrize(
    ("fn", "kw"),
    [("conv1d", {"stride": (1, 2)}), ("conv1d", {"padding": (1, 1)}), ("conv1d", {"dilation": ()})],
)
def test_conv1d_tuple_of_wrong_length(backend: Any, fn: str, kw: dict[str, Any]) -> None:
    """A 1-D function takes an int or a 1-tuple; anything longer (or empty) names the argument."""
    ((name, value),) = kw.items()
    # The message may say "a tuple of 1 int" or "ints"; it names the argument and the value.
    pattern = (
        rf"^{name} must be an int or a (tuple of 1 ints?|1-tuple), got {re.escape(repr(value))}$"
    )
    with pytest.raises(ValueError, match=pattern):
        _call(backend, fn, [(1, 1, 5), (1, 1, 3)], **kw)
