"""Independent float64 oracles for the test suite, written with plain NumPy loops.

Nothing here imports xpconv: these functions are the definitions of the
operations (PyTorch semantics), computed the slow, obvious way, so that a bug in
xpconv's im2col/col2im or geometry code cannot hide in the oracle as well.

``SeedConvolutionLayer`` is the original educational layer
(``shared/seed/convolution_layer_seed.txt``) with its lost tokens restored as
DESIGN.md describes: fancy-index im2col with ``k, i, j`` index arrays,
``np.add.at`` col2im, a fused sigmoid and the SGD step inside ``backwardpass``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "SeedConvolutionLayer",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "fold",
    "same_padding",
    "sigmoid",
    "unfold",
]


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow/JAX 'SAME': output ceil(size/stride), the odd pixel at the end."""
    out = -(-size // stride)
    needed = (out - 1) * stride + (kernel - 1) * dilation + 1
    total = max(needed - size, 0)
    return total // 2, total - total // 2


def explicit_padding(
    padding: object,
    hw: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for an int, a pair, 'valid' or 'same'."""
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "same":
        t, b = same_padding(hw[0], kernel[0], stride[0], dilation[0])
        left, r = same_padding(hw[1], kernel[1], stride[1], dilation[1])
        return t, b, left, r
    ph, pw = _pair(padding)  # type: ignore[arg-type]
    return ph, ph, pw, pw


def _zero_pad(x: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    n, c, h, w = x.shape
    top, bottom, left, right = pad
    out = np.zeros((n, c, h + top + bottom, w + left + right), dtype=np.float64)
    out[:, :, top : top + h, left : left + w] = x
    return out


def _out_size(size: int, kernel: int, stride: int, dilation: int) -> int:
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: object = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """Cross-correlation by direct summation: one loop per output pixel and kernel tap."""
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    n, _, h, w = x.shape
    o, cg, kh, kw = weight.shape
    s, d = _pair(stride), _pair(dilation)
    xpad = _zero_pad(x, explicit_padding(padding, (h, w), (kh, kw), s, d))
    oh = _out_size(xpad.shape[2], kh, s[0], d[0])
    ow = _out_size(xpad.shape[3], kw, s[1], d[1])
    og = o // groups
    y = np.zeros((n, o, oh, ow))
    for b in range(n):
        for oc in range(o):
            g = oc // og
            for r in range(oh):
                for q in range(ow):
                    acc = 0.0
                    for ic in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                acc += (
                                    xpad[b, g * cg + ic, r * s[0] + i * d[0], q * s[1] + j * d[1]]
                                    * weight[oc, ic, i, j]
                                )
                    y[b, oc, r, q] = acc
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return y[0] if unbatched else y


def conv2d_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    *,
    stride: int | tuple[int, int] = 1,
    padding: object = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grad_input, grad_weight, grad_bias) by the chain rule, element by element."""
    x = np.asarray(x, dtype=np.float64)
    gy = np.asarray(grad_output, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x, gy = x[None], gy[None]
    n, _, h, w = x.shape
    o, cg, kh, kw = weight.shape
    s, d = _pair(stride), _pair(dilation)
    pad = explicit_padding(padding, (h, w), (kh, kw), s, d)
    xpad = _zero_pad(x, pad)
    gxpad = np.zeros_like(xpad)
    gw = np.zeros_like(weight)
    og = o // groups
    _, _, oh, ow = gy.shape
    for b in range(n):
        for oc in range(o):
            g = oc // og
            for r in range(oh):
                for q in range(ow):
                    gval = gy[b, oc, r, q]
                    for ic in range(cg):
                        for i in range(kh):
                            for j in range(kw):
                                rr, qq = r * s[0] + i * d[0], q * s[1] + j * d[1]
                                gw[oc, ic, i, j] += gval * xpad[b, g * cg + ic, rr, qq]
                                gxpad[b, g * cg + ic, rr, qq] += gval * weight[oc, ic, i, j]
    gx = gxpad[:, :, pad[0] : pad[0] + h, pad[2] : pad[2] + w]
    gb = gy.sum(axis=(0, 2, 3))
    return (gx[0] if unbatched else gx), gw, gb


def conv_transpose2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """Transposed convolution by scattering every input pixel times the kernel."""
    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    n, cin, h, w = x.shape
    _, og, kh, kw = weight.shape
    s, p, op, d = _pair(stride), _pair(padding), _pair(output_padding), _pair(dilation)
    hout = (h - 1) * s[0] - 2 * p[0] + d[0] * (kh - 1) + op[0] + 1
    wout = (w - 1) * s[1] - 2 * p[1] + d[1] * (kw - 1) + op[1] + 1
    cg = cin // groups
    full = np.zeros((n, og * groups, hout + 2 * p[0], wout + 2 * p[1]))
    for b in range(n):
        for ic in range(cin):
            g = ic // cg
            for r in range(h):
                for q in range(w):
                    for oc in range(og):
                        for i in range(kh):
                            for j in range(kw):
                                full[b, g * og + oc, r * s[0] + i * d[0], q * s[1] + j * d[1]] += (
                                    x[b, ic, r, q] * weight[ic, oc, i, j]
                                )
    y = full[:, :, p[0] : p[0] + hout, p[1] : p[1] + wout]
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return y[0] if unbatched else y


def unfold(
    x: np.ndarray,
    kernel_size: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> np.ndarray:
    """im2col: (N, C*KH*KW, L), rows (channel, kernel row, kernel column)."""
    x = np.asarray(x, dtype=np.float64)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    n, c, _, _ = x.shape
    (kh, kw), s, d = _pair(kernel_size), _pair(stride), _pair(dilation)
    ph, pw = _pair(padding)
    xpad = _zero_pad(x, (ph, ph, pw, pw))
    oh = _out_size(xpad.shape[2], kh, s[0], d[0])
    ow = _out_size(xpad.shape[3], kw, s[1], d[1])
    cols = np.zeros((n, c * kh * kw, oh * ow))
    for b in range(n):
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    row = (ch * kh + i) * kw + j
                    for r in range(oh):
                        for q in range(ow):
                            cols[b, row, r * ow + q] = xpad[
                                b, ch, r * s[0] + i * d[0], q * s[1] + j * d[1]
                            ]
    return cols[0] if unbatched else cols


def fold(
    cols: np.ndarray,
    output_size: int | tuple[int, int],
    kernel_size: int | tuple[int, int],
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
) -> np.ndarray:
    """col2im: add every column entry back to the pixel it was read from."""
    cols = np.asarray(cols, dtype=np.float64)
    unbatched = cols.ndim == 2
    if unbatched:
        cols = cols[None]
    (h, w), (kh, kw), s, d = _pair(output_size), _pair(kernel_size), _pair(stride), _pair(dilation)
    ph, pw = _pair(padding)
    n, rows, _ = cols.shape
    c = rows // (kh * kw)
    oh = _out_size(h + 2 * ph, kh, s[0], d[0])
    ow = _out_size(w + 2 * pw, kw, s[1], d[1])
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    for b in range(n):
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    row = (ch * kh + i) * kw + j
                    for r in range(oh):
                        for q in range(ow):
                            out[b, ch, r * s[0] + i * d[0], q * s[1] + j * d[1]] += cols[
                                b, row, r * ow + q
                            ]
    out = out[:, :, ph : ph + h, pw : pw + w]
    return out[0] if unbatched else out


# --------------------------------------------------------------------------- the seed


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class SeedConvolutionLayer:
    """The original NumPy layer, repaired (the three lost tokens restored), nothing else changed."""

    def __init__(self, in_channels, filter_size, numfilters, stride):
        self.in_depth, self.in_row, self.in_col = in_channels
        self.filter_row, self.filter_col = filter_size
        self.stride = stride

        self.out_depth = numfilters
        self.out_row = int((self.in_row - self.filter_row) / self.stride + 1)
        self.out_col = int((self.in_col - self.filter_col) / self.stride + 1)

        self.weights = np.random.normal(  # noqa: NPY002  (the seed uses the global state)
            0, 0.1, (self.out_depth, self.in_depth, self.filter_row, self.filter_col)
        )
        self.biases = np.random.normal(0, 0.1, self.out_depth)  # noqa: NPY002

        i_filter_indices = (
            np.tile(np.repeat(np.arange(self.filter_row), self.filter_col), self.in_depth)
            .reshape(-1, 1)
            .astype(int)
        )
        i_convolve_indices = self.stride * np.repeat(np.arange(self.out_row), self.out_col).reshape(
            1, -1
        ).astype(int)
        self.i = i_filter_indices + i_convolve_indices

        j_filter_indices = (
            np.tile(np.arange(self.filter_col), self.filter_row * self.in_depth)
            .reshape(-1, 1)
            .astype(int)
        )
        j_convolve_indices = self.stride * np.tile(np.arange(self.out_col), self.out_row).reshape(
            1, -1
        ).astype(int)
        self.j = j_filter_indices + j_convolve_indices

        self.k = (
            np.repeat(np.arange(self.in_depth), self.filter_row * self.filter_col)
            .reshape(-1, 1)
            .astype(int)
        )

    def forwardpass(self, X):
        n = X.shape[0]
        X_flattened = (
            X[:, self.k, self.i, self.j]
            .transpose(1, 2, 0)
            .reshape(self.in_depth * self.filter_row * self.filter_col, -1)
        )
        W_flattened = self.weights.reshape(self.out_depth, -1)
        out_activation = sigmoid(W_flattened @ X_flattened + self.biases.reshape(-1, 1))
        out_activation = out_activation.reshape(
            self.out_depth, self.out_row, self.out_col, n
        ).transpose(3, 0, 1, 2)
        self.cache = (out_activation, X_flattened)  # restored token
        return out_activation

    def backwardpass(self, lr, activation_prev, delta):
        n = activation_prev.shape[0]
        out_activation, X_flattened = self.cache  # restored token
        del_in = delta * out_activation * (1 - out_activation)

        del_in_flattened = del_in.transpose(1, 2, 3, 0).reshape(self.out_depth, -1)
        W_flattened = self.weights.reshape(self.out_depth, -1)
        new_delta_flattened = W_flattened.T @ del_in_flattened
        new_delta_flattened = new_delta_flattened.reshape(
            self.in_depth * self.filter_row * self.filter_col, -1, n
        ).transpose(2, 0, 1)

        new_delta = np.zeros(
            (n, self.in_depth, self.in_row, self.in_col), dtype=new_delta_flattened.dtype
        )
        np.add.at(  # restored token
            new_delta, (slice(None), self.k, self.i, self.j), new_delta_flattened
        )

        self.biases -= lr * np.sum(del_in, axis=(0, 2, 3))
        self.weights -= lr * (del_in_flattened @ X_flattened.T).reshape(self.weights.shape)
        return new_delta


# --------------------------------------------------------------------------- PyTorch oracles
# float64 results of torch.nn.functional and autograd, as NumPy arrays. 'same'
# is applied as explicit (possibly asymmetric) zero padding, so every stride works.


def _torch_padded(x: np.ndarray, padding: object, weight_hw, stride, dilation):
    import torch

    t = torch.from_numpy(np.asarray(x, dtype=np.float64))
    hw = tuple(t.shape[-2:])
    top, bottom, left, right = explicit_padding(
        padding, hw, tuple(weight_hw), _pair(stride), _pair(dilation)
    )
    return torch.nn.functional.pad(t, (left, right, top, bottom))


def torch_conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: object = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> np.ndarray:
    import torch

    w = torch.from_numpy(np.asarray(weight, dtype=np.float64))
    b = None if bias is None else torch.from_numpy(np.asarray(bias, dtype=np.float64))
    xt = _torch_padded(x, padding, w.shape[-2:], stride, dilation)
    y = torch.nn.functional.conv2d(xt, w, b, stride=stride, dilation=dilation, groups=groups)
    return y.numpy()


def torch_conv2d_grads(
    grad_output: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    *,
    stride: int | tuple[int, int] = 1,
    padding: object = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dL/dx, dL/dW, dL/db) of ``sum(conv2d(x, W, b) * grad_output)`` by torch autograd."""
    import torch

    xt = torch.from_numpy(np.asarray(x, dtype=np.float64)).requires_grad_()
    wt = torch.from_numpy(np.asarray(weight, dtype=np.float64)).requires_grad_()
    bt = torch.zeros(wt.shape[0], dtype=torch.float64, requires_grad=True)
    top, bottom, left, right = explicit_padding(
        padding, tuple(xt.shape[-2:]), tuple(wt.shape[-2:]), _pair(stride), _pair(dilation)
    )
    y = torch.nn.functional.conv2d(
        torch.nn.functional.pad(xt, (left, right, top, bottom)),
        wt,
        bt,
        stride=stride,
        dilation=dilation,
        groups=groups,
    )
    y.backward(torch.from_numpy(np.asarray(grad_output, dtype=np.float64)))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def torch_conv_transpose2d(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, **kwargs: object
) -> np.ndarray:
    import torch

    b = None if bias is None else torch.from_numpy(np.asarray(bias, dtype=np.float64))
    return torch.nn.functional.conv_transpose2d(
        torch.from_numpy(np.asarray(x, dtype=np.float64)),
        torch.from_numpy(np.asarray(weight, dtype=np.float64)),
        b,
        **kwargs,
    ).numpy()


def torch_unfold(x: np.ndarray, kernel_size: object, **kwargs: object) -> np.ndarray:
    import torch

    return torch.nn.functional.unfold(
        torch.from_numpy(np.asarray(x, dtype=np.float64)), kernel_size, **kwargs
    ).numpy()


def torch_fold(
    cols: np.ndarray, output_size: object, kernel_size: object, **kwargs: object
) -> np.ndarray:
    import torch

    return torch.nn.functional.fold(
        torch.from_numpy(np.asarray(cols, dtype=np.float64)), output_size, kernel_size, **kwargs
    ).numpy()


# --------------------------------------------------------------------------- comparison

RTOL = {"float64": 1e-10, "float32": 1e-4}


def dtype_name(dtype: object) -> str:
    """'float32' / 'float64' for a dtype of any backend."""
    text = str(dtype)
    for name in ("float64", "float32", "float16"):
        if name in text:
            return name
    msg = f"unexpected dtype {dtype!r}"
    raise AssertionError(msg)


def assert_close(
    backend: object,
    actual: object,
    expected: np.ndarray,
    *,
    like: object,
    dtype: object = None,
    rtol: float | None = None,
) -> None:
    """Check namespace, dtype, shape and device of ``actual``, then its values.

    ``like`` is an input array of the call: the result must be in its namespace
    (the backend's) and on its device, with dtype ``dtype`` (default: like's).
    Values are compared with NumPy to ``rtol`` relative to the largest magnitude
    of ``expected`` (float32: 1e-4, float64: 1e-10 by default).
    """
    import array_api_compat

    xp = backend.xp  # type: ignore[attr-defined]
    assert array_api_compat.array_namespace(actual) is xp, (
        f"result namespace {array_api_compat.array_namespace(actual)} is not {xp}"
    )
    want_dtype = like.dtype if dtype is None else dtype  # type: ignore[attr-defined]
    assert actual.dtype == want_dtype, f"dtype {actual.dtype} != {want_dtype}"  # type: ignore[attr-defined]
    assert tuple(actual.shape) == tuple(expected.shape), (  # type: ignore[attr-defined]
        f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"  # type: ignore[attr-defined]
    )
    assert array_api_compat.device(actual) == array_api_compat.device(like), (
        f"device {array_api_compat.device(actual)} != {array_api_compat.device(like)}"
    )
    if rtol is None:
        rtol = RTOL[dtype_name(want_dtype)]
    got = backend.to_numpy(actual).astype(np.float64)  # type: ignore[attr-defined]
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * max(scale, 1e-300))


def assert_routes_agree(backend: object, first: object, second: object, dtype: str) -> None:
    """Two backend arrays from different routes agree to rounding.

    The tolerance (float32: 1e-5, float64: 1e-12) is relative to the largest
    magnitude: sums with cancellation carry absolute errors of that order, and
    their size depends on the order the BLAS adds in (which is CPU-dependent).
    """
    to_numpy = backend.to_numpy  # type: ignore[attr-defined]
    a, b = to_numpy(first), to_numpy(second)
    tol = 1e-5 if dtype == "float32" else 1e-12
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(scale, 1.0))


# --------------------------------------------------------------------------- test matrix

# Eager JAX compiles every operation for every new shape, and Dask builds a task
# graph per call: on these backends a fixed case costs seconds, not milliseconds.
# They run a representative subset of the parametrized cases (and fewer
# hypothesis examples); numpy, array_api_strict and torch run them all.
# XPCONV_TEST_THOROUGH=1 runs every case on every backend.
SLOW_BACKENDS = ("jax", "dask")
THOROUGH = os.environ.get("XPCONV_TEST_THOROUGH", "").strip() not in ("", "0")


def thin(values: Iterable[str], keep: Iterable[str]) -> list[Any]:
    """``pytest.param`` for each value; those not in ``keep`` skip on the slow backends."""
    keep = set(keep)
    reason = "thinned on slow eager backends (set XPCONV_TEST_THOROUGH=1 to run)"
    params = []
    for value in values:
        marks = (
            []
            if THOROUGH or value in keep
            else [pytest.mark.skip_xp_backend(b, reason=reason) for b in SLOW_BACKENDS]
        )
        params.append(pytest.param(value, marks=marks, id=str(value)))
    return params


def is_slow(backend: Any) -> bool:
    return not THOROUGH and backend.backend.value in SLOW_BACKENDS
