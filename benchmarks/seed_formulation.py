"""The seed layer's formulation, re-implemented as a benchmark baseline.

``seed/convolution_layer_seed.txt`` computes a convolution with

* im2col by fancy indexing: ``X[:, k, i, j]`` with index arrays ``k``
  (channel), ``i`` (row) and ``j`` (column) of shape (C*KH*KW, OH*OW),
  then ``.transpose(1, 2, 0).reshape(C*KH*KW, -1)``: columns ordered
  (output pixel, sample);
* one matrix product with the (O, C*KH*KW) weight;
* col2im by ``np.add.at(new_delta, (slice(None), k, i, j), cols)``.

This module keeps exactly that formulation and drops what is not convolution:
no sigmoid, no SGD step inside the backward pass. Its backward returns the
input, weight and bias gradients, like :func:`xpconv.conv2d_backward`, and uses
the columns cached by the forward pass (as the seed does), so its backward does
not pay for im2col again. Extensions needed by the benchmark layers, written
in the seed's style: zero padding (``pad``), dilation (scaled offsets in the
index arrays) and groups (a grouped matrix product).

The same code runs on CuPy arrays (``cupy.add.at`` is ``cupyx.scatter_add``),
which is the "naive CuPy port of the seed" the GPU benchmark compares with.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["backward", "forward", "indices"]


def _module(x: Any) -> Any:
    if type(x).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def indices(
    c: int, kh: int, kw: int, oh: int, ow: int, stride: int, dilation: int, xp: Any = np
) -> tuple[Any, Any, Any]:
    """The seed's ``k, i, j`` index arrays (with dilation)."""
    i0 = xp.tile(xp.repeat(xp.arange(kh) * dilation, kw), c).reshape(-1, 1)
    i1 = stride * xp.repeat(xp.arange(oh), ow).reshape(1, -1)
    j0 = xp.tile(xp.arange(kw) * dilation, kh * c).reshape(-1, 1)
    j1 = stride * xp.tile(xp.arange(ow), oh).reshape(1, -1)
    k = xp.repeat(xp.arange(c), kh * kw).reshape(-1, 1)
    return k, i0 + i1, j0 + j1


def forward(
    x: Any,
    weight: Any,
    bias: Any,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
) -> tuple[Any, tuple[Any, ...]]:
    """Convolution output (N, O, OH, OW) and the cache the backward pass needs."""
    xp = _module(x)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh = (h + 2 * padding - dilation * (kh - 1) - 1) // stride + 1
    ow = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    xpad = xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    k, i, j = indices(c, kh, kw, oh, ow, stride, dilation, xp)
    cols = xpad[:, k, i, j].transpose(1, 2, 0).reshape(c * kh * kw, -1)  # (CKK, L*N)
    w_flat = weight.reshape(groups, o // groups, -1)
    out = xp.matmul(w_flat, cols.reshape(groups, -1, cols.shape[-1])).reshape(o, -1)
    out = out + bias.reshape(-1, 1)
    y = out.reshape(o, oh, ow, n).transpose(3, 0, 1, 2)
    cache = (cols, xpad.shape, (k, i, j), padding, weight, groups)
    return y, cache


def backward(grad_output: Any, cache: tuple[Any, ...]) -> tuple[Any, Any, Any]:
    """Input, weight and bias gradients from dL/dy and the forward cache."""
    cols, padded_shape, (k, i, j), padding, weight, groups = cache
    xp = _module(grad_output)
    n = grad_output.shape[0]
    o = weight.shape[0]
    g_flat = grad_output.transpose(1, 2, 3, 0).reshape(groups, o // groups, -1)
    w_flat = weight.reshape(groups, o // groups, -1)
    cols_g = cols.reshape(groups, -1, cols.shape[-1])
    grad_w = xp.matmul(g_flat, cols_g.transpose(0, 2, 1)).reshape(weight.shape)
    dcols = xp.matmul(w_flat.transpose(0, 2, 1), g_flat).reshape(cols.shape[0], -1, n)
    dcols = dcols.transpose(2, 0, 1)
    grad_pad = xp.zeros(padded_shape, dtype=dcols.dtype)
    xp.add.at(grad_pad, (slice(None), k, i, j), dcols)
    if padding:
        grad_pad = grad_pad[:, :, padding:-padding, padding:-padding]
    grad_b = grad_output.sum(axis=(0, 2, 3))
    return grad_pad, grad_w, grad_b
