"""The im2col route: each pass a loop over tiles of im2col columns and matrix products.

For every tile (:mod:`xpconv._tiles`) the input band is padded on its own
(:func:`xpconv._im2col.pad_region`), unfolded in GEMM order into one reused
buffer (:func:`xpconv._im2col.im2col_gemm`) and multiplied, one product per
group::

    forward        y      = W (g, O/g, C/g*K) @ cols (g, C/g*K, n*L)
    weight grad    dW    += gy (g, O/g, n*L) @ cols^T
    input grad     dcols  = W^T @ gy, then col2im adds dcols into dx

A layer with few column rows (``Route.per_sample``) multiplies sample by
sample instead, on (n, C*K, L) views of the columns and on grad_output as it
is: the output comes out in (N, O, ...) order with no transposed copy. Such
a layer also carries its bias in the products (``Route.fold_bias``): a row of
ones under the columns and the bias as the weight's last column, so the
weight gradient's last column is the bias gradient.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from xpconv._backend import (
    add_into,
    contiguous,
    device_of,
    flat_view,
    itemsize,
    matmul_into,
    set_into,
)
from xpconv._im2col import col2im_gemm, covering_tap, im2col_gemm, pad_region
from xpconv._tiles import Tiling, plan_tiles

if TYPE_CHECKING:
    from xpconv._engine import Route
    from xpconv._geometry import ConvGeometry
    from xpconv._tiles import Tile

__all__ = ["gemm_forward", "gemm_input_grad", "gemm_weight_grad"]

Array = Any
Namespace = Any


def _tiling(route: Route, like: Array, xp: Namespace, *, ones_row: bool) -> Tiling:
    geom = route.geom
    rows = geom.column_rows + int(ones_row)
    band_bytes = rows * (geom.out_volume // geom.out_size[0]) * itemsize(like.dtype, xp)
    return plan_tiles(geom, band_bytes, route.limit)


def _columns_buffer(route: Route, like: Array, tiling: Tiling, *, ones_row: bool) -> Array | None:
    """The reused im2col buffer, sized for the largest tile (None without scratch buffers)."""
    if not route.caps.scratch:
        return None
    sub = tiling.largest.geom
    size = (sub.column_rows + int(ones_row)) * sub.batch * sub.out_volume
    return route.scratch.buffer(like, size, "columns")


def _pad_buffer(route: Route, like: Array, tiling: Tiling) -> Array | None:
    """The reused buffer for one tile's padded input (None without padding or scratch)."""
    if not (route.caps.scratch and route.geom.is_padded):
        return None
    sub = tiling.largest.geom  # its in_size is the padded band it reads
    return route.scratch.buffer(like, math.prod(sub.input_shape), "padded")


def _columns(x: Array, tile: Tile, route: Route, xp: Namespace, bufs: tuple[Any, Any]) -> Array:
    """The tile's im2col columns (C*K [+1], n*L), in the columns buffer where there is one."""
    buf, pad_buf = bufs
    padded = pad_region(x, route.geom, tile, xp, out=pad_buf, mode=route.padding_mode)
    return im2col_gemm(
        padded, tile.geom, xp, out=buf, ones_row=route.fold_bias, native=route.caps.scratch
    )


