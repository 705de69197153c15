"""JAX adapter: :func:`conv` with xpconv's explicit backward as a ``jax.custom_vjp``.

:func:`xpconv.conv` already runs on JAX arrays (eagerly and under
``jax.jit``), and ``jax.grad`` can differentiate through its im2col code. The
functions here (:func:`conv` for any rank, :func:`conv1d`, :func:`conv2d`,
:func:`conv3d`) instead tell JAX to use :func:`xpconv.conv_backward` for the
reverse pass, so ``jax.grad`` of a loss through xpconv runs xpconv's own
analytic gradients and equals ``jax.grad`` through
``jax.lax.conv_general_dilated``.

``stride``, ``padding``, ``dilation`` and ``groups`` are static (they fix the
shapes): pass Python ints, pairs or ``'same'``/``'valid'``, and list them in
``static_argnames`` when you jit this function directly.

Examples
--------
>>> import jax, jax.numpy as jnp
>>> import xpconv.jax
>>> x, w = jnp.ones((2, 3, 8, 8)), jnp.ones((4, 3, 3, 3))
>>> loss = lambda x, w: xpconv.jax.conv2d(x, w, padding=1).sum()
>>> gx, gw = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
>>> gx.shape, gw.shape
((2, 3, 8, 8), (4, 3, 3, 3))
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from xpconv._geometry import PaddingArg, SizeArg, as_tuple, normalize_padding, positive_int
from xpconv._padding import check_mode
from xpconv.functional import conv as _core_conv
from xpconv.functional import conv_backward

__all__ = ["conv", "conv1d", "conv2d", "conv3d"]

Array = Any
Sizes = tuple[int, ...]


def _static_args(
    rank: int,
    stride: object,
    padding: object,
    dilation: object,
    groups: object,
    padding_mode: object,
) -> tuple[Sizes, PaddingArg, Sizes, int, str]:
    """Hashable, normalised versions of the non-differentiable arguments.

    ``custom_vjp`` and ``jax.jit`` need hashable static values; a list such as
    ``padding=[1, 2]`` becomes a tuple. The core repeats the full check.
    """
    return (
        as_tuple(stride, "stride", rank, minimum=1),
        normalize_padding(padding, rank),
        as_tuple(dilation, "dilation", rank, minimum=1),
        positive_int(groups, "groups"),
        check_mode(padding_mode),
    )


_STATIC = ("stride", "padding", "dilation", "groups", "padding_mode")

# The core runs inside jax.jit: compiled once per shape, and every argument is
# a tracer there, so a traced input next to a concrete weight (jit with closed-
# over parameters, vmap) cannot trip the core's device check.
_forward = jax.jit(_core_conv, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "bias"))
def _backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    *,
    stride: Sizes,
    padding: PaddingArg,
    dilation: Sizes,
    groups: int,
    padding_mode: str,
    bias: bool,
) -> tuple[Array, Array, Array | None]:
    grads = conv_backward(
        grad_output,
        x,
        weight,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        bias=bias,
    )
    return grads.input, grads.weight, grads.bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6, 7))
def _conv(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: Sizes,
    padding: PaddingArg,
    dilation: Sizes,
    groups: int,
    padding_mode: str,
) -> Array:
    return _forward(
        x,
        weight,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )


def _conv_fwd(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: Sizes,
    padding: PaddingArg,
    dilation: Sizes,
    groups: int,
    padding_mode: str,
) -> tuple[Array, tuple[Array, Array, Array | None]]:
    y = _conv(x, weight, bias, stride, padding, dilation, groups, padding_mode)
    # bias is kept only to know whether it exists (a pytree: None or an array).
    return y, (x, weight, bias)


def _conv_bwd(
    stride: Sizes,
    padding: PaddingArg,
    dilation: Sizes,
    groups: int,
    padding_mode: str,
    residuals: tuple[Array, Array, Array | None],
    grad_output: Array,
) -> tuple[Array, Array, Array | None]:
    x, weight, bias = residuals
    # JAX's VJP of a complex-linear map A is the transpose A^T c; xpconv's
    # backward, like torch's, is the adjoint A^H c. A^T c = conj(A^H conj(c)).
    is_complex = jnp.iscomplexobj(grad_output)
    if is_complex:
        grad_output = jnp.conj(grad_output)
    grads = _backward(
        grad_output,
        x,
        weight,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        bias=bias is not None,
    )
    if is_complex:
        return tuple(None if g is None else jnp.conj(g) for g in grads)  # type: ignore[return-value]
    return grads


_conv.defvjp(_conv_fwd, _conv_bwd)


def _apply(
    x: Array, weight: Array, bias: Array | None, rank: int | None, xp: Any, **conv_args: Any
) -> Array:
    name = "conv" if rank is None else f"conv{rank}d"
    if xp is not None and "jax" not in getattr(xp, "__name__", ""):
        msg = f"xp must be None or a JAX namespace for xpconv.jax.{name}, got {xp!r}"
        raise TypeError(msg)
    x, weight = jnp.asarray(x), jnp.asarray(weight)
    if bias is not None:
        bias = jnp.asarray(bias)
    kernel_rank = weight.ndim - 2
    if rank is not None and kernel_rank != rank:
        msg = (
            f"{name} expects a {rank + 2}-D weight (out_channels, in_channels/groups, *kernel), "
            f"got shape {tuple(weight.shape)}"
        )
        raise ValueError(msg)
    if kernel_rank < 1:
        msg = f"{name} expects a weight with at least one spatial axis, got shape {weight.shape}"
        raise ValueError(msg)
    return _conv(x, weight, bias, *_static_args(kernel_rank, **conv_args))


def conv(
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: SizeArg = 1,
    padding: PaddingArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> Array:
    """:func:`xpconv.conv` for JAX (any rank), differentiated with :func:`xpconv.conv_backward`.

    :func:`conv1d`, :func:`conv2d` and :func:`conv3d` are the same with the
    rank checked.

    Parameters
    ----------
    x, weight, bias : array
        As for :func:`xpconv.conv`. Anything ``jax.numpy.asarray`` accepts
        (NumPy arrays included) is converted to a JAX array first.
    stride, padding, dilation, groups, padding_mode
        As for :func:`xpconv.conv`. They are static: Python values, not
        traced arrays.
    xp : namespace, optional
        Accepted for signature compatibility with :func:`xpconv.conv`; must be
        ``None`` or a JAX namespace.

    Returns
    -------
    jax.Array
        The convolution, shape ``(N, O, *out)`` (or ``(O, *out)``).

    Raises
    ------
    ValueError, TypeError
        As :func:`xpconv.conv`; ``TypeError`` for an ``xp`` that is not JAX.

    Notes
    -----
    Reverse mode (``jax.grad``, ``jax.vjp``, ``jax.value_and_grad``) uses
    xpconv's backward, also under ``jax.jit`` and ``jax.vmap``. Forward mode
    (``jax.jvp``, ``jax.jacfwd``) is not available for a ``custom_vjp``
    function; use :func:`xpconv.conv` itself, which JAX differentiates
    through its array operations, when you need it. For complex arrays the
    VJP follows JAX's convention (the transpose of the linear map, as
    ``jax.lax.conv_general_dilated`` has it), not torch's (the adjoint).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import xpconv.jax
    >>> y = xpconv.jax.conv(jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 2, 2)), stride=2)
    >>> y[0, 0].tolist()
    [[4.0, 4.0], [4.0, 4.0]]
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
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: SizeArg = 1,
    padding: PaddingArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> Array:
    """:func:`conv` for signals (N, C, L)."""
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
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: SizeArg = 1,
    padding: PaddingArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> Array:
    """:func:`conv` for images (N, C, H, W).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import xpconv.jax
    >>> y = xpconv.jax.conv2d(jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 2, 2)), stride=2)
    >>> y[0, 0].tolist()
    [[4.0, 4.0], [4.0, 4.0]]
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
    x: Array,
    weight: Array,
    /,
    bias: Array | None = None,
    *,
    stride: SizeArg = 1,
    padding: PaddingArg = 0,
    dilation: SizeArg = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    xp: Any = None,
) -> Array:
    """:func:`conv` for volumes (N, C, D, H, W)."""
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
