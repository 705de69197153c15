"""Convolution functions with PyTorch semantics for any array API library.

Layouts follow ``torch.nn.functional``: inputs are (N, C, H, W) (or unbatched
(C, H, W)), conv2d weights are (out_channels, in_channels/groups, KH, KW) and
the operation is a cross-correlation. Results stay in the inputs' namespace,
dtype and device; inputs are never modified.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from xpconv._backend import (
    add_into,
    contiguous,
    device_of,
    is_mutable,
    matmul_into,
    namespace_of,
    on_gpu,
    set_into,
    workspace_buffer,
)
from xpconv._depthwise import depthwise_applies, depthwise_forward, depthwise_grads
from xpconv._geometry import (
    ConvGeometry,
    PaddingArg,
    PairArg,
    as_pair,
    conv_geometry,
    transpose_geometry,
    window_geometry,
)
from xpconv._im2col import (
    col2im,
    col2im_gemm,
    covering_tap,
    im2col,
    im2col_gemm,
    pad_region,
)
from xpconv._workspace import Tile, plan_tiles

__all__ = [
    "Conv2dGradients",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "fold",
    "unfold",
]

Array = Any
Namespace = Any


class Conv2dGradients(NamedTuple):
    """Gradients returned by :func:`conv2d_backward`."""

    input: Array
    weight: Array
    bias: Array | None


# --------------------------------------------------------------------------- checks


def _check_arrays(xp: Namespace | None, **arrays: Array | None) -> Namespace:
    """Namespace, device and dtype checks shared by every public function."""
    if xp is None:
        xp = namespace_of(**arrays)
    else:
        namespace_of(**arrays)  # still reject a mix of libraries
    device_of(**arrays)
    present = {name: a for name, a in arrays.items() if a is not None}
    dtypes = {}
    for name, a in present.items():
        if not xp.isdtype(a.dtype, "real floating"):
            msg = f"{name} must have a real floating dtype (float32 or float64), got {a.dtype}"
            raise TypeError(msg)
        dtypes[name] = a.dtype
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        msg = f"arrays must share one dtype, got {listed}; cast them with xp.astype first"
        raise TypeError(msg)
    return xp


def _batched(x: Array, xp: Namespace, name: str) -> tuple[Array, bool]:
    """Accept (C, H, W) like PyTorch does by adding a batch axis of 1."""
    if x.ndim == 3:
        return xp.expand_dims(x, axis=0), True
    if x.ndim != 4:
        msg = f"{name} must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {tuple(x.shape)}"
        raise ValueError(msg)
    return x, False


def _check_bias(bias: Array | None, channels: int) -> None:
    if bias is not None and tuple(bias.shape) != (channels,):
        msg = (
            f"bias must have shape ({channels},) (one value per output channel), "
            f"got {tuple(bias.shape)}"
        )
        raise ValueError(msg)


# --------------------------------------------------------------------------- kernels
# The pieces below take a validated ConvGeometry. The work is cut into tiles
# (batch chunks, or bands of output rows) whose im2col columns fit in the
# workspace limit (xpconv._workspace); each tile is unfolded in GEMM order
# (C*KH*KW, n*OH*OW) into one reused buffer, so that the forward pass, the
# weight gradient and the column gradient are one matrix product per group.


def _grouped_weight(weight: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """(O, C/g, KH, KW) -> (g, O/g, C/g*KH*KW)."""
    g = geom.groups
    return xp.reshape(weight, (g, geom.out_channels // g, -1))


def _grouped_cols(cols: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """(C*KH*KW, M) -> (g, C/g*KH*KW, M); the channels of a group are contiguous rows."""
    return xp.reshape(cols, (geom.groups, -1, cols.shape[-1]))


def _gemm(a: Array, b: Array, xp: Namespace, out: Array | None = None) -> Array:
    """Grouped matrix product (g, m, k) @ (g, k, n) -> (g, m, n).

    With one group the product is done on 2-D arrays: NumPy's stacked
    ``matmul`` does not hand a transposed operand to the BLAS (measured 5x
    slower for ``grad_output @ cols.T``), its 2-D ``matmul`` does.
    """
    if a.shape[0] == 1:
        return xp.expand_dims(matmul_into(a[0, ...], b[0, ...], out), axis=0)
    return matmul_into(a, b, out)


def _itemsize(dtype: Any, xp: Namespace) -> int:
    return xp.finfo(dtype).bits // 8


def _folds_bias(geom: ConvGeometry, like: Array) -> bool:
    """Whether the bias rides in the matrix products (a ones row in the columns).

    That saves a pass over the output in the forward pass and over the output
    gradient in the backward pass, which matters when the products are short
    (few column rows): measured fwd+bwd on the 2-core CPU, MNIST-like layer
    (9 rows) float64 12.6 -> 10.1 ms, float32 8.5 -> 6.9 ms; 7x7 stem (147
    rows) 0.74-0.99 of the time across runs. With long products the
    pass is cheap next to them and one more row can cost a whole extra K-block
    in the BLAS (1152 -> 1153 rows: a 20-40% slower GEMM), so only layers with
    the per-sample forward product fold. Only with one group and a reusable
    buffer (NumPy, CuPy), where the ones row costs no copy of the columns;
    elsewhere the bias is added (summed) on its own.
    """
    return _per_sample_product(geom) and workspace_buffer(like, 0) is not None


def _column_rows(geom: ConvGeometry, ones_row: bool) -> int:
    """Rows of the im2col columns: C*KH*KW, plus the row of ones that carries the bias."""
    return geom.in_channels * geom.kernel_area + int(ones_row)


def _plan(geom: ConvGeometry, like: Array, xp: Namespace, *, ones_row: bool) -> list[Tile]:
    row_bytes = _column_rows(geom, ones_row) * geom.out_hw[1] * _itemsize(like.dtype, xp)
    return plan_tiles(geom.batch, geom.out_hw[0], row_bytes, gpu=on_gpu(like))


def _tile_geometry(geom: ConvGeometry, tile: Tile) -> tuple[ConvGeometry, tuple[slice, ...]]:
    """The geometry of one tile and its key into the padded (N, C, Hp, Wp) input."""
    (r0, r1), (b0, b1) = (tile.rows.start, tile.rows.stop), (tile.batch.start, tile.batch.stop)
    sh, dh, kh = geom.stride[0], geom.dilation[0], geom.kernel_hw[0]
    in_rows = slice(r0 * sh, (r1 - 1) * sh + dh * (kh - 1) + 1)
    sub = replace(
        geom,
        batch=b1 - b0,
        in_hw=(in_rows.stop - in_rows.start, geom.padded_hw[1]),
        pad=(0, 0, 0, 0),
        out_hw=(r1 - r0, geom.out_hw[1]),
    )
    return sub, (tile.batch, slice(None), in_rows, slice(None))


def _buffer(like: Array, geom: ConvGeometry, tiles: list[Tile], *, ones_row: bool) -> Array | None:
    """The reused im2col buffer, sized for the largest tile (None without a fast path)."""
    largest = max((t.batch.stop - t.batch.start) * (t.rows.stop - t.rows.start) for t in tiles)
    return workspace_buffer(like, _column_rows(geom, ones_row) * largest * geom.out_hw[1])


def _pad_buffer(like: Array, geom: ConvGeometry, tiles: list[Tile]) -> Array | None:
    """The reused buffer for one tile's padded input (None without padding or a fast path)."""
    if geom.pad == (0, 0, 0, 0):
        return None
    rows = max((t.batch.stop - t.batch.start) * _tile_geometry(geom, t)[0].in_hw[0] for t in tiles)
    return workspace_buffer(like, rows * geom.in_channels * geom.padded_hw[1])


