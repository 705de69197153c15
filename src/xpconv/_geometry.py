"""Argument checking and output-size arithmetic for 2-D convolutions.

Every public function turns its keyword arguments into a :class:`ConvGeometry`
first, so that each check (and each error message) is written exactly once.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ConvGeometry",
    "PaddingArg",
    "PairArg",
    "as_pair",
    "conv_geometry",
    "normalize_padding",
    "positive_int",
    "resolve_padding",
    "transpose_geometry",
    "window_geometry",
]

PairArg = int | tuple[int, int]
PaddingArg = int | tuple[int, int] | Literal["same", "valid"]


def as_pair(value: object, name: str, *, minimum: int) -> tuple[int, int]:
    """Return ``(value, value)`` for an int, or validate a pair of ints.

    Raises ``TypeError`` for non-integers and ``ValueError`` for values below
    ``minimum``, naming the argument in both cases.
    """
    items = value if isinstance(value, tuple | list) else (value, value)
    if len(items) != 2:
        msg = f"{name} must be an int or a pair of ints, got {value!r}"
        raise ValueError(msg)
    pair = []
    for item in items:
        if isinstance(item, bool):
            msg = f"{name} must be an int or a pair of ints, got {value!r}"
            raise TypeError(msg)
        try:
            pair.append(operator.index(item))  # accepts numpy integers, rejects floats
        except TypeError:
            msg = f"{name} must be an int or a pair of ints, got {value!r}"
            raise TypeError(msg) from None
    if min(pair) < minimum:
        rule = "positive" if minimum == 1 else f">= {minimum}"
        msg = f"{name} must be {rule}, got {value!r}"
        raise ValueError(msg)
    return pair[0], pair[1]


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """'same' padding as in TensorFlow/JAX: output size ceil(size / stride).

    The odd pixel goes to the bottom/right; for stride 1 this is exactly
    PyTorch's ``padding='same'``.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: object,
    input_hw: tuple[int, int],
    kernel_hw: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Turn ``padding`` into explicit ``(top, bottom, left, right)`` amounts."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            top, bottom = _same_padding(input_hw[0], kernel_hw[0], stride[0], dilation[0])
            left, right = _same_padding(input_hw[1], kernel_hw[1], stride[1], dilation[1])
            return top, bottom, left, right
        msg = f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}"
        raise ValueError(msg)
    ph, pw = as_pair(padding, "padding", minimum=0)
    return ph, ph, pw, pw


@dataclass(frozen=True)
class ConvGeometry:
    """Everything about a 2-D convolution except the numbers in the arrays.

    ``in_hw`` is the unpadded input size, ``pad`` is (top, bottom, left, right)
    and ``out_hw`` the output size of the forward convolution.
    """

    batch: int
    in_channels: int
    out_channels: int
    in_hw: tuple[int, int]
    kernel_hw: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int
    out_hw: tuple[int, int]

    @property
    def padded_hw(self) -> tuple[int, int]:
        top, bottom, left, right = self.pad
        return self.in_hw[0] + top + bottom, self.in_hw[1] + left + right

    @property
    def kernel_area(self) -> int:
        return self.kernel_hw[0] * self.kernel_hw[1]

    @property
    def out_area(self) -> int:
        return self.out_hw[0] * self.out_hw[1]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, *self.in_hw)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.out_channels, *self.out_hw)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_hw)


def positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1; ``TypeError`` for non-integers, ``ValueError`` below 1."""
    msg = f"{name} must be a positive int, got {value!r}"
    if isinstance(value, bool):
        raise TypeError(msg)
    try:
        result = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(msg) from None
    if result < 1:
        raise ValueError(msg)
    return result


def normalize_padding(padding: object) -> PaddingArg:
    """``'same'``, ``'valid'`` or a (pad_h, pad_w) pair; hashable, checked."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            msg = f"padding must be an int, a pair of ints, 'same' or 'valid', got {padding!r}"
            raise ValueError(msg)
        return "same" if padding == "same" else "valid"
    return as_pair(padding, "padding", minimum=0)


def conv_geometry(
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    groups: object = 1,
    input_name: str = "x",
) -> ConvGeometry:
    """Validate a conv2d call and compute its geometry.

    ``input_shape`` is (N, C, H, W) and ``weight_shape`` is (O, C/groups, KH, KW),
    the PyTorch layout.
    """
    if len(input_shape) != 4:
        msg = (
            f"{input_name} must be 4-D (N, C, H, W) or 3-D (C, H, W), "
            f"got shape {tuple(input_shape)}"
        )
        raise ValueError(msg)
    if len(weight_shape) != 4:
        msg = (
            "weight must be 4-D (out_channels, in_channels/groups, KH, KW), "
            f"got shape {tuple(weight_shape)}"
        )
        raise ValueError(msg)
    n, c, h, w = (int(s) for s in input_shape)
    o, cg, kh, kw = (int(s) for s in weight_shape)
    g = positive_int(groups, "groups")
    stride_hw = as_pair(stride, "stride", minimum=1)
    dilation_hw = as_pair(dilation, "dilation", minimum=1)
    if min(kh, kw) < 1:
        msg = f"weight must have a non-empty kernel, got shape {tuple(weight_shape)}"
        raise ValueError(msg)
    if c % g != 0:
        msg = f"in_channels ({c}, axis 1 of {input_name}) must be divisible by groups={g}"
        raise ValueError(msg)
    if o % g != 0:
        msg = f"out_channels ({o}, axis 0 of weight) must be divisible by groups={g}"
        raise ValueError(msg)
    if cg * g != c:
        msg = (
            f"{input_name} has {c} channels but weight expects in_channels/groups = {cg} "
            f"with groups={g}, i.e. {cg * g} channels; weight shape is {tuple(weight_shape)}"
        )
        raise ValueError(msg)
    pad = resolve_padding(padding, (h, w), (kh, kw), stride_hw, dilation_hw)
    hp, wp = h + pad[0] + pad[1], w + pad[2] + pad[3]
    eff_kh, eff_kw = dilation_hw[0] * (kh - 1) + 1, dilation_hw[1] * (kw - 1) + 1
    if eff_kh > hp or eff_kw > wp:
        msg = (
            f"kernel size {kh}x{kw} (dilated: {eff_kh}x{eff_kw}) is larger than the padded "
            f"input {hp}x{wp} (input {h}x{w}, padding {pad}); expected a kernel that fits"
        )
        raise ValueError(msg)
    out_hw = (
        (hp - eff_kh) // stride_hw[0] + 1,
        (wp - eff_kw) // stride_hw[1] + 1,
    )
    return ConvGeometry(
        batch=n,
        in_channels=c,
        out_channels=o,
        in_hw=(h, w),
        kernel_hw=(kh, kw),
        stride=stride_hw,
        pad=pad,
        dilation=dilation_hw,
        groups=g,
        out_hw=out_hw,
    )


