"""Convolution layers: parameters, a forward pass that remembers its input, a backward pass.

:class:`Conv1d`, :class:`Conv2d` and :class:`Conv3d` (and their transposed
twins) hold their weight and bias in the array library of your choice, with
PyTorch's shapes and default initialisation. ``forward(x)`` (also
``__call__``) remembers ``x``; ``backward(grad_output)`` returns dL/dx and
sets ``grad_weight`` and ``grad_bias``; ``step(lr)`` is plain SGD.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from xpconv._backend import (
    default_float_dtype,
    dtype_name,
    namespace_of,
    random_uniform,
    resolve_dtype,
    resolve_namespace,
)
from xpconv._geometry import (
    PaddingArg,
    SizeArg,
    as_tuple,
    input_layout,
    normalize_padding,
    positive_int,
)
from xpconv._padding import check_mode, zeros_only
from xpconv._state import Stateful
from xpconv.functional import (
    conv1d,
    conv1d_backward,
    conv2d,
    conv2d_backward,
    conv3d,
    conv3d_backward,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    conv_transpose_backward,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from xpconv.functional import ConvGradients

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

Array = Any


class _Conv(Stateful):
    """What every convolution layer shares: checked hyperparameters, parameters, SGD,
    the input checks a layer can explain better than the functions, save and load."""

    rank: ClassVar[int]
    transposed: ClassVar[bool] = False
    # The functional forward and backward passes of this kind of layer.
    _function: ClassVar[Callable[..., Array]]
    _backward: ClassVar[Callable[..., ConvGradients]]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: SizeArg,
        *,
        stride: SizeArg,
        padding: Any,
        dilation: SizeArg,
        groups: int,
        bias: bool,
        xp: Any,
        device: Any,
        dtype: Any,
        rng: Any,
    ) -> None:
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.groups = positive_int(groups, "groups")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if value % self.groups:
                msg = f"{name} ({value}) must be divisible by groups={groups}"
                raise ValueError(msg)
        if not isinstance(bias, bool):
            msg = f"bias must be True or False, got {bias!r}"
            raise TypeError(msg)
        rank = self.rank
        self.kernel_size = as_tuple(kernel_size, "kernel_size", rank, minimum=1)
        self.stride = as_tuple(stride, "stride", rank, minimum=1)
        self.dilation = as_tuple(dilation, "dilation", rank, minimum=1)
        self.padding = padding
        self.xp = resolve_namespace(xp)
        self.device = device
        self.dtype = (
            default_float_dtype(self.xp, device) if dtype is None else resolve_dtype(dtype, self.xp)
        )
        if not self.xp.isdtype(self.dtype, ("real floating", "complex floating")):
            msg = f"dtype must be a real or complex floating dtype, got {dtype!r}"
            raise TypeError(msg)
        self._init_parameters(bias, rng)
        self.grad_weight: Array | None = None
        self.grad_bias: Array | None = None
        self._input: Array | None = None

    def _init_parameters(self, bias: bool, rng: Any) -> None:
        # PyTorch's default: kaiming_uniform(a=sqrt(5)) reduces to U(-1/sqrt(fan_in), +),
        # with fan_in the size of weight[0] (for a transposed layer: out_channels/groups * K).
        g, c, o = self.groups, self.in_channels, self.out_channels
        channels = (c, o // g) if self.transposed else (o, c // g)
        shape = (*channels, *self.kernel_size)
        bound = 1.0 / math.sqrt(math.prod(shape[1:]))
        self.weight = self._param(self._uniform(rng, bound, shape))
        self.bias = self._param(self._uniform(rng, bound, (o,))) if bias else None

    def _uniform(self, rng: Any, bound: float, shape: tuple[int, ...]) -> Any:
        """U(-bound, bound) samples; for a complex dtype real and imaginary parts each, as torch."""
        real = random_uniform(rng, -bound, bound, shape)
        if self.xp.isdtype(self.dtype, "complex floating"):
            return real + 1j * random_uniform(rng, -bound, bound, shape)
        return real

    def _param(self, values: Any) -> Array:
        try:
            return self.xp.asarray(values, dtype=self.dtype, device=self.device)
        except Exception as error:  # each library has its own error for a missing device
            msg = f"device={self.device!r} is not usable with {self.xp.__name__}: {error}"
            raise ValueError(msg) from error

    def _saved_input(self) -> Array:
        if self._input is None:
            msg = "backward() needs a forward() call first: the layer has no saved input"
            raise RuntimeError(msg)
        return self._input

    def _check_input(self, x: Array) -> None:
        """Channels first, then the dtype, with the fix a layer's user needs."""
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) not in (self.rank + 1, self.rank + 2):
            return  # the function's own error names the expected ranks
        axis = len(shape) - self.rank - 1
        if shape[axis] != self.in_channels:
            layout = input_layout(self.rank, batched=axis == 1)
            hint = ""
            if shape[-1] == self.in_channels:
                hint = (
                    f"; x looks channels-last: xpconv wants {layout}, so move the "
                    f"channels with xp.moveaxis(x, -1, {axis})"
                )
            msg = (
                f"{type(self).__name__} expects {self.in_channels} input channels on axis "
                f"{axis} of {layout}, got x of shape {shape}{hint}"
            )
            raise ValueError(msg)
        try:
            same_library = namespace_of(x=x) is self.xp
        except TypeError:
            return  # the function's own error names the library
        if same_library and x.dtype != self.dtype:
            name, have, want = type(self).__name__, dtype_name(x.dtype), dtype_name(self.dtype)
            msg = (
                f"x has dtype {have} but the parameters of this {name} are {want}: create "
                f"the layer with dtype={have!r} ({name}(..., dtype={have!r})) or cast x "
                f"with xp.astype(x, layer.dtype)"
            )
            raise TypeError(msg)

    @property
    def _conv_args(self) -> dict[str, Any]:
        raise NotImplementedError

    def forward(self, x: Array) -> Array:
        """Apply the layer to ``x``, shape ``(N, C_in, *spatial)``; remember it for backward."""
        self._check_input(x)
        y = self._function(x, self.weight, self.bias, **self._conv_args)
        self._input = x
        return y

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        """Set ``grad_weight``/``grad_bias`` from dL/dy and return dL/dx."""
        grads = self._backward(
            grad_output,
            self._saved_input(),
            self.weight,
            bias=self.bias is not None,
            **self._conv_args,
        )
        self.grad_weight, self.grad_bias = grads.weight, grads.bias
        return grads.input

    def step(self, lr: float) -> None:
        """Plain SGD: ``param -= lr * grad`` for the weight and the bias."""
        if self.grad_weight is None:
            msg = "step() needs a backward() call first: there are no gradients"
            raise RuntimeError(msg)
        self.weight = self.weight - lr * self.grad_weight
        if self.bias is not None and self.grad_bias is not None:
            self.bias = self.bias - lr * self.grad_bias

    def parameters(self) -> list[Array]:
        """The trainable arrays, weight first."""
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def _extra_repr(self) -> str:
        mode = getattr(self, "padding_mode", "zeros")
        return "" if mode == "zeros" else f"padding_mode={mode!r}, "

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"{self._extra_repr()}dilation={self.dilation}, groups={self.groups}, "
            f"bias={self.bias is not None}, dtype={self.dtype})"
        )


