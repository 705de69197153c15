"""Argument checking and output-size arithmetic for convolutions of any spatial rank.

Every public function turns its arguments into a :class:`ConvGeometry` first,
so that each check (and each error message) is written exactly once, for
every number of spatial dimensions ``D`` (1 for signals, 2 for images, 3 for
volumes, and on).
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ConvGeometry",
    "PaddingArg",
    "SizeArg",
    "as_tuple",
    "conv_geometry",
    "input_layout",
    "normalize_padding",
    "positive_int",
    "resolve_padding",
    "transpose_geometry",
    "window_geometry",
]

SizeArg = int | tuple[int, ...]
PaddingArg = int | tuple[int, ...] | Literal["same", "valid", "full"]
Pads = tuple[tuple[int, int], ...]

_AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def spatial_names(rank: int) -> tuple[str, ...]:
    """Names of the spatial axes, as torch's documentation writes them."""
    return _AXIS_NAMES.get(rank, tuple(f"S{i + 1}" for i in range(rank)))


def input_layout(rank: int, *, batched: bool = True) -> str:
    """``'(N, C, H, W)'`` for rank 2, ``'(C, L)'`` for an unbatched rank 1, ..."""
    lead = ("N", "C") if batched else ("C",)
    return "(" + ", ".join((*lead, *spatial_names(rank))) + ")"


def _tuple_words(rank: int) -> str:
    return {1: "a tuple of 1 int", 2: "a pair of ints"}.get(rank, f"a tuple of {rank} ints")


def _as_int(value: object) -> int:
    """``operator.index(value)``: accepts NumPy integers, rejects floats and bools."""
    if isinstance(value, bool):
        raise TypeError
    return operator.index(value)  # type: ignore[arg-type]


def as_tuple(value: object, name: str, rank: int, *, minimum: int) -> tuple[int, ...]:
    """``(value,) * rank`` for an int, or a validated sequence of ``rank`` ints.

    Raises ``TypeError`` for non-integers and ``ValueError`` for a sequence of
    the wrong length or values below ``minimum``, naming the argument.
    """
    expected = f"{name} must be an int or {_tuple_words(rank)}, got {value!r}"
    items = value if isinstance(value, tuple | list) else (value,) * rank
    if len(items) != rank:
        raise ValueError(expected)
    try:
        result = tuple(_as_int(item) for item in items)
    except TypeError:
        raise TypeError(expected) from None
    if min(result) < minimum:
        rule = "positive" if minimum == 1 else f">= {minimum}"
        msg = f"{name} must be {rule}, got {value!r}"
        raise ValueError(msg)
    return result


def positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1; ``TypeError`` for non-integers, ``ValueError`` below 1."""
    msg = f"{name} must be a positive int, got {value!r}"
    try:
        result = _as_int(value)
    except TypeError:
        raise TypeError(msg) from None
    if result < 1:
        raise ValueError(msg)
    return result


def _padding_words(rank: int) -> str:
    return f"padding must be an int, {_tuple_words(rank)}, 'same', 'valid' or 'full'"


def normalize_padding(padding: object, rank: int) -> PaddingArg:
    """``'same'``, ``'valid'``, ``'full'`` or a ``rank``-tuple of amounts; hashable and checked."""
    if isinstance(padding, str):
        for name in ("same", "valid", "full"):
            if padding == name:
                return name
        msg = f"{_padding_words(rank)}, got {padding!r}"
        raise ValueError(msg)
    return as_tuple(padding, "padding", rank, minimum=0)


def _same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """'same' padding as in TensorFlow/JAX: output size ceil(size / stride).

    The odd pixel goes to the end of the axis; for stride 1 this is exactly
    PyTorch's ``padding='same'``.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding: object,
    in_size: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
) -> Pads:
    """Turn ``padding`` into explicit ``(before, after)`` amounts for each spatial axis."""
    rank = len(in_size)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * rank
        if padding == "same":
            return tuple(map(_same_padding, in_size, kernel, stride, dilation))
        if padding == "full":
            # Every window that overlaps the input at all: the 'full' convolution
            # of signal processing (numpy.convolve's mode='full').
            return tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel, dilation, strict=True))
        msg = f"{_padding_words(rank)}, got {padding!r}"
        raise ValueError(msg)
    return tuple((p, p) for p in as_tuple(padding, "padding", rank, minimum=0))


