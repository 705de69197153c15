"""PyTorch adapter: xpconv's forward and explicit backward inside ``torch.autograd``.

:func:`xpconv.conv2d` runs on torch tensors, but autograd would then record
every im2col slice. :func:`conv2d` here is a ``torch.autograd.Function``
whose backward is :func:`xpconv.conv2d_backward`, so ``loss.backward()``
through xpconv gives the same gradients as through
``torch.nn.functional.conv2d``; :class:`Conv2d` is the matching
``torch.nn.Module``.

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

from xpconv.functional import conv2d as _core_conv2d
from xpconv.functional import conv2d_backward
from xpconv.layers import Conv2d as _CoreConv2d

if TYPE_CHECKING:
    from xpconv._geometry import PaddingArg, PairArg

__all__ = ["Conv2d", "Conv2dFunction", "conv2d"]


class Conv2dFunction(torch.autograd.Function):
    """``torch.autograd.Function`` running :func:`xpconv.conv2d` and its explicit backward.

    Call it through :func:`conv2d`. The backward is itself written with torch
    operations, so double backward (``create_graph=True``) works too.
    """

    @staticmethod
    def forward(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: PairArg,
        padding: PaddingArg,
        dilation: PairArg,
        groups: int,
    ) -> torch.Tensor:
        return _core_conv2d(
            x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups
        )

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        x, weight, bias, stride, padding, dilation, groups = inputs
        ctx.save_for_backward(x, weight)
        ctx.conv_args = {
            "stride": stride,
            "padding": padding,
            "dilation": dilation,
            "groups": groups,
        }
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if not (need_x or need_w or need_b):
            return (None,) * 7
        grads = conv2d_backward(
            grad_output, x, weight, bias=ctx.has_bias and need_b, **ctx.conv_args
        )
        return (
            grads.input if need_x else None,
            grads.weight if need_w else None,
            grads.bias if need_b else None,
            None,
            None,
            None,
            None,
        )


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    /,
    bias: torch.Tensor | None = None,
    *,
    stride: PairArg = 1,
    padding: PaddingArg = 0,
    dilation: PairArg = 1,
    groups: int = 1,
    xp: Any = None,
) -> torch.Tensor:
    """:func:`xpconv.conv2d` on torch tensors, differentiable by ``torch.autograd``.

    Parameters
    ----------
    x, weight, bias : torch.Tensor
        As for :func:`xpconv.conv2d`; any may have ``requires_grad=True``.
    stride, padding, dilation, groups
        As for :func:`xpconv.conv2d`.
    xp : namespace, optional
        Accepted for signature compatibility with :func:`xpconv.conv2d`; must be
        ``None`` or a torch namespace.

    Returns
    -------
    torch.Tensor
        The convolution; its ``grad_fn`` calls :func:`xpconv.conv2d_backward`.

    Raises
    ------
    ValueError, TypeError
        As :func:`xpconv.conv2d`; ``TypeError`` for an ``xp`` that is not torch.

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
    if xp is not None and "torch" not in getattr(xp, "__name__", ""):
        msg = f"xp must be None or a torch namespace for xpconv.torch.conv2d, got {xp!r}"
        raise TypeError(msg)
    out: torch.Tensor = Conv2dFunction.apply(x, weight, bias, stride, padding, dilation, groups)
    return out


class Conv2d(torch.nn.Module):
    """``torch.nn.Module`` with :class:`xpconv.Conv2d`'s parameters and xpconv's kernels.

    A drop-in for ``torch.nn.Conv2d`` (same parameter shapes and names, same
    default initialisation) whose forward and backward are xpconv's. With the
    same ``rng`` it starts from the same weights as :class:`xpconv.Conv2d`.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias
        As for :class:`xpconv.Conv2d`.
    device, dtype : optional
        Where and in which dtype the parameters live (``torch.get_default_dtype()``
        by default).
    rng : int or numpy.random.Generator, optional
        Seed for the initialisation.
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
        device: Any = None,
        dtype: Any = None,
        rng: Any = None,
    ) -> None:
        super().__init__()
        core = _CoreConv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
            xp=torch,
            device=device,
            dtype=torch.get_default_dtype() if dtype is None else dtype,
            rng=rng,
        )
        self.in_channels, self.out_channels = core.in_channels, core.out_channels
        self.kernel_size = core.kernel_size
        self.stride, self.padding = core.stride, core.padding
        self.dilation, self.groups = core.dilation, core.groups
        self.weight = torch.nn.Parameter(core.weight)
        if core.bias is None:
            self.register_parameter("bias", None)
        else:
            self.bias = torch.nn.Parameter(core.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(
            x,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, bias={self.bias is not None}"
        )