def _grouped_weight(weight: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """(O, C/g, *kernel) -> (g, O/g, C/g*K)."""
    g = geom.groups
    return xp.reshape(weight, (g, geom.out_channels // g, -1))


def _grouped_cols(cols: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """(C*K, M) -> (g, C/g*K, M); the channels of a group are contiguous rows."""
    return xp.reshape(cols, (geom.groups, -1, cols.shape[-1]))


def _product(a: Array, b: Array, xp: Namespace, out: Array | None = None) -> Array:
    """Grouped matrix product (g, m, k) @ (g, k, n) -> (g, m, n).

    With one group the product is done on 2-D arrays: NumPy's stacked
    ``matmul`` does not hand a transposed operand to the BLAS, its 2-D
    ``matmul`` does.
    """
    if a.shape[0] == 1:
        return xp.expand_dims(matmul_into(a[0, ...], b[0, ...], out), axis=0)
    return matmul_into(a, b, out)


def _output_matrix(gy: Array, geom: ConvGeometry, tile: Tile, xp: Namespace) -> Array:
    """One tile of (N, O, *out_size) as a (g, O/g, n*L) matrix (a copy, in GEMM order)."""
    part = gy[tile.output_key]
    by_channel = xp.permute_dims(part, (1, 0, *range(2, part.ndim)))
    return xp.reshape(by_channel, (geom.groups, geom.out_channels // geom.groups, -1))


def _output_by_sample(gy: Array, tile: Tile, xp: Namespace) -> Array:
    """One tile of (N, O, *out_size) as (n, O, L): a view unless the tile is a band."""
    part = gy[tile.output_key]
    return xp.reshape(part, (part.shape[0], part.shape[1], -1))


def _tile_output(
    wg: Array, cols: Array, tile: Tile, route: Route, xp: Namespace, into: Array | None = None
) -> Array:
    """The tile's output (n, O, *out_size) from its columns.

    A per-sample product is written into ``into`` (a flat view of the
    tile's region of the output) when given.
    """
    sub, geom = tile.geom, route.geom
    if route.per_sample:
        # (n, C*K, L) views of the columns, one product per sample: the
        # result is already in (N, O, ...) order.
        by_sample = xp.permute_dims(
            xp.reshape(cols, (cols.shape[0], sub.batch, sub.out_volume)), (1, 0, 2)
        )
        product = matmul_into(wg[0, ...], by_sample, into)
        return xp.reshape(product, (sub.batch, -1, *sub.out_size))
    prod = _product(wg, _grouped_cols(cols, geom, xp), xp)  # (g, O/g, n*L)
    by_channel = xp.reshape(prod, (geom.out_channels, sub.batch, *sub.out_size))
    return xp.permute_dims(by_channel, (1, 0, *range(2, by_channel.ndim)))


def gemm_forward(
    x: Array,
    weight: Array,
    bias: Array | None,
    route: Route,
    xp: Namespace,
    out: Array | None = None,
) -> Array:
    """Output (N, O, *out_size): per tile, im2col and one product per group.

    Written into ``out`` (a NumPy or CuPy array of that shape) when given.
    """
    geom = route.geom
    fold = route.fold_bias and bias is not None
    route = route.with_fold_bias(fold)
    tiling = _tiling(route, x, xp, ones_row=fold)
    bufs = (_columns_buffer(route, x, tiling, ones_row=fold), _pad_buffer(route, x, tiling))
    wg = _grouped_weight(weight, geom, xp)
    if fold:  # (1, O, C*K + 1): the bias meets the columns' row of ones
        wg = xp.concat((wg, xp.reshape(bias, (1, geom.out_channels, 1))), axis=2)
    if len(tiling) == 1 and out is None:
        (tile,) = tiling
        y = contiguous(_tile_output(wg, _columns(x, tile, route, xp, bufs), tile, route, xp))
    else:
        y = (
            xp.empty(geom.output_shape, dtype=x.dtype, device=device_of(x=x))
            if out is None
            else out
        )
        # Per-sample products over whole samples go straight into y's region
        # of the tile: no tile-sized result to allocate and copy over.
        direct = route.per_sample and tiling.whole_samples and flat_view(y) is not None
        for tile in tiling:
            into = flat_view(y[tile.output_key]) if direct else None
            part = _tile_output(wg, _columns(x, tile, route, xp, bufs), tile, route, xp, into)
            if into is None:
                y = set_into(y, tile.output_key, part)
            del part  # one tile's output alive at a time
    if bias is None or fold:
        return y
    # In place where the backend allows it: no second output-sized array.
    return add_into(y, (...,), xp.reshape(bias, (geom.out_channels, *(1,) * geom.rank)))


def _weight_grad_product(gy: Array, cols: Array, xp: Namespace) -> Array:
    """(g, O/g, C/g*K) = gy (g, O/g, M) @ cols (g, C/g*K, M)^T.

    The same product in two orientations; the BLAS is much faster with the
    operand that has more rows on the left (cols @ gy^T for C*K >= O, gy @
    cols^T otherwise; ``docs/performance.md``, design-weight-grad-orientation).
    """
    if cols.shape[1] >= gy.shape[1]:
        return xp.matrix_transpose(_product(cols, xp.matrix_transpose(gy), xp))
    return _product(gy, xp.matrix_transpose(cols), xp)


def _tile_weight_grad(
    grad_output: Array, cols: Array, tile: Tile, route: Route, xp: Namespace
) -> Array:
    """One tile's share of dW (g, O/g, C/g*K [+1]): its output gradient times its columns."""
    if route.per_sample:
        # sum over samples of gy[n] @ cols[n]^T, cols[n] a (rows, L) view
        gy = _output_by_sample(grad_output, tile, xp)  # (n, O, L)
        per_sample = xp.reshape(cols, (cols.shape[0], tile.geom.batch, tile.geom.out_volume))
        products = xp.matmul(gy, xp.permute_dims(per_sample, (1, 2, 0)))
        return xp.expand_dims(xp.sum(products, axis=0), axis=0)
    gy = _output_matrix(grad_output, route.geom, tile, xp)  # (g, O/g, n*L)
    return _weight_grad_product(gy, _grouped_cols(cols, route.geom, xp), xp)


def gemm_weight_grad(
    grad_output: Array, x: Array, route: Route, xp: Namespace, *, bias: bool
) -> tuple[Array, Array | None]:
    """dL/dW, and dL/db where ``bias`` and the bias rides in the products (else None).

    dW = sum over tiles of grad_output (O, M) @ cols^T (M, C*K).
    """
    geom = route.geom
    fold = route.fold_bias and bias
    route = route.with_fold_bias(fold)
    tiling = _tiling(route, x, xp, ones_row=fold)
    bufs = (_columns_buffer(route, x, tiling, ones_row=fold), _pad_buffer(route, x, tiling))
    grad_w = None
    for tile in tiling:
        part = _tile_weight_grad(grad_output, _columns(x, tile, route, xp, bufs), tile, route, xp)
        grad_w = part if grad_w is None else grad_w + part
    assert grad_w is not None
    grad_b = None
    if fold:  # (1, O, C*K + 1): the last column is db
        grad_b = contiguous(grad_w[0, :, -1])
        grad_w = grad_w[:, :, :-1]
    return xp.reshape(grad_w, geom.weight_shape), grad_b


def _tile_column_grad(
    grad_output: Array, wg_t: Array, tile: Tile, route: Route, xp: Namespace, buf: Array | None
) -> Array:
    """One tile's column gradient W^T @ gy as (C*K, n*L) (in the buffer where there is one)."""
    if route.per_sample:  # (n, C*K, L) -> a (C*K, n, L) view
        gy = _output_by_sample(grad_output, tile, xp)
        return xp.permute_dims(matmul_into(wg_t[0, ...], gy, buf), (1, 0, 2))
    gy = _output_matrix(grad_output, route.geom, tile, xp)
    dcols = _product(wg_t, gy, xp, buf)  # (g, C/g*K, M)
    return xp.reshape(dcols, (route.geom.column_rows, -1))


def gemm_input_grad(
    grad_output: Array, weight: Array, route: Route, xp: Namespace, out: Array | None = None
) -> Array:
    """dL/dx: per tile, the column gradient W^T @ gy, which col2im adds into dx.

    Where every tile is whole samples and one kernel offset covers the input
    (stride 1, "same" padding), col2im assigns that offset's block first, so
    dx starts empty instead of zeroed (``docs/performance.md``, design-covering-tap).
    dx is ``out`` (a NumPy or CuPy array of its shape) when given.
    """
    geom = route.geom
    tiling = _tiling(route, grad_output, xp, ones_row=False)
    buf = _columns_buffer(route, grad_output, tiling, ones_row=False)
    assign = covering_tap(geom) if route.caps.in_place and tiling.whole_samples else None
    if out is None:
        start = xp.zeros if assign is None else xp.empty
        grad_x = start(geom.input_shape, dtype=grad_output.dtype, device=device_of(gy=grad_output))
    else:
        grad_x = out if assign is not None else set_into(out, (...,), 0)
    wg_t = xp.matrix_transpose(_grouped_weight(weight, geom, xp))  # (g, C/g*K, O/g)
    for tile in tiling:
        dcols = _tile_column_grad(grad_output, wg_t, tile, route, xp, buf)
        grad_x = col2im_gemm(dcols, tile, geom, xp, grad_x, assign=assign)
        del dcols  # the next tile's product reuses the buffer, or allocates anew
    return grad_x