@dataclass(frozen=True)
class ConvGeometry:
    """Everything about a convolution except the numbers in the arrays.

    Sizes are tuples with one entry per spatial axis. ``in_size`` is the
    unpadded input, ``pad`` the ``(before, after)`` zeros of each axis and
    ``out_size`` the output of the forward convolution. A piece of the work
    (a :class:`xpconv._tiles.Tile`) has a geometry of its own: its samples,
    the padded input it reads (``pad`` all zero) and its share of the output.
    The derived sizes are computed once per geometry (a call asks them often).
    """

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pad: Pads
    out_size: tuple[int, ...]

    @functools.cached_property
    def rank(self) -> int:
        """The number of spatial dimensions."""
        return len(self.in_size)

    @functools.cached_property
    def padded_size(self) -> tuple[int, ...]:
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.in_size, self.pad, strict=True))

    @functools.cached_property
    def is_padded(self) -> bool:
        return any(lo or hi for lo, hi in self.pad)

    @functools.cached_property
    def kernel_volume(self) -> int:
        return math.prod(self.kernel)

    @functools.cached_property
    def out_volume(self) -> int:
        return math.prod(self.out_size)

    @functools.cached_property
    def column_rows(self) -> int:
        """Rows of the im2col columns: ``C * prod(kernel)`` (every group's)."""
        return self.in_channels * self.kernel_volume

    @functools.cached_property
    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.in_size)

    @functools.cached_property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.out_size)

    @functools.cached_property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)


def _sizes(values: Sequence[int]) -> str:
    return "x".join(str(v) for v in values)


def _check_channels(
    c: int, o: int, cg: int, g: int, weight_shape: tuple[int, ...], input_name: str
) -> None:
    if c % g != 0:
        msg = f"in_channels ({c}, axis 1 of {input_name}) must be divisible by groups={g}"
        raise ValueError(msg)
    if o % g != 0:
        msg = f"out_channels ({o}, axis 0 of weight) must be divisible by groups={g}"
        raise ValueError(msg)
    if cg * g != c:
        msg = (
            f"{input_name} has {c} channels but weight expects in_channels/groups = {cg} "
            f"with groups={g}, i.e. {cg * g} channels; weight shape is {weight_shape}"
        )
        raise ValueError(msg)