class _ConvNd(_Conv):
    """A convolution layer of rank :attr:`rank`."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: SizeArg,
        stride: SizeArg = 1,
        padding: PaddingArg = 0,
        dilation: SizeArg = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        xp: Any = None,
        device: Any = None,
        dtype: Any = None,
        rng: Any = None,
    ) -> None:
        self.padding_mode = check_mode(padding_mode)
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=normalize_padding(padding, self.rank),
            dilation=dilation,
            groups=groups,
            bias=bias,
            xp=xp,
            device=device,
            dtype=dtype,
            rng=rng,
        )

    @property
    def _conv_args(self) -> dict[str, Any]:
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
            "padding_mode": self.padding_mode,
        }


class _ConvTransposeNd(_Conv):
    """A transposed convolution layer of rank :attr:`rank`."""

    transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: SizeArg,
        stride: SizeArg = 1,
        padding: SizeArg = 0,
        output_padding: SizeArg = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: SizeArg = 1,
        padding_mode: str = "zeros",
        *,
        xp: Any = None,
        device: Any = None,
        dtype: Any = None,
        rng: Any = None,
    ) -> None:
        zeros_only(padding_mode, type(self).__name__)
        self.padding_mode = "zeros"
        if isinstance(padding, str):
            name = type(self).__name__
            msg = f"padding must be an int or a tuple of ints for {name}, got {padding!r}"
            raise TypeError(msg)
        super().__init__(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=as_tuple(padding, "padding", self.rank, minimum=0),
            dilation=dilation,
            groups=groups,
            bias=bias,
            xp=xp,
            device=device,
            dtype=dtype,
            rng=rng,
        )
        self.output_padding = as_tuple(output_padding, "output_padding", self.rank, minimum=0)

    @property
    def _conv_args(self) -> dict[str, Any]:
        return {
            "stride": self.stride,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "dilation": self.dilation,
            "groups": self.groups,
        }

    def _extra_repr(self) -> str:
        return f"output_padding={self.output_padding}, "


_LAYER_DOC = """A {rank}-D {what} layer with explicit backward, like ``torch.nn.{torch}``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output.
    kernel_size : int or {tuple_words}
        Filter size.
    {positional}
        As for :func:`xpconv.{function}`; ``bias`` says whether the layer has
        a bias. They may be given by position in ``torch.nn.{torch}``'s order.
    xp : namespace, optional
        Array library for the parameters (``numpy``, ``torch``, ``cupy``,
        ``jax.numpy``, ...). NumPy by default.
    device : optional
        Device for the parameters, in the library's own terms.
    dtype : optional
        Parameter dtype; by default the library's default real floating dtype
        (float64 for NumPy, float32 for torch and JAX). Complex dtypes draw
        the real and imaginary parts each from the initial distribution, as
        PyTorch does; half precision (float16, bfloat16) computes in float32.
    rng : int or numpy.random.Generator, optional
        Seed for the initialisation. The same seed gives the same weights on
        every backend.

    Attributes
    ----------
    weight : array
        Shape {weight_shape}, initialised like PyTorch: uniform in
        ``±1/sqrt(fan_in)`` with ``fan_in = {fan_in}``.
    bias : array or None
        Shape (out_channels,), same initialisation.
    grad_weight, grad_bias : array or None
        Set by :meth:`backward`.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> layer = xpconv.{name}(3, 8, 3, {example_args}rng=0)
    >>> y = layer(np.ones({x_shape}))
    >>> y.shape
    {y_shape}
    >>> grad_x = layer.backward(np.ones_like(y))
    >>> grad_x.shape, layer.grad_weight.shape
    ({x_shape}, {w_shape})
    >>> layer.step(0.1)
    """

_KERNEL = {1: "K", 2: "KH, KW", 3: "KD, KH, KW"}
_TUPLE_WORDS = {1: "1-tuple", 2: "pair of ints", 3: "3-tuple"}


def _layer_doc(rank: int, *, transposed: bool, x: tuple[int, ...], y: tuple[int, ...]) -> str:
    kernel = _KERNEL[rank]
    name = f"ConvTranspose{rank}d" if transposed else f"Conv{rank}d"
    if transposed:
        weight = f"(in_channels, out_channels/groups, {kernel})"
        fan_in = "out_channels/groups * prod(kernel_size)"
        w_shape = (3, 8, *(3,) * rank)
    else:
        weight = f"(out_channels, in_channels/groups, {kernel})"
        fan_in = "in_channels/groups * prod(kernel_size)"
        w_shape = (8, 3, *(3,) * rank)
    return _LAYER_DOC.format(
        rank=rank,
        what="transposed convolution" if transposed else "convolution",
        torch=name,
        tuple_words=_TUPLE_WORDS[rank],
        positional=(
            "stride, padding, output_padding, groups, bias, dilation, padding_mode"
            if transposed
            else "stride, padding, dilation, groups, bias, padding_mode"
        ),
        function=f"conv_transpose{rank}d" if transposed else f"conv{rank}d",
        weight_shape=weight,
        fan_in=fan_in,
        name=name,
        example_args="stride=2, " if transposed else "padding=1, ",
        x_shape=x,
        y_shape=(*y,),
        w_shape=w_shape,
    )


class Conv1d(_ConvNd):
    rank = 1
    _function = staticmethod(conv1d)
    _backward = staticmethod(conv1d_backward)
    __doc__ = _layer_doc(1, transposed=False, x=(2, 3, 10), y=(2, 8, 10))


class Conv2d(_ConvNd):
    rank = 2
    _function = staticmethod(conv2d)
    _backward = staticmethod(conv2d_backward)
    __doc__ = _layer_doc(2, transposed=False, x=(2, 3, 5, 5), y=(2, 8, 5, 5))


class Conv3d(_ConvNd):
    rank = 3
    _function = staticmethod(conv3d)
    _backward = staticmethod(conv3d_backward)
    __doc__ = _layer_doc(3, transposed=False, x=(2, 3, 4, 4, 4), y=(2, 8, 4, 4, 4))


class ConvTranspose1d(_ConvTransposeNd):
    rank = 1
    _function = staticmethod(conv_transpose1d)
    _backward = staticmethod(conv_transpose_backward)
    __doc__ = _layer_doc(1, transposed=True, x=(2, 3, 10), y=(2, 8, 21))


class ConvTranspose2d(_ConvTransposeNd):
    rank = 2
    _function = staticmethod(conv_transpose2d)
    _backward = staticmethod(conv_transpose_backward)
    __doc__ = _layer_doc(2, transposed=True, x=(2, 3, 5, 5), y=(2, 8, 11, 11))


class ConvTranspose3d(_ConvTransposeNd):
    rank = 3
    _function = staticmethod(conv_transpose3d)
    _backward = staticmethod(conv_transpose_backward)
    __doc__ = _layer_doc(3, transposed=True, x=(2, 3, 4, 4, 4), y=(2, 8, 9, 9, 9))
