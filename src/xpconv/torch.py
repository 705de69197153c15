"""PyTorch adapter: xpconv's forward and explicit backward inside ``torch.autograd``.

:func:`xpconv.conv` runs on torch tensors, but autograd would then record
every im2col slice. :func:`conv` here (and :func:`conv1d`, :func:`conv2d`,
:func:`conv3d`) is a ``torch.autograd.Function`` whose backward is
:func:`xpconv.conv_backward`, so ``loss.backward()`` through xpconv gives the
same gradients as through ``torch.nn.functional.conv1d/2d/3d``;
:class:`Conv1d`, :class:`Conv2d` and :class:`Conv3d` are the matching
``torch.nn.Module`` classes.

Examples
--------
>>> import torch
>>> import xpconv.torch
>>> x = torch.ones(2, 3, 8, 8, requires_grad=True)
>>> layer = xpconv.torch.Conv2d(3, 4, 3, padding=1, rng=0)
>>> layer(x).sum().backward()
>>> x.grad.shape, layer.weight.grad.shape
(torch.Size([2, 3, 8, 8]), torch.Size([4, 3, 3, 3]))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from xpconv import functional as _core
from xpconv import layers as _layers

if TYPE_CHECKING:
    from xpconv._geometry import PaddingArg, SizeArg

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv2dFunction",
    "Conv3d",
    "ConvFunction",
    "conv",
    "conv1d",
    "conv2d",
    "conv3d",
]


# The core functions for each spatial rank (None: any rank, from the weight).
_FORWARD = {None: _core.conv, 1: _core.conv1d, 2: _core.conv2d, 3: _core.conv3d}
_BACKWARD = {
    None: _core.conv_backward,
    1: _core.conv1d_backward,
    2: _core.conv2d_backward,
    3: _core.conv3d_backward,
}


class ConvFunction(torch.autograd.Function):
    """``torch.autograd.Function`` running :func:`xpconv.conv` and its explicit backward.

    Call it through :func:`conv` (or ``conv1d/2d/3d``). The backward is itself
    written with torch operations, so double backward
    (``create_graph=True``) works too.
    """

    @staticmethod
    def forward(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        conv_args: dict[str, Any],
        rank: int | None,
    ) -> torch.Tensor:
        return _FORWARD[rank](x, weight, bias, **conv_args)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, weight, bias, conv_args, rank = inputs
        ctx.save_for_backward(x, weight)
        ctx.conv_args, ctx.rank = conv_args, rank
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if not (need_x or need_w or need_b):
            return (None,) * 5
        grads = _BACKWARD[ctx.rank](
            grad_output, x, weight, bias=ctx.has_bias and need_b, **ctx.conv_args
        )
        return (
            grads.input if need_x else None,
            grads.weight if need_w else None,
            grads.bias if need_b else None,
            None,
            None,
        )


#: The name :class:`ConvFunction` had when it was 2-D only.
Conv2dFunction = ConvFunction


def _apply(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    rank: int | None,
    xp: Any,
    **conv_args: Any,
) -> torch.Tensor:
    name = "conv" if rank is None else f"conv{rank}d"
    if xp is not None and "torch" not in getattr(xp, "__name__", ""):
        msg = f"xp must be None or a torch namespace for xpconv.torch.{name}, got {xp!r}"
        raise TypeError(msg)
    out: torch.Tensor = ConvFunction.apply(x, weight, bias, conv_args, rank)
    return out


def conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    /,
    bias: torch.Tensor | None = None,
    *,
    stride: SizeArg = 1,
    padding: PaddingArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> torch.Tensor:
    """:func:`xpconv.conv` on torch tensors (any rank), differentiable by ``torch.autograd``.

    :func:`conv1d`, :func:`conv2d` and :func:`conv3d` are the same with the
    rank checked, as :func:`xpconv.conv1d` etc.

    Parameters
    ----------
    x, weight, bias : torch.Tensor
        As for :func:`xpconv.conv`; any may have ``requires_grad=True``.
    stride, padding, dilation, groups, padding_mode
        As for :func:`xpconv.conv`.
    xp : namespace, optional
        Accepted for signature compatibility with :func:`xpconv.conv`; must be
        ``None`` or a torch namespace.

    Returns
    -------
    torch.Tensor
        The convolution; its ``grad_fn`` calls :func:`xpconv.conv_backward`.

    Raises
    ------
    ValueError, TypeError
        As :func:`xpconv.conv`; ``TypeError`` for an ``xp`` that is not torch.

    Examples
    --------
    >>> import torch
    >>> import xpconv.torch
    >>> w = torch.ones(1, 1, 2, 2, requires_grad=True)
    >>> xpconv.torch.conv(torch.ones(1, 1, 3, 3), w).sum().backward()
    >>> w.grad[0, 0]
    tensor([[4., 4.],
            [4., 4.]])
    """
    return _apply(
        x,
        weight,
        bias,
        None,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    /,
    bias: torch.Tensor | None = None,
    *,
    stride: SizeArg = 1,
    padding: PaddingArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> torch.Tensor:
    """:func:`conv` for signals (N, C, L), like ``torch.nn.functional.conv1d``."""
    return _apply(
        x,
        weight,
        bias,
        1,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    /,
    bias: torch.Tensor | None = None,
    *,
    stride: SizeArg = 1,
    padding: PaddingArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> torch.Tensor:
    """:func:`conv` for images (N, C, H, W), like ``torch.nn.functional.conv2d``.

    Examples
    --------
    >>> import torch
    >>> import xpconv.torch
    >>> w = torch.ones(1, 1, 2, 2, requires_grad=True)
    >>> xpconv.torch.conv2d(torch.ones(1, 1, 3, 3), w).sum().backward()
    >>> w.grad[0, 0]
    tensor([[4., 4.],
            [4., 4.]])
    """
    return _apply(
        x,
        weight,
        bias,
        2,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def conv3d(
    x: torch.Tensor,
    weight: torch.Tensor,
    /,
    bias: torch.Tensor | None = None,
    *,
    stride: SizeArg = 1,
    padding: PaddingArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> torch.Tensor:
    """:func:`conv` for volumes (N, C, D, H, W), like ``torch.nn.functional.conv3d``."""
    return _apply(
        x,
        weight,
        bias,
        3,
        xp,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


class _ConvModule(torch.nn.Module):
    """``torch.nn.Module`` with an xpconv layer's parameters and xpconv's kernels."""

    _core: type[Any]

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: SizeArg,
        *,
        stride: SizeArg = 1,
        padding: PaddingArg = 0,
        dilation: SizeArg = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        core = self._core(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            padding_mode=padding_mode,
            xp=torch,
            device=device,
            dtype=torch.get_default_dtype() if dtype is None else dtype,
            rng=rng,
        )
        self.in_channels, self.out_channels = core.in_channels, core.out_channels
        self.kernel_size = core.kernel_size
        self.stride, self.padding = core.stride, core.padding
        self.dilation, self.groups = core.dilation, core.groups
        self.padding_mode = core.padding_mode
        self.weight = torch.nn.Parameter(core.weight)
        if core.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = torch.nn.Parameter(core.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _apply(
            x,
            self.weight,
            self.bias,
            self._core.rank,
            None,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            padding_mode=self.padding_mode,
        )

    def extra_repr(self) -> str:
        mode = "" if self.padding_mode == "zeros" else f", padding_mode={self.padding_mode!r}"
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}{mode}"
        )


_MODULE_DOC = """``torch.nn.Module`` with :class:`xpconv.{name}`'s parameters and xpconv's kernels.

    A drop-in for ``torch.nn.{name}`` (same parameter shapes and names, same
    default initialisation) whose forward and backward are xpconv's. With the
    same ``rng`` it starts from the same weights as :class:`xpconv.{name}`.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode
        As for :class:`xpconv.{name}`.
    device, dtype : optional
        Where and in which dtype the parameters live (``torch.get_default_dtype()``
        by default).
    rng : int or numpy.random.Generator, optional
        Seed for the initialisation.
    """


class Conv1d(_ConvModule):
    __doc__ = _MODULE_DOC.format(name="Conv1d")
    _core = _layers.Conv1d


class Conv2d(_ConvModule):
    __doc__ = _MODULE_DOC.format(name="Conv2d")
    _core = _layers.Conv2d


class Conv3d(_ConvModule):
    __doc__ = _MODULE_DOC.format(name="Conv3d")
    _core = _layers.Conv3d
