"""Independent float64 oracles for the test suite, written with plain NumPy loops.

Nothing here imports xpconv: these functions are the definitions of the
operations (PyTorch semantics), computed the slow, obvious way, so that a bug in
xpconv's im2col/col2im or geometry code cannot hide in the oracle as well.

Every operation works for any number D >= 1 of spatial dimensions. Each one is a
Python loop over output (or input) positions; at each position a *window* of the
zero-padded input (one dilated slice per spatial axis) is multiplied with the
kernel by ``einsum``, which vectorises only over batch, channels and kernel taps.
``tests/test_reference.py`` checks these loops against PyTorch and unfoldNd
(D = 1, 2, 3) and against identities that need no other library (D = 4).

``SeedConvolutionLayer`` is the original educational layer
(``shared/seed/convolution_layer_seed.txt``) with its lost tokens restored as
DESIGN.md describes: fancy-index im2col with ``k, i, j`` index arrays,
``np.add.at`` col2im, a fused sigmoid and the SGD step inside ``backwardpass``.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "SeedConvolutionLayer",
    "conv",
    "conv2d",
    "conv2d_backward",
    "conv_backward",
    "conv_transpose",
    "conv_transpose2d",
    "explicit_padding",
    "fold",
    "nd_fold",
    "nd_unfold",
    "padding_pairs",
    "same_padding",
    "sigmoid",
    "torch_conv",
    "torch_conv2d",
    "torch_conv2d_grads",
    "torch_conv_grads",
    "torch_conv_transpose",
    "torch_conv_transpose2d",
    "torch_fold",
    "torch_unfold",
    "unfold",
]

Pads = tuple[tuple[int, int], ...]


# --------------------------------------------------------------------------- geometry


def _ntuple(v: int | Sequence[int], d: int) -> tuple[int, ...]:
    """An int repeated ``d`` times, or a sequence of exactly ``d`` ints."""
    if isinstance(v, int | np.integer):
        return (int(v),) * d
    t = tuple(int(e) for e in v)
    if len(t) != d:
        msg = f"expected an int or {d} values, got {v!r}"
        raise ValueError(msg)
    return t


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return _ntuple(v, 2)  # type: ignore[return-value]


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow/JAX 'SAME': output ceil(size/stride), the odd pixel at the end."""
    out = -(-size // stride)
    needed = (out - 1) * stride + (kernel - 1) * dilation + 1
    total = max(needed - size, 0)
    return total // 2, total - total // 2


def _pad_pairs(padding: object, d: int) -> Pads:
    """(before, after) per axis for an int, a D-tuple of ints or D (before, after) pairs."""
    items = [padding] * d if isinstance(padding, int | np.integer) else list(padding)  # type: ignore[call-overload]
    if len(items) != d:
        msg = f"padding {padding!r} does not have {d} entries"
        raise ValueError(msg)
    pairs = []
    for p in items:
        before, after = (p, p) if isinstance(p, int | np.integer) else p
        pairs.append((int(before), int(after)))
    if any(v < 0 for pair in pairs for v in pair):
        msg = f"negative padding {padding!r}"
        raise ValueError(msg)
    return tuple(pairs)


def padding_pairs(
    padding: object,
    size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> Pads:
    """(before, after) zero padding per spatial axis.

    ``padding`` is an int, a D-tuple of ints, 'valid', 'same' (the TensorFlow/JAX
    rule for any stride, see ``same_padding``) or D (before, after) pairs.
    """
    d = len(size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * d
        if padding == "same":
            return tuple(same_padding(*a) for a in zip(size, kernel, stride, dilation, strict=True))
        msg = f"padding must be 'valid' or 'same', got {padding!r}"
        raise ValueError(msg)
    return _pad_pairs(padding, d)


def explicit_padding(
    padding: object,
    size: Sequence[int],
    kernel: Sequence[int],
    stride: Sequence[int],
    dilation: Sequence[int],
) -> tuple[int, ...]:
    """``padding_pairs`` flattened: (before_0, after_0, before_1, after_1, ...).

    In 2-D that is (top, bottom, left, right).
    """
    return tuple(v for pair in padding_pairs(padding, size, kernel, stride, dilation) for v in pair)


def _out_sizes(
    padded: Sequence[int], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> list[int]:
    """Output positions per axis; like torch, no window at all is an error."""
    out = [
        (n - d * (k - 1) - 1) // s + 1
        for n, k, s, d in zip(padded, kernel, stride, dilation, strict=True)
    ]
    if min(out, default=1) < 1:
        msg = f"kernel {tuple(kernel)}, dilation {tuple(dilation)}: no window in {tuple(padded)}"
        raise ValueError(msg)
    return out


def _window(
    pos: tuple[int, ...], kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int]
) -> tuple[slice, ...]:
    """The taps of output position ``pos`` in the padded input: one dilated slice per axis."""
    return tuple(
        slice(p * s, p * s + d * (k - 1) + 1, d)
        for p, k, s, d in zip(pos, kernel, stride, dilation, strict=True)
    )


def _zero_pad(x: np.ndarray, pads: Pads) -> np.ndarray:
    """Zero padding of the trailing ``len(pads)`` axes."""
    return np.pad(x, [(0, 0)] * (x.ndim - len(pads)) + [tuple(p) for p in pads])


def _crop(x: np.ndarray, pads: Pads, size: Sequence[int]) -> np.ndarray:
    """Undo ``_zero_pad``: the ``size`` region after the ``before`` pads."""
    return x[(..., *(slice(b, b + n) for (b, _), n in zip(pads, size, strict=True)))]


def _batched(a: object, d: int) -> tuple[np.ndarray, bool]:
    """(float64 array with a batch axis, whether one was added) for D spatial axes."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == d + 2:
        return a, False
    if a.ndim == d + 1:
        return a[None], True
    msg = f"expected {d + 1} or {d + 2} dimensions for {d} spatial axes, got shape {a.shape}"
    raise ValueError(msg)


def _spatial_dims(*args: object) -> int:
    """D for unfold/fold: the length of any sequence argument, else 2 (as torch's unfold)."""
    lengths = {len(a) for a in args if not isinstance(a, int | np.integer | str)}  # type: ignore[arg-type]
    if len(lengths) > 1:
        msg = f"arguments of different lengths: {args!r}"
        raise ValueError(msg)
    return lengths.pop() if lengths else 2


# --------------------------------------------------------------------------- N-d loop references


def conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: object = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """Cross-correlation, D = weight.ndim - 2: one loop step per output position.

    y[n, o, pos] = bias[o] + sum over c, taps of window(pos)[n, c, taps] * weight[o, c, taps],
    with input channel c taken from the group of output channel o.
    """
    weight = np.asarray(weight, dtype=np.float64)
    d = weight.ndim - 2
    x, unbatched = _batched(x, d)
    n, c, *size = x.shape
    o, cg, *k = weight.shape
    if c != cg * groups or o % groups:
        msg = f"x {x.shape} / weight {weight.shape} do not fit groups={groups}"
        raise ValueError(msg)
    s, dil = _ntuple(stride, d), _ntuple(dilation, d)
    xpad = _zero_pad(x, padding_pairs(padding, size, k, s, dil))
    out = _out_sizes(xpad.shape[2:], k, s, dil)
    xg = xpad.reshape(n, groups, cg, *xpad.shape[2:])
    wg = weight.reshape(groups, o // groups, -1)  # (group, out channel, (channel, *taps))
    y = np.zeros((n, o, *out))
    for pos in np.ndindex(*out):
        win = xg[(..., *_window(pos, k, s, dil))].reshape(n, groups, -1)
        y[(..., *pos)] = np.einsum("ngi,goi->ngo", win, wg).reshape(n, o)
    if bias is not None:
        y += np.asarray(bias, dtype=np.float64).reshape(o, *[1] * d)
    return y[0] if unbatched else y


def conv_backward(
    grad_output: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    *,
    stride: int | Sequence[int] = 1,
    padding: object = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grad_input, grad_weight, grad_bias) of ``sum(conv(x, weight, bias) * grad_output)``.

    The adjoint of ``conv``'s loop: each output position sends its gradient back
    to the window it read (grad_input) and to the taps that read it (grad_weight).
    """
    weight = np.asarray(weight, dtype=np.float64)
    d = weight.ndim - 2
    x, unbatched = _batched(x, d)
    gy, _ = _batched(grad_output, d)
    n, _, *size = x.shape
    o, cg, *k = weight.shape
    s, dil = _ntuple(stride, d), _ntuple(dilation, d)
    pads = padding_pairs(padding, size, k, s, dil)
    xpad = _zero_pad(x, pads)
    out = _out_sizes(xpad.shape[2:], k, s, dil)
    if gy.shape != (n, o, *out):
        msg = f"grad_output shape {gy.shape} is not the output shape {(n, o, *out)}"
        raise ValueError(msg)
    xg = xpad.reshape(n, groups, cg, *xpad.shape[2:])
    wg = weight.reshape(groups, o // groups, cg, *k)
    gyg = gy.reshape(n, groups, o // groups, *out)
    gxg, gwg = np.zeros_like(xg), np.zeros_like(wg)
    for pos in np.ndindex(*out):
        win = (..., *_window(pos, k, s, dil))
        g = gyg[(..., *pos)]  # (batch, group, out channel)
        gxg[win] += np.einsum("ngo,goc...->ngc...", g, wg)
        gwg += np.einsum("ngo,ngc...->goc...", g, xg[win])
    gx = _crop(gxg.reshape(xpad.shape), pads, size)
    gb = gy.sum(axis=(0, *range(2, d + 2)))
    return (gx[0] if unbatched else gx), gwg.reshape(weight.shape), gb


def conv_transpose(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: object = 0,
    output_padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """Transposed convolution (weight (C_in, C_out/groups, *kernel)) by scattering.

    Every input position adds its channels times the kernel into its window of
    the full output; ``padding`` (torch's int or D-tuple, or (before, after)
    pairs) is then cut off. ``output_padding`` extends the full output at the end.
    """
    weight = np.asarray(weight, dtype=np.float64)
    d = weight.ndim - 2
    x, unbatched = _batched(x, d)
    n, cin, *size = x.shape
    _, og, *k = weight.shape
    cg = cin // groups
    s, op, dil = _ntuple(stride, d), _ntuple(output_padding, d), _ntuple(dilation, d)
    pads = _pad_pairs(padding, d)
    full_size = [(size[a] - 1) * s[a] + dil[a] * (k[a] - 1) + 1 + op[a] for a in range(d)]
    out = [full_size[a] - sum(pads[a]) for a in range(d)]
    xg = x.reshape(n, groups, cg, *size)
    wg = weight.reshape(groups, cg, og, *k)
    full = np.zeros((n, groups, og, *full_size))
    for pos in np.ndindex(*size):
        full[(..., *_window(pos, k, s, dil))] += np.einsum(
            "ngc,gco...->ngo...", xg[(..., *pos)], wg
        )
    y = _crop(full.reshape(n, groups * og, *full_size), pads, out)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(-1, *[1] * d)
    return y[0] if unbatched else y


def unfold(
    x: np.ndarray,
    kernel_size: int | Sequence[int],
    *,
    dilation: int | Sequence[int] = 1,
    padding: object = 0,
    stride: int | Sequence[int] = 1,
) -> np.ndarray:
    """im2col: (N, C*prod(kernel), L) for any D.

    Rows run over (channel, kernel offsets row-major), columns over the output
    positions row-major, as torch.nn.functional.unfold. D is the length of any
    tuple argument; with ints only, D = 2 (torch's unfold): give a D-tuple
    kernel_size for other D. Unbatched input (C, *spatial) gives (C*prod(k), L).
    """
    d = _spatial_dims(kernel_size, dilation, padding, stride)
    x, unbatched = _batched(x, d)
    n, c, *size = x.shape
    k, s, dil = _ntuple(kernel_size, d), _ntuple(stride, d), _ntuple(dilation, d)
    xpad = _zero_pad(x, padding_pairs(padding, size, k, s, dil))
    out = _out_sizes(xpad.shape[2:], k, s, dil)
    cols = np.zeros((n, c * math.prod(k), math.prod(out)))
    for col, pos in enumerate(np.ndindex(*out)):
        cols[:, :, col] = xpad[(..., *_window(pos, k, s, dil))].reshape(n, -1)
    return cols[0] if unbatched else cols


def fold(
    cols: np.ndarray,
    output_size: int | Sequence[int],
    kernel_size: int | Sequence[int],
    *,
    dilation: int | Sequence[int] = 1,
    padding: object = 0,
    stride: int | Sequence[int] = 1,
) -> np.ndarray:
    """col2im, the adjoint of ``unfold``: every column adds its window back in.

    Overlapping windows sum. D as in ``unfold`` (output_size counts too);
    unbatched columns (C*prod(k), L) give (C, *output_size).
    """
    d = _spatial_dims(output_size, kernel_size, dilation, padding, stride)
    cols = np.asarray(cols, dtype=np.float64)
    unbatched = cols.ndim == 2
    if unbatched:
        cols = cols[None]
    size, k = _ntuple(output_size, d), _ntuple(kernel_size, d)
    s, dil = _ntuple(stride, d), _ntuple(dilation, d)
    pads = padding_pairs(padding, size, k, s, dil)
    padded = [size[a] + sum(pads[a]) for a in range(d)]
    out = _out_sizes(padded, k, s, dil)
    n, rows, length = cols.shape
    if rows % math.prod(k) or length != math.prod(out):
        msg = f"columns {cols.shape[1:]} do not fit kernel {k} and {out} windows"
        raise ValueError(msg)
    c = rows // math.prod(k)
    img = np.zeros((n, c, *padded))
    for col, pos in enumerate(np.ndindex(*out)):
        img[(..., *_window(pos, k, s, dil))] += cols[:, :, col].reshape(n, c, *k)
    img = _crop(img, pads, size)
    return img[0] if unbatched else img


# --------------------------------------------------------------------------- 2-D names


def _check_2d(weight: np.ndarray) -> np.ndarray:
    weight = np.asarray(weight, dtype=np.float64)
    if weight.ndim != 4:
        msg = f"a 2-D weight has 4 dimensions, got shape {weight.shape}"
        raise ValueError(msg)
    return weight


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
    """``conv`` for a 2-D kernel (weight (O, C/groups, KH, KW))."""
    return conv(
        x, _check_2d(weight), bias, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


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
    """``conv_backward`` for a 2-D kernel."""
    return conv_backward(
        grad_output,
        x,
        _check_2d(weight),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )


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
    """``conv_transpose`` for a 2-D kernel (weight (C_in, C_out/groups, KH, KW))."""
    return conv_transpose(
        x,
        _check_2d(weight),
        bias,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
    )


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
# float64 results of torch.nn.functional, autograd and unfoldNd, as NumPy arrays
# (D = 1, 2, 3: torch has no 4-D convolution). Padding that torch takes itself
# (ints, D-tuples, 'valid', 'same' at stride 1) is passed to torch; 'same' at a
# larger stride and (before, after) pairs become explicit, possibly asymmetric,
# zero padding with F.pad first, so every stride works.


def _tensor(a: object) -> Any:
    import torch

    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def _torch_conv_tensors(
    xt: Any,
    wt: Any,
    bt: Any,
    *,
    stride: int | Sequence[int],
    padding: object,
    dilation: int | Sequence[int],
    groups: int,
) -> Any:
    """F.conv1d/2d/3d on tensors (differentiable), 'same' at any stride and pairs included."""
    import torch

    f = torch.nn.functional
    d = wt.ndim - 2
    s, dil = _ntuple(stride, d), _ntuple(dilation, d)
    items = [padding] if isinstance(padding, int | np.integer | str) else list(padding)  # type: ignore[call-overload]
    ints = all(isinstance(p, int | np.integer) for p in items)
    if not (ints or padding == "valid" or (padding == "same" and s == (1,) * d)):
        pads = padding_pairs(padding, tuple(xt.shape[-d:]), tuple(wt.shape[2:]), s, dil)
        xt = f.pad(xt, [v for pair in reversed(pads) for v in pair])
        padding = 0
    if not isinstance(padding, str):
        padding = _ntuple(padding, d)  # type: ignore[arg-type]
    conv_nd = {1: f.conv1d, 2: f.conv2d, 3: f.conv3d}[d]
    with warnings.catch_warnings():  # torch pads a copy for 'same' with even kernels: fine here
        warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)
        return conv_nd(xt, wt, bt, stride=s, padding=padding, dilation=dil, groups=groups)


def torch_conv(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | Sequence[int] = 1,
    padding: object = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> np.ndarray:
    """torch.nn.functional.conv1d/2d/3d (D = weight.ndim - 2)."""
    b = None if bias is None else _tensor(bias)
    return _torch_conv_tensors(
        _tensor(x),
        _tensor(weight),
        b,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    ).numpy()


def torch_conv_grads(
    grad_output: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    *,
    stride: int | Sequence[int] = 1,
    padding: object = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dL/dx, dL/dW, dL/db) of ``sum(conv(x, W, b) * grad_output)`` by torch autograd."""
    import torch

    xt = _tensor(x).requires_grad_()
    wt = _tensor(weight).requires_grad_()
    bt = torch.zeros(wt.shape[0], dtype=torch.float64, requires_grad=True)
    y = _torch_conv_tensors(
        xt, wt, bt, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    y.backward(_tensor(grad_output))
    return xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def torch_conv_transpose(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, **kwargs: object
) -> np.ndarray:
    """torch.nn.functional.conv_transpose1d/2d/3d (D = weight.ndim - 2)."""
    import torch

    f = torch.nn.functional
    wt = _tensor(weight)
    conv_nd = {1: f.conv_transpose1d, 2: f.conv_transpose2d, 3: f.conv_transpose3d}[wt.ndim - 2]
    b = None if bias is None else _tensor(bias)
    return conv_nd(_tensor(x), wt, b, **kwargs).numpy()


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
    """``torch_conv`` for a 2-D kernel."""
    return torch_conv(
        x, _check_2d(weight), bias, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


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
    """``torch_conv_grads`` for a 2-D kernel."""
    return torch_conv_grads(
        grad_output,
        x,
        _check_2d(weight),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )


def torch_conv_transpose2d(
    x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, **kwargs: object
) -> np.ndarray:
    """``torch_conv_transpose`` for a 2-D kernel."""
    return torch_conv_transpose(x, _check_2d(weight), bias, **kwargs)


def torch_unfold(x: np.ndarray, kernel_size: object, **kwargs: object) -> np.ndarray:
    """torch.nn.functional.unfold (2-D only)."""
    import torch

    return torch.nn.functional.unfold(_tensor(x), kernel_size, **kwargs).numpy()


def torch_fold(
    cols: np.ndarray, output_size: object, kernel_size: object, **kwargs: object
) -> np.ndarray:
    """torch.nn.functional.fold (2-D only)."""
    import torch

    return torch.nn.functional.fold(_tensor(cols), output_size, kernel_size, **kwargs).numpy()


def nd_unfold(x: np.ndarray, kernel_size: object, **kwargs: object) -> np.ndarray:
    """unfoldNd.unfoldNd: batched x only, D = x.ndim - 2 in 1, 2, 3."""
    from unfoldNd import unfoldNd

    return unfoldNd(_tensor(x), kernel_size, **kwargs).numpy()


def nd_fold(
    cols: np.ndarray, output_size: int | Sequence[int], kernel_size: object, **kwargs: object
) -> np.ndarray:
    """unfoldNd.foldNd: batched columns only, D as in ``fold`` (1, 2, 3)."""
    from unfoldNd import foldNd

    d = _spatial_dims(output_size, kernel_size, *kwargs.values())
    return foldNd(_tensor(cols), _ntuple(output_size, d), kernel_size, **kwargs).numpy()


# --------------------------------------------------------------------------- comparison

RTOL = {"float64": 1e-10, "float32": 1e-4, "complex128": 1e-10, "complex64": 1e-4}


def dtype_name(dtype: object) -> str:
    """'float32' / 'float64' / 'complex128' ... for a dtype of any backend."""
    text = str(dtype)
    for name in ("float64", "float32", "float16", "complex128", "complex64"):
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
    got = backend.to_numpy(actual)  # type: ignore[attr-defined]
    got = got.astype(np.complex128 if np.iscomplexobj(got) else np.float64)
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