def _output_size(
    in_size: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    dilation: tuple[int, ...],
    pad: Pads,
) -> tuple[int, ...]:
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(in_size, pad, strict=True))
    reach = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
    if any(r > p for r, p in zip(reach, padded, strict=True)):
        msg = (
            f"kernel size {_sizes(kernel)} (dilated: {_sizes(reach)}) is larger than the "
            f"padded input {_sizes(padded)} (input {_sizes(in_size)}, padding {pad}); "
            "expected a kernel that fits"
        )
        raise ValueError(msg)
    return tuple((p - r) // s + 1 for p, r, s in zip(padded, reach, stride, strict=True))


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
    """Validate a convolution and compute its geometry.

    ``input_shape`` is (N, C, *spatial) and ``weight_shape`` (O, C/groups,
    *kernel), the PyTorch layout, of the same spatial rank (the caller checks
    the ranks, with messages that name its function). The answer is
    remembered for hashable arguments: a training loop asks the same
    question at every step.
    """
    args = (tuple(input_shape), tuple(weight_shape), stride, padding, dilation, groups, input_name)
    try:
        return _cached_geometry(*args)
    except TypeError as error:  # a list or another unhashable argument: no cache
        if "unhashable" not in str(error):
            raise
        return _conv_geometry(*args)


@functools.lru_cache(maxsize=512)
def _cached_geometry(*args: Any) -> ConvGeometry:
    return _conv_geometry(*args)


def _conv_geometry(
    input_shape: tuple[int, ...],
    weight_shape: tuple[int, ...],
    stride: object,
    padding: object,
    dilation: object,
    groups: object,
    input_name: str,
) -> ConvGeometry:
    rank = len(weight_shape) - 2
    assert rank >= 1
    assert len(input_shape) == rank + 2
    n, c, *in_size = (int(s) for s in input_shape)
    o, cg, *kernel = (int(s) for s in weight_shape)
    g = positive_int(groups, "groups")
    stride_t = as_tuple(stride, "stride", rank, minimum=1)
    dilation_t = as_tuple(dilation, "dilation", rank, minimum=1)
    if min(kernel) < 1:
        msg = f"weight must have a non-empty kernel, got shape {tuple(weight_shape)}"
        raise ValueError(msg)
    _check_channels(c, o, cg, g, tuple(weight_shape), input_name)
    if n and c and 0 in in_size:  # as PyTorch: only the batch or the channels may be empty
        msg = (
            f"{input_name} has an empty spatial axis, shape {tuple(input_shape)}: a convolution "
            "needs at least one value along each spatial axis (only N or C may be 0)"
        )
        raise ValueError(msg)
    pad = resolve_padding(padding, tuple(in_size), tuple(kernel), stride_t, dilation_t)
    return ConvGeometry(
        batch=n,
        in_channels=c,
        out_channels=o,
        groups=g,
        in_size=tuple(in_size),
        kernel=tuple(kernel),
        stride=stride_t,
        dilation=dilation_t,
        pad=pad,
        out_size=_output_size(tuple(in_size), tuple(kernel), stride_t, dilation_t, pad),
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

    ``input_shape`` is (N, C, *spatial). ``out_channels`` mirrors
    ``in_channels`` so that the result is a valid :class:`ConvGeometry` for
    the im2col kernels.
    """
    rank = len(input_shape) - 2
    if isinstance(padding, str):
        msg = f"padding must be an int or {_tuple_words(rank)} for unfold/fold, got {padding!r}"
        raise TypeError(msg)
    kernel = as_tuple(kernel_size, "kernel_size", rank, minimum=1)
    c = int(input_shape[1])
    return conv_geometry(
        input_shape,
        (c, c, *kernel),
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
    op: str = "conv_transpose",
) -> ConvGeometry:
    """Geometry of a transposed convolution as the convolution whose input gradient it is.

    ``input_shape`` is (N, C_in, *spatial) and ``weight_shape`` (C_in,
    C_out/groups, *kernel). The returned geometry describes a forward
    convolution from the transposed convolution's *output* (N, C_out,
    *out_spatial) to its input (N, C_in, *spatial).
    """
    rank = len(weight_shape) - 2
    if isinstance(padding, str):
        msg = f"padding must be an int or {_tuple_words(rank)} for {op}, got {padding!r}"
        raise TypeError(msg)
    n, c_in, *in_size = (int(s) for s in input_shape)
    wc, cg_out, *kernel = (int(s) for s in weight_shape)
    g = positive_int(groups, "groups")
    stride_t = as_tuple(stride, "stride", rank, minimum=1)
    dilation_t = as_tuple(dilation, "dilation", rank, minimum=1)
    pad = as_tuple(padding, "padding", rank, minimum=0)
    out_pad = as_tuple(output_padding, "output_padding", rank, minimum=0)
    if wc != c_in:
        msg = (
            f"x has {c_in} channels but weight (in_channels, out_channels/groups, *kernel) "
            f"has shape {tuple(weight_shape)}; expected weight.shape[0] == {c_in}"
        )
        raise ValueError(msg)
    if c_in % g != 0:
        msg = f"in_channels ({c_in}, axis 1 of x) must be divisible by groups={g}"
        raise ValueError(msg)
    if min(kernel) < 1:
        msg = f"weight must have a non-empty kernel, got shape {tuple(weight_shape)}"
        raise ValueError(msg)
    if any(op_ >= max(s, d) for op_, s, d in zip(out_pad, stride_t, dilation_t, strict=True)):
        msg = (
            f"output_padding must be smaller than either stride or dilation, got "
            f"output_padding={output_padding!r}, stride={stride!r}, dilation={dilation!r}"
        )
        raise ValueError(msg)
    out_size = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + extra + 1
        for size, s, p, d, k, extra in zip(
            in_size, stride_t, pad, dilation_t, kernel, out_pad, strict=True
        )
    )
    if min(out_size) < 1:
        msg = (
            f"{op} output size {out_size} is not positive for input {_sizes(in_size)}, "
            f"kernel {_sizes(kernel)}, stride {stride_t}, padding {pad}; reduce padding"
        )
        raise ValueError(msg)
    return ConvGeometry(
        batch=n,
        in_channels=cg_out * g,
        out_channels=c_in,
        groups=g,
        in_size=out_size,
        kernel=tuple(kernel),
        stride=stride_t,
        dilation=dilation_t,
        pad=tuple((p, p) for p in pad),
        out_size=tuple(in_size),
    )
