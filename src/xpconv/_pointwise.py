"""Pointwise convolutions (a 1x1... kernel, stride 1, no padding, one group): no im2col.

The columns of sample ``n`` are ``x[n]`` itself, a (C, L) matrix, so the
forward pass is ``W (O, C) @ x[n]``, the input gradient ``W^T @ gy[n]`` and
the weight gradient ``sum_n gy[n] @ x[n]^T``: three stacked matrix products
on the arrays as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xpconv._backend import contiguous
from xpconv._tiles import even_split

if TYPE_CHECKING:
    from xpconv._geometry import ConvGeometry

__all__ = ["pointwise_forward", "pointwise_input_grad", "pointwise_weight_grad"]

Array = Any
Namespace = Any


def _matrices(a: Array, channels: int, xp: Namespace) -> Array:
    """(N, channels, *spatial) as (N, channels, L): a view."""
    return xp.reshape(a, (a.shape[0], channels, -1))


def pointwise_forward(x: Array, weight: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    w2 = xp.reshape(weight, (geom.out_channels, geom.in_channels))
    return xp.reshape(xp.matmul(w2, _matrices(x, geom.in_channels, xp)), geom.output_shape)


def pointwise_input_grad(gy: Array, weight: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    w2 = xp.reshape(weight, (geom.out_channels, geom.in_channels))
    gx = xp.matmul(xp.matrix_transpose(w2), _matrices(gy, geom.out_channels, xp))
    return xp.reshape(gx, geom.input_shape)


def pointwise_weight_grad(
    gy: Array, x: Array, geom: ConvGeometry, item_bytes: int, limit: int | None, xp: Namespace
) -> Array:
    """``sum_n gy[n] @ x[n]^T``, over batch chunks whose (n, O, C) products fit in ``limit``.

    The operand with more rows goes on the left (``x[n] @ gy[n]^T``, (C, O),
    for C >= O, then one transpose), as in the im2col weight gradient: the
    BLAS is faster that way round (``docs/performance.md``, design-pointwise).
    """
    c, o = geom.in_channels, geom.out_channels
    x3, gy3 = _matrices(x, c, xp), _matrices(gy, o, xp)
    channels_left = c >= o
    most = geom.batch if limit is None else limit // (o * c * item_bytes)
    grad_w = None
    for chunk in even_split(geom.batch, most):
        xs, gys = x3[chunk, ...], gy3[chunk, ...]
        if channels_left:
            products = xp.matmul(xs, xp.matrix_transpose(gys))  # (n, C, O)
        else:
            products = xp.matmul(gys, xp.matrix_transpose(xs))  # (n, O, C)
        part = xp.sum(products, axis=0)
        grad_w = part if grad_w is None else grad_w + part
    assert grad_w is not None
    if channels_left:
        grad_w = contiguous(xp.matrix_transpose(grad_w))
    return xp.reshape(grad_w, geom.weight_shape)