def _output_tile_matrix(gy: Array, geom: ConvGeometry, tile: Tile, xp: Namespace) -> Array:
    """One tile of (N, O, OH, OW) as a (g, O/g, n*rows*OW) matrix (a copy, in GEMM order)."""
    part = gy[tile.batch, :, tile.rows, :]
    by_channel = xp.permute_dims(part, (1, 0, 2, 3))
    return xp.reshape(by_channel, (geom.groups, geom.out_channels // geom.groups, -1))


def _output_tile_by_sample(gy: Array, tile: Tile, xp: Namespace) -> Array:
    """One tile of (N, O, OH, OW) as (n, O, rows*OW): a view unless the tile is a band of rows."""
    part = gy[tile.batch, :, tile.rows, :]
    return xp.reshape(part, (part.shape[0], part.shape[1], -1))


def _weight_grad_product(gy: Array, cols: Array, xp: Namespace) -> Array:
    """(g, O/g, C/g*KH*KW) = gy (g, O/g, M) @ cols (g, C/g*KH*KW, M)^T.

    The same product in two orientations; OpenBLAS is up to 20x faster with
    the operand that has more rows on the left (measured on the benchmark
    layers: cols @ gy^T for C*KH*KW >= O, gy @ cols^T otherwise).
    """
    if cols.shape[1] >= gy.shape[1]:
        return xp.matrix_transpose(_gemm(cols, xp.matrix_transpose(gy), xp))
    return _gemm(gy, xp.matrix_transpose(cols), xp)


def _per_sample_product(geom: ConvGeometry) -> bool:
    """Whether the products go sample by sample instead of one GEMM.

    One GEMM over the batch gives (O, N*OH*OW), which must then be transposed
    to (N, O, OH, OW); a stacked product over samples writes that order
    directly. With few rows in the columns (C*KH*KW) the transpose costs as
    much as the product and the per-sample product wins (measured float64,
    product + transpose against the stacked product: MNIST-like layer 4.3 ->
    2.8 ms, 7x7 stem 49 -> 36 ms); with many rows the single large GEMM runs
    faster (1152 rows, float32: 16.8 against 18.3 ms). The backward pass
    follows: stacked products on grad_output (N, O, OH*OW) as it is, for the
    weight and the column gradients, instead of a transposed copy of it for
    one GEMM each (measured fwd+bwd, best of 4 alternating rounds: MNIST-like
    layer float32 3.5 -> 2.4 ms, float64 5.4 -> 4.1 ms; 7x7 stem float32
    108 -> 91 ms, float64 149 -> 132 ms).
    """
    return geom.groups == 1 and geom.in_channels * geom.kernel_area <= PER_SAMPLE_MAX_ROWS


# Largest C*KH*KW for the per-sample product (the benchmark layers: 9 and 147
# gain from it; 256, 576 and 1152 do not).
PER_SAMPLE_MAX_ROWS = 192


def conv2d_forward(
    x: Array, weight: Array, bias: Array | None, geom: ConvGeometry, xp: Namespace
) -> Array:
    """conv2d output (N, O, OH, OW): per tile, im2col and one matmul per group."""
    if geom.batch == 0:  # an empty batch has nothing to tile (PyTorch returns empty too)
        return xp.zeros(geom.output_shape, dtype=x.dtype, device=device_of(x=x))
    if _is_pointwise(geom):
        return _add_bias(_pointwise_forward(x, weight, geom, xp), bias, geom, xp)
    if depthwise_applies(geom):
        return depthwise_forward(x, weight, bias, geom, xp)
    fold = bias is not None and _folds_bias(geom, x)
    tiles = _plan(geom, x, xp, ones_row=fold)
    buf = _buffer(x, geom, tiles, ones_row=fold)
    pad_buf = _pad_buffer(x, geom, tiles)
    wg = _grouped_weight(weight, geom, xp)
    if fold:  # (1, O, C*KH*KW + 1): the bias meets the columns' row of ones
        wg = xp.concat((wg, xp.reshape(bias, (1, geom.out_channels, 1))), axis=2)
    y = None
    for tile in tiles:
        sub, key = _tile_geometry(geom, tile)
        padded = pad_region(x, geom, key, xp, out=pad_buf)  # this tile's rows only
        cols = im2col_gemm(padded, sub, xp, out=buf, ones_row=fold)
        del padded
        if _per_sample_product(geom):
            # (n, C*KH*KW, rows*OW) views of the columns, one product per sample:
            # the result is already in (N, O, ...) order.
            by_sample = xp.permute_dims(
                xp.reshape(cols, (cols.shape[0], sub.batch, sub.out_area)), (1, 0, 2)
            )
            part = xp.reshape(xp.matmul(wg[0, ...], by_sample), (sub.batch, -1, *sub.out_hw))
        else:
            prod = _gemm(wg, _grouped_cols(cols, geom, xp), xp)  # (g, O/g, n*rows*OW)
            part = xp.permute_dims(
                xp.reshape(prod, (geom.out_channels, sub.batch, *sub.out_hw)), (1, 0, 2, 3)
            )
        del cols
        if len(tiles) == 1:
            y = contiguous(part)
            break
        if y is None:
            y = xp.empty(geom.output_shape, dtype=x.dtype, device=device_of(x=x))
        y = set_into(y, (tile.batch, slice(None), tile.rows, slice(None)), part)
    return y if fold else _add_bias(y, bias, geom, xp)


def _add_bias(y: Array, bias: Array | None, geom: ConvGeometry, xp: Namespace) -> Array:
    if bias is None:
        return y
    # In place where the backend allows it: no second output-sized array.
    return add_into(y, (...,), xp.reshape(bias, (geom.out_channels, 1, 1)))


# --------------------------------------------------------------------------- 1x1 shortcut
# A 1x1 convolution with stride 1 and no padding needs no im2col: the columns
# of sample n are x[n] itself, a (C, H*W) matrix. Measured on the (32, 256,
# 14, 14) -> 64 benchmark layer, fwd+bwd: float32 19.2 -> 9.9 ms, float64
# 31.5 -> 17.0 ms.


def _is_pointwise(geom: ConvGeometry) -> bool:
    # out_hw == in_hw also rules out the unread rows that conv_transpose2d's
    # output_padding adds to the input of the convolution it transposes.
    return (
        geom.kernel_hw == (1, 1)
        and geom.stride == (1, 1)
        and geom.pad == (0, 0, 0, 0)
        and geom.groups == 1
        and geom.out_hw == geom.in_hw
    )


def _pointwise_forward(x: Array, weight: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    n, c, h, w = geom.input_shape
    w2 = xp.reshape(weight, (geom.out_channels, c))
    return xp.reshape(xp.matmul(w2, xp.reshape(x, (n, c, h * w))), geom.output_shape)


def _pointwise_grads(
    grad_output: Array,
    x: Array | None,
    weight: Array,
    geom: ConvGeometry,
    xp: Namespace,
    *,
    input_grad: bool,
) -> tuple[Array | None, Array | None]:
    """Input gradient W^T @ gy[n]; weight gradient (when ``x`` is given)
    sum_n gy[n] @ x[n]^T, over batch chunks whose (n, O, C) products fit in
    the workspace limit."""
    n, c, h, w = geom.input_shape
    o = geom.out_channels
    gy = xp.reshape(grad_output, (n, o, h * w))
    w2 = xp.reshape(weight, (o, c))
    grad_x = None
    if input_grad:
        grad_x = xp.reshape(xp.matmul(xp.matrix_transpose(w2), gy), geom.input_shape)
    if x is None:
        return grad_x, None
    x3 = xp.reshape(x, (n, c, h * w))
    # The operand with more rows goes on the left, as in _weight_grad_product:
    # x[n] @ gy[n]^T (C, O) for C >= O. Measured fwd+bwd on the (32, 256, 14,
    # 14) -> 64 layer against gy[n] @ x[n]^T, 9 alternating rounds: 0.91x the
    # time in float32 (0.85-0.95 by round), 0.96x in float64 (0.93-0.98).
    channels_left = c >= o
    grad_w = None
    for tile in plan_tiles(n, 1, o * c * _itemsize(x.dtype, xp), gpu=on_gpu(x)):
        xs, gys = x3[tile.batch, ...], gy[tile.batch, ...]
        if channels_left:
            products = xp.matmul(xs, xp.matrix_transpose(gys))  # (n, C, O)
        else:
            products = xp.matmul(gys, xp.matrix_transpose(xs))  # (n, O, C)
        part = xp.sum(products, axis=0)
        grad_w = part if grad_w is None else grad_w + part
    assert grad_w is not None
    if channels_left:
        grad_w = contiguous(xp.matrix_transpose(grad_w))
    return grad_x, xp.reshape(grad_w, geom.weight_shape)


def conv2d_grads(
    grad_output: Array,
    x: Array | None,
    weight: Array,
    geom: ConvGeometry,
    xp: Namespace,
    *,
    input_grad: bool = True,
    weight_grad: bool = True,
    bias_grad: bool = False,
) -> tuple[Array | None, Array | None, Array | None]:
    """dL/dx, dL/dW and (with ``bias_grad``) dL/db of conv2d, tile by tile.

    dW = sum over tiles of grad_output (O, M) @ cols^T (M, C*KH*KW), with db
    as one more column where the columns carry a row of ones. For a
    stride-1 convolution with no more output than input channels, dL/dx is
    itself a stride-1 convolution (:func:`_stride1_input_grad`); otherwise the
    column gradient W^T @ grad_output is written into the columns' buffer and
    col2im adds it into the padded input gradient.
    """
    dev = device_of(grad_output=grad_output)
    # db rides in the weight gradient's product where it can (see _folds_bias).
    fold = (
        bias_grad
        and weight_grad
        and x is not None
        and geom.batch > 0
        and not _is_pointwise(geom)
        and _folds_bias(geom, grad_output)
    )
    depthwise = geom.batch > 0 and depthwise_applies(geom)
    # Where dW is computed, the depthwise kernel sums db in the same pass.
    dw_by_depthwise = weight_grad and x is not None and depthwise
    grad_b = bias_sum(grad_output, xp) if bias_grad and not (fold or dw_by_depthwise) else None
    if geom.batch == 0:  # no samples: every gradient is zero
        zeros_x = xp.zeros(geom.input_shape, dtype=grad_output.dtype, device=dev)
        zeros_w = xp.zeros(geom.weight_shape, dtype=grad_output.dtype, device=dev)
        return (zeros_x if input_grad else None), (zeros_w if weight_grad else None), grad_b
    if _is_pointwise(geom):
        x_for_w = x if weight_grad else None
        grads = _pointwise_grads(grad_output, x_for_w, weight, geom, xp, input_grad=input_grad)
        return (*grads, grad_b)
    if depthwise:  # stride 1: dL/dx is a depthwise convolution too
        grad_x = _stride1_input_grad(grad_output, weight, geom, xp) if input_grad else None
        if not dw_by_depthwise:
            return grad_x, None, grad_b
        assert x is not None
        grad_w, grad_b = depthwise_grads(grad_output, x, geom, xp, bias_grad=bias_grad)
        return grad_x, grad_w, grad_b
    by_convolution = input_grad and _input_grad_by_convolution(geom)
    grad_x = _stride1_input_grad(grad_output, weight, geom, xp) if by_convolution else None
    fold_input = input_grad and not by_convolution  # col2im route for dL/dx
    unfold_x = weight_grad and x is not None
    if not unfold_x and not fold_input:  # nothing left to unfold or fold
        return grad_x, None, grad_b
    tiles = _plan(geom, grad_output, xp, ones_row=fold)
    buf = _buffer(grad_output, geom, tiles, ones_row=fold)
    pad_buf = _pad_buffer(grad_output, geom, tiles) if unfold_x else None
    # col2im writes the unpadded input gradient directly. When every chunk is
    # whole samples and one kernel offset covers the input, col2im assigns that
    # offset's block first and the gradient needs no zeros. Against a zeroed
    # padded gradient and a cropped copy of it, fwd+bwd in alternating
    # processes: MNIST-like layer 0.92x the time in float32, 0.96x in float64
    # (7 rounds); 7x7 stem 0.98x in both (11 rounds, +-25% noise).
    whole_samples = all(t.rows == slice(0, geom.out_hw[0]) for t in tiles)
    assign = covering_tap(geom) if is_mutable(grad_output) and whole_samples else None
    if fold_input:
        start = xp.zeros if assign is None else xp.empty
        grad_x = start(geom.input_shape, dtype=grad_output.dtype, device=dev)
    wg_t = xp.matrix_transpose(_grouped_weight(weight, geom, xp)) if fold_input else None
    # Short products (few column rows) go sample by sample, on the output
    # gradient as it is: no (O, N*OH*OW) copy of it (measured on the MNIST-like
    # layer: that copy took 1.1 of 5.7 ms of the float64 backward pass).
    by_sample = _per_sample_product(geom)
    grad_w = None
    for tile in tiles:
        sub, key = _tile_geometry(geom, tile)
        if by_sample:
            gy = _output_tile_by_sample(grad_output, tile, xp)  # (n, O, rows*OW)
        else:
            gy = _output_tile_matrix(grad_output, geom, tile, xp)  # (g, O/g, n*rows*OW)
        if unfold_x:
            assert x is not None
            padded = pad_region(x, geom, key, xp, out=pad_buf)
            cols = im2col_gemm(padded, sub, xp, out=buf, ones_row=fold)
            del padded
            if by_sample:
                # sum over samples of gy[n] @ cols[n]^T, cols[n] a (rows, rows*OW) view
                per_sample = xp.reshape(cols, (cols.shape[0], sub.batch, sub.out_area))
                products = xp.matmul(gy, xp.permute_dims(per_sample, (1, 2, 0)))
                part = xp.expand_dims(xp.sum(products, axis=0), axis=0)
            else:
                part = _weight_grad_product(gy, _grouped_cols(cols, geom, xp), xp)
            del cols
            grad_w = part if grad_w is None else grad_w + part
        if fold_input:
            assert wg_t is not None
            if by_sample:  # (n, C*KH*KW, rows*OW) -> a (C*KH*KW, n, rows*OW) view
                dcols = xp.permute_dims(matmul_into(wg_t[0, ...], gy, buf), (1, 0, 2))
            else:
                dcols = _gemm(wg_t, gy, xp, buf)  # (g, C/g*KH*KW, M), reusing the buffer
                dcols = xp.reshape(dcols, (geom.in_channels * geom.kernel_area, -1))
            grad_x = col2im_gemm(dcols, sub, geom, xp, grad_x, key, assign=assign)
            del dcols
    if grad_w is not None and fold:  # (1, O, C*KH*KW + 1): the last column is db
        grad_b = contiguous(grad_w[0, :, -1])
        grad_w = grad_w[:, :, :-1]
    if grad_w is not None:
        grad_w = xp.reshape(grad_w, geom.weight_shape)
    return grad_x, grad_w, grad_b


def _input_grad_by_convolution(geom: ConvGeometry) -> bool:
    """Whether :func:`_stride1_input_grad` is used instead of col2im.

    It unfolds grad_output (O channels) where col2im folds the columns of C
    channels, so it moves less data when O <= C (on the MNIST-like layer, C=1
    and O=32, it was 2x slower than col2im).
    """
    return geom.stride == (1, 1) and geom.out_channels <= geom.in_channels


def _stride1_input_grad(
    grad_output: Array, weight: Array, geom: ConvGeometry, xp: Namespace
) -> Array:
    """dL/dx of a stride-1 conv2d, computed as another stride-1 conv2d.

    With stride 1, pixel h of x meets ``grad_output[h + top - i*d]`` through
    kernel row i, so dL/dx is the cross-correlation of grad_output, padded by
    ``d*(K-1) - top`` above (cropped where that is negative), with the kernel
    flipped and its in/out channels swapped within each group. That is one
    im2col and one GEMM with the short (C, O*KH*KW) weight on the left, instead
    of the tall (C*KH*KW, O) column-gradient GEMM and a KH*KW-slice col2im.
    Measured float32 fwd+bwd on the 2-core CPU: (32, 64, 32, 32) 3x3 layer
    133 -> 119 ms, (16, 128, 28, 28) 142 -> 136 ms, dilated 72 -> 66 ms.
    """
    (kh, kw), (dh, dw), g = geom.kernel_hw, geom.dilation, geom.groups
    top, _, left, _ = geom.pad
    (h, w), (oh, ow) = geom.in_hw, geom.out_hw
    pad_top, pad_left = dh * (kh - 1) - top, dw * (kw - 1) - left
    # Rows needed below: enough for H outputs (grad_output is zero past its end).
    pad_bottom, pad_right = h + dh * (kh - 1) - oh - pad_top, w + dw * (kw - 1) - ow - pad_left
    crop_rows = slice(max(-pad_top, 0), oh - max(-pad_bottom, 0))
    crop_cols = slice(max(-pad_left, 0), ow - max(-pad_right, 0))
    gy = grad_output[:, :, crop_rows, crop_cols]
    o, c = geom.out_channels, geom.in_channels
    per_group = xp.reshape(weight, (g, o // g, c // g, kh, kw))
    swapped = xp.reshape(xp.permute_dims(per_group, (0, 2, 1, 3, 4)), (c, o // g, kh, kw))
    flipped = xp.flip(swapped, axis=(2, 3))
    transposed = ConvGeometry(
        batch=geom.batch,
        in_channels=o,
        out_channels=c,
        in_hw=(crop_rows.stop - crop_rows.start, crop_cols.stop - crop_cols.start),
        kernel_hw=(kh, kw),
        stride=(1, 1),
        pad=(max(pad_top, 0), max(pad_bottom, 0), max(pad_left, 0), max(pad_right, 0)),
        dilation=(dh, dw),
        groups=g,
        out_hw=(h, w),
    )
    return conv2d_forward(gy, flipped, None, transposed, xp)


def input_grad(grad_output: Array, weight: Array, geom: ConvGeometry, xp: Namespace) -> Array:
    """dL/dx alone (also :func:`conv_transpose2d`'s forward pass)."""
    grad_x, _, _ = conv2d_grads(grad_output, None, weight, geom, xp, weight_grad=False)
    assert grad_x is not None
    return grad_x


def bias_sum(grad_output: Array, xp: Namespace) -> Array:
    """dL/db: grad_output summed over every axis but the channels."""
    return xp.sum(grad_output, axis=(0, 2, 3))


# --------------------------------------------------------------------------- public API


def conv2d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: PairArg = 1,
    padding: PaddingArg = 0,
    dilation: PairArg = 1,
    groups: int = 1,
    xp: Namespace | None = None,
) -> Array:
    """2-D convolution (cross-correlation), like ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array
        Input of shape (N, C, H, W) or (C, H, W), real floating dtype.
    weight : array
        Filters of shape (O, C/groups, KH, KW), same dtype, namespace and device as `x`.
    bias : array, optional
        Shape (O,). Added to every output pixel of its channel.
    stride, dilation : int or (int, int), optional
        Step between windows and between kernel taps; positive.
    padding : int, (int, int), 'valid' or 'same', optional
        Zeros added on each side of H and W. ``'same'`` gives an output of size
        ``ceil(H / stride)`` (TensorFlow/JAX rule; the odd pixel goes to the
        bottom/right), which for stride 1 is PyTorch's ``padding='same'``.
    groups : int, optional
        Split channels into `groups` independent convolutions (``groups == C``
        is a depthwise convolution).
    xp : namespace, optional
        The array API namespace; inferred from the inputs by default.

    Returns
    -------
    array
        Shape (N, O, OH, OW), with ``OH = (H + pad_h - dilation*(KH-1) - 1) // stride + 1``.

    Raises
    ------
    ValueError
        Wrong rank, channel/group mismatch, kernel larger than the padded input,
        non-positive stride or dilation, negative padding, unknown padding string,
        arrays on different devices.
    TypeError
        Arrays from different libraries, different dtypes, non-floating dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 2, 2))
    >>> xpconv.conv2d(x, w, stride=2)[0, 0]
    array([[10., 18.],
           [42., 50.]])
    """
    xp = _check_arrays(xp, x=x, weight=weight, bias=bias)
    x4, unbatched = _batched(x, xp, "x")
    geom = conv_geometry(
        tuple(x4.shape),
        tuple(weight.shape),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    _check_bias(bias, geom.out_channels)
    y = conv2d_forward(x4, weight, bias, geom, xp)
    return y[0, ...] if unbatched else y


def conv2d_backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    /,
    *,
    stride: PairArg = 1,
    padding: PaddingArg = 0,
    dilation: PairArg = 1,
    groups: int = 1,
    bias: bool = True,
    xp: Namespace | None = None,
) -> Conv2dGradients:
    """Gradients of :func:`conv2d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array
        dL/dy, the shape of ``conv2d(x, weight, ...)``.
    x, weight : array
        The arrays the forward pass was called with.
    stride, padding, dilation, groups
        The forward pass's arguments.
    bias : bool, optional
        Whether to compute the bias gradient (``None`` in the result otherwise).
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    Conv2dGradients
        Named tuple ``(input, weight, bias)`` with the shapes of `x`, `weight`
        and ``(O,)``.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv2d`; also when `grad_output` has the wrong shape.

    Notes
    -----
    ``weight = sum_n grad_output[n] @ im2col(x)[n].T`` and
    ``input = col2im(weight.T @ grad_output)``; the input gradient is
    :func:`conv_transpose2d` of `grad_output`.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> x = np.ones((1, 1, 3, 3))
    >>> w = np.ones((1, 1, 2, 2))
    >>> grads = xpconv.conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> grads.input[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> grads.weight[0, 0], grads.bias
    (array([[4., 4.],
           [4., 4.]]), array([4.]))
    """
    xp = _check_arrays(xp, grad_output=grad_output, x=x, weight=weight)
    x4, unbatched = _batched(x, xp, "x")
    # An unbatched x has an unbatched output: grad_output must be 3-D too.
    gy = xp.expand_dims(grad_output, axis=0) if unbatched else grad_output
    geom = conv_geometry(
        tuple(x4.shape),
        tuple(weight.shape),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
    )
    if tuple(gy.shape) != geom.output_shape:
        expected = geom.output_shape[1:] if unbatched else geom.output_shape
        msg = (
            f"grad_output must have the conv2d output shape {expected}, "
            f"got {tuple(grad_output.shape)}"
        )
        raise ValueError(msg)
    grad_x, grad_w, grad_b = conv2d_grads(gy, x4, weight, geom, xp, bias_grad=bias)
    assert grad_x is not None
    assert grad_w is not None
    return Conv2dGradients(grad_x[0, ...] if unbatched else grad_x, grad_w, grad_b)


def conv_transpose2d(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: PairArg = 1,
    padding: PairArg = 0,
    output_padding: PairArg = 0,
    dilation: PairArg = 1,
    groups: int = 1,
    xp: Namespace | None = None,
) -> Array:
    """Transposed convolution, like ``torch.nn.functional.conv_transpose2d``.

    It is the input gradient of :func:`conv2d`: ``conv_transpose2d(g, w, stride=s,
    padding=p)`` equals ``conv2d_backward(g, x, w, stride=s, padding=p).input``
    for an `x` of the matching size.

    Parameters
    ----------
    x : array
        Shape (N, C_in, H, W) or (C_in, H, W).
    weight : array
        Shape (C_in, C_out/groups, KH, KW) (PyTorch's transposed layout).
    bias : array, optional
        Shape (C_out,).
    stride, padding, dilation : int or (int, int), optional
        The arguments of the convolution being transposed.
    output_padding : int or (int, int), optional
        Extra rows/columns on the bottom/right of the output, to pick one of the
        input sizes a strided convolution maps to the same output size. Must be
        smaller than either stride or dilation.
    groups : int, optional
        Number of channel groups.
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    array
        Shape (N, C_out, H_out, W_out) with
        ``H_out = (H-1)*stride - 2*padding + dilation*(KH-1) + output_padding + 1``.

    Raises
    ------
    ValueError, TypeError
        As :func:`conv2d`, plus an invalid `output_padding`.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> xpconv.conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    xp = _check_arrays(xp, x=x, weight=weight, bias=bias)
    x4, unbatched = _batched(x, xp, "x")
    geom = transpose_geometry(
        tuple(x4.shape),
        tuple(weight.shape),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
    )
    _check_bias(bias, geom.in_channels)
    y = input_grad(x4, weight, geom, xp)
    if bias is not None:
        y = add_into(y, (...,), xp.reshape(bias, (geom.in_channels, 1, 1)))
    return y[0, ...] if unbatched else y


def unfold(
    x: Array,
    /,
    kernel_size: PairArg,
    *,
    stride: PairArg = 1,
    padding: PairArg = 0,
    dilation: PairArg = 1,
    xp: Namespace | None = None,
) -> Array:
    """Extract sliding windows (im2col), like ``torch.nn.functional.unfold``.

    Parameters
    ----------
    x : array
        Shape (N, C, H, W) or (C, H, W).
    kernel_size, stride, padding, dilation : int or (int, int)
        Window size, step, zero padding and tap spacing.
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    array
        Shape (N, C*KH*KW, L) (or (C*KH*KW, L)), rows ordered (channel, kernel
        row, kernel column), ``L = OH*OW`` windows in row-major order.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> xpconv.unfold(np.arange(9.0).reshape(1, 1, 3, 3), 2)[0]
    array([[0., 1., 3., 4.],
           [1., 2., 4., 5.],
           [3., 4., 6., 7.],
           [4., 5., 7., 8.]])
    """
    xp = _check_arrays(xp, x=x)
    x4, unbatched = _batched(x, xp, "x")
    geom = window_geometry(
        tuple(x4.shape), kernel_size, stride=stride, padding=padding, dilation=dilation
    )
    cols = im2col(x4, geom, xp)
    return cols[0, ...] if unbatched else cols


def fold(
    cols: Array,
    /,
    output_size: PairArg,
    kernel_size: PairArg,
    *,
    stride: PairArg = 1,
    padding: PairArg = 0,
    dilation: PairArg = 1,
    xp: Namespace | None = None,
) -> Array:
    """Sum sliding windows back into an image (col2im), like ``torch.nn.functional.fold``.

    The adjoint of :func:`unfold`: overlapping windows are added.

    Parameters
    ----------
    cols : array
        Shape (N, C*KH*KW, L) or (C*KH*KW, L).
    output_size : int or (int, int)
        The image size (H, W).
    kernel_size, stride, padding, dilation : int or (int, int)
        As for :func:`unfold`.
    xp : namespace, optional
        The array API namespace; inferred by default.

    Returns
    -------
    array
        Shape (N, C, H, W) (or (C, H, W)).

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> xpconv.fold(np.ones((1, 4, 4)), (3, 3), 2)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    xp = _check_arrays(xp, cols=cols)
    if cols.ndim not in (2, 3):
        msg = f"cols must be 3-D (N, C*KH*KW, L) or 2-D (C*KH*KW, L), got shape {tuple(cols.shape)}"
        raise ValueError(msg)
    unbatched = cols.ndim == 2
    cols3 = xp.expand_dims(cols, axis=0) if unbatched else cols
    kh, kw = as_pair(kernel_size, "kernel_size", minimum=1)
    h, w = as_pair(output_size, "output_size", minimum=1)
    n, rows, length = (int(s) for s in cols3.shape)
    if rows % (kh * kw) != 0:
        msg = f"cols.shape[-2] ({rows}) must be divisible by the kernel area {kh}x{kw} = {kh * kw}"
        raise ValueError(msg)
    geom = window_geometry(
        (n, rows // (kh * kw), h, w),
        (kh, kw),
        stride=stride,
        padding=padding,
        dilation=dilation,
        input_name="output_size",
    )
    if length != geom.out_area:
        msg = (
            f"cols.shape[-1] ({length}) must equal the number of windows "
            f"{geom.out_hw[0]}x{geom.out_hw[1]} = {geom.out_area} for output_size {(h, w)}"
        )
        raise ValueError(msg)
    image = col2im(cols3, geom, xp)
    return image[0, ...] if unbatched else image
