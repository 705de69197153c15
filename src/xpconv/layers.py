"""Layer objects: parameters, a forward pass that remembers its input, a backward pass."""

from __future__ import annotations

import math
from typing import Any

from xpconv._backend import default_float_dtype, random_uniform, resolve_namespace
from xpconv._geometry import PaddingArg, PairArg, as_pair, normalize_padding, positive_int
from xpconv.functional import conv2d, conv2d_backward

__all__ = ["Conv2d"]

Array = Any


class Conv2d:
    """A 2-D convolution layer with explicit backward, like ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output.
    kernel_size : int or (int, int)
        Filter height and width.
    stride, padding, dilation, groups
        As for :func:`xpconv.conv2d`.
    bias : bool, optional
        Whether the layer has a bias.
    xp : namespace, optional
        Array library for the parameters (``numpy``, ``torch``, ``cupy``,
        ``jax.numpy``, ...). NumPy by default.
    device : optional
        Device for the parameters, in the library's own terms.
    dtype : optional
        Parameter dtype; by default the library's default real floating dtype
        (float64 for NumPy, float32 for torch and JAX).
    rng : int or numpy.random.Generator, optional
        Seed for the initialisation. The same seed gives the same weights on
        every backend.

    Attributes
    ----------
    weight : array
        Shape (out_channels, in_channels/groups, KH, KW), initialised like
        PyTorch: uniform in ``±1/sqrt(fan_in)`` with ``fan_in = in_channels/groups*KH*KW``.
    bias : array or None
        Shape (out_channels,), same initialisation.
    grad_weight, grad_bias : array or None
        Set by :meth:`backward`.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> layer = xpconv.Conv2d(3, 8, 3, padding=1, rng=0)
    >>> y = layer(np.ones((2, 3, 5, 5)))
    >>> y.shape
    (2, 8, 5, 5)
    >>> grad_x = layer.backward(np.ones_like(y))
    >>> grad_x.shape, layer.grad_weight.shape
    ((2, 3, 5, 5), (8, 3, 3, 3))
    >>> layer.step(0.1)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: PairArg,
        *,
        stride: PairArg = 1,
        padding: PaddingArg = 0,
        dilation: PairArg = 1,
        groups: int = 1,
        bias: bool = True,
        xp: Any = None,
        device: Any = None,
        dtype: Any = None,
        rng: Any = None,
    ) -> None:
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.groups = positive_int(groups, "groups")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            if value % self.groups:
                msg = f"{name} ({value}) must be divisible by groups={groups}"
                raise ValueError(msg)
        self.kernel_size = as_pair(kernel_size, "kernel_size", minimum=1)
        self.stride = as_pair(stride, "stride", minimum=1)
        self.dilation = as_pair(dilation, "dilation", minimum=1)
        self.padding = normalize_padding(padding)
        self.xp = resolve_namespace(xp)
        self.device = device
        self.dtype = default_float_dtype(self.xp, device) if dtype is None else dtype
        if not self.xp.isdtype(self.dtype, "real floating"):
            msg = f"dtype must be a real floating dtype, got {dtype!r}"
            raise TypeError(msg)

        # PyTorch's default: kaiming_uniform(a=sqrt(5)) reduces to U(-1/sqrt(fan_in), +).
        fan_in = self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1.0 / math.sqrt(fan_in)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self.weight = self._param(random_uniform(rng, -bound, bound, shape))
        self.bias = (
            self._param(random_uniform(rng, -bound, bound, (self.out_channels,))) if bias else None
        )
        self.grad_weight: Array | None = None
        self.grad_bias: Array | None = None
        self._input: Array | None = None

    def _param(self, values: Any) -> Array:
        return self.xp.asarray(values, dtype=self.dtype, device=self.device)

    @property
    def _conv_args(self) -> dict[str, Any]:
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
        }

    def forward(self, x: Array) -> Array:
        """Convolve ``x`` (N, C, H, W) and remember it for :meth:`backward`."""
        y = conv2d(x, self.weight, self.bias, **self._conv_args)
        self._input = x
        return y

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        """Set ``grad_weight``/``grad_bias`` from dL/dy and return dL/dx."""
        if self._input is None:
            msg = "backward() needs a forward() call first: the layer has no saved input"
            raise RuntimeError(msg)
        grads = conv2d_backward(
            grad_output, self._input, self.weight, bias=self.bias is not None, **self._conv_args
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

    def __repr__(self) -> str:
        return (
            f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}, dtype={self.dtype})"
        )