def window_geometry(
    input_shape: tuple[int, ...],
    kernel_size: object,
    *,
    stride: object = 1,
    padding: object = 0,
    dilation: object = 1,
    input_name: str = "x",
) -> ConvGeometry:
    """Geometry of the sliding windows of ``unfold``/``fold`` (no weight, no groups).

    ``out_channels`` mirrors ``in_channels`` so that the result is a valid
    :class:`ConvGeometry` for the im2col kernels.
    """
    if len(input_shape) != 4:
        msg = (
            f"{input_name} must be 4-D (N, C, H, W) or 3-D (C, H, W), "
            f"got shape {tuple(input_shape)}"
        )
        raise ValueError(msg)
    if isinstance(padding, str):
        msg = f"padding must be an int or a pair of ints for unfold/fold, got {padding!r}"
        raise TypeError(msg)
    kh, kw = as_pair(kernel_size, "kernel_size", minimum=1)
    c = int(input_shape[1])
    return conv_geometry(
        input_shape,
        (c, c, kh, kw),
        stride=stride,
        padding=padding,
        dilation=dilation,
        input_name=input_name,
    )


def transpose_geometry(
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    *,
    stride: object = 1,
    padding: object = 0,
    output_padding: object = 0,
    dilation: object = 1,
    groups: object = 1,
) -> ConvGeometry:
    """Geometry of ``conv_transpose2d`` as the conv2d whose input gradient it is.

    ``input_shape`` is (N, C_in, H, W) and ``weight_shape`` (C_in, C_out/groups, KH, KW).
    The returned geometry describes a forward conv2d from the transposed
    convolution's *output* (N, C_out, H_out, W_out) to its input (N, C_in, H, W).
    """
    if len(input_shape) != 4:
        msg = f"x must be 4-D (N, C, H, W) or 3-D (C, H, W), got shape {tuple(input_shape)}"
        raise ValueError(msg)
    if len(weight_shape) != 4:
        msg = (
            "weight must be 4-D (in_channels, out_channels/groups, KH, KW) for "
            f"conv_transpose2d, got shape {tuple(weight_shape)}"
        )
        raise ValueError(msg)
    if isinstance(padding, str):
        msg = f"padding must be an int or a pair of ints for conv_transpose2d, got {padding!r}"
        raise TypeError(msg)
    n, c_in, h, w = (int(s) for s in input_shape)
    wc, cg_out, kh, kw = (int(s) for s in weight_shape)
    g = positive_int(groups, "groups")
    stride_hw = as_pair(stride, "stride", minimum=1)
    dilation_hw = as_pair(dilation, "dilation", minimum=1)
    ph, pw = as_pair(padding, "padding", minimum=0)
    op = as_pair(output_padding, "output_padding", minimum=0)
    if wc != c_in:
        msg = (
            f"x has {c_in} channels but weight (in_channels, out_channels/groups, KH, KW) "
            f"has shape {tuple(weight_shape)}; expected weight.shape[0] == {c_in}"
        )
        raise ValueError(msg)
    if c_in % g != 0:
        msg = f"in_channels ({c_in}, axis 1 of x) must be divisible by groups={g}"
        raise ValueError(msg)
    for axis in range(2):
        if op[axis] >= max(stride_hw[axis], dilation_hw[axis]):
            msg = (
                f"output_padding must be smaller than either stride or dilation, got "
                f"output_padding={output_padding!r}, stride={stride!r}, dilation={dilation!r}"
            )
            raise ValueError(msg)
    out_hw = (
        (h - 1) * stride_hw[0] - 2 * ph + dilation_hw[0] * (kh - 1) + op[0] + 1,
        (w - 1) * stride_hw[1] - 2 * pw + dilation_hw[1] * (kw - 1) + op[1] + 1,
    )
    if min(out_hw) < 1:
        msg = (
            f"conv_transpose2d output size {out_hw} is not positive for input {h}x{w}, "
            f"kernel {kh}x{kw}, stride {stride_hw}, padding {(ph, pw)}; reduce padding"
        )
        raise ValueError(msg)
    return ConvGeometry(
        batch=n,
        in_channels=cg_out * g,
        out_channels=c_in,
        in_hw=out_hw,
        kernel_hw=(kh, kw),
        stride=stride_hw,
        pad=(ph, ph, pw, pw),
        dilation=dilation_hw,
        groups=g,
        out_hw=(h, w),
    )
