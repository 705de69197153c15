"""JAX adapter: :func:`conv2d` with xpconv's explicit backward as a ``jax.custom_vjp``.

:func:`xpconv.conv2d` already runs on JAX arrays (eagerly and under
``jax.jit``), and ``jax.grad`` can differentiate through its im2col code. The
function here instead tells JAX to use :func:`xpconv.conv2d_backward` for the
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

from xpconv._geometry import PaddingArg, PairArg, as_pair, normalize_padding, positive_int
from xpconv.functional import conv2d as _core_conv2d
from xpconv.functional import conv2d_backward

__all__ = ["conv2d"]

Array = Any


def _static_args(
    stride: object, padding: object, dilation: object, groups: object
) -> tuple[tuple[int, int], PaddingArg, tuple[int, int], int]:
    """Hashable, normalised versions of the non-differentiable arguments.

    ``custom_vjp`` and ``jax.jit`` need hashable static values; a list such as
    ``padding=[1, 2]`` becomes a tuple. The core repeats the full check.
    """
    return (
        as_pair(stride, "stride", minimum=1),
        normalize_padding(padding),
        as_pair(dilation, "dilation", minimum=1),
        positive_int(groups, "groups"),
    )


_STATIC = ("stride", "padding", "dilation", "groups")

# The core runs inside jax.jit: compiled once per shape, and every argument is
# a tracer there, so a traced input next to a concrete weight (jit with closed-
# over parameters, vmap) cannot trip the core's device check.
_forward = jax.jit(_core_conv2d, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "bias"))
def _backward(
    grad_output: Array,
    x: Array,
    weight: Array,
    *,
    stride: tuple[int, int],
    padding: PaddingArg,
    dilation: tuple[int, int],
    groups: int,
    bias: bool,
) -> tuple[Array, Array, Array | None]:
    grads = conv2d_backward(
        grad_output,
        x,
        weight,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )
    return grads.input, grads.weight, grads.bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _conv2d(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: tuple[int, int],
    padding: PaddingArg,
    dilation: tuple[int, int],
    groups: int,
) -> Array:
    return _forward(
        x, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


def _conv2d_fwd(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: tuple[int, int],
    padding: PaddingArg,
    dilation: tuple[int, int],
    groups: int,
) -> tuple[Array, tuple[Array, Array, Array | None]]:
    y = _conv2d(x, weight, bias, stride, padding, dilation, groups)
    # bias is kept only to know whether it exists (a pytree: None or an array).
    return y, (x, weight, bias)


def _conv2d_bwd(
    stride: tuple[int, int],
    padding: PaddingArg,
    dilation: tuple[int, int],
    groups: int,
    residuals: tuple[Array, Array, Array | None],
    grad_output: Array,
) -> tuple[Array, Array, Array | None]:
    x, weight, bias = residuals
    return _backward(
        grad_output,
        x,
        weight,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias is not None,
    )


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


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
    xp: Any = None,
) -> Array:
    """:func:`xpconv.conv2d` for JAX, differentiated with :func:`xpconv.conv2d_backward`.

    Parameters
    ----------
    x, weight, bias : array
        As for :func:`xpconv.conv2d`. Anything ``jax.numpy.asarray`` accepts
        (NumPy arrays included) is converted to a JAX array first.
    stride, padding, dilation, groups
        As for :func:`xpconv.conv2d`. They are static: Python values, not
        traced arrays.
    xp : namespace, optional
        Accepted for signature compatibility with :func:`xpconv.conv2d`; must be
        ``None`` or a JAX namespace.

    Returns
    -------
    jax.Array
        The convolution, shape (N, O, OH, OW) (or (O, OH, OW)).

    Raises
    ------
    ValueError, TypeError
        As :func:`xpconv.conv2d`; ``TypeError`` for an ``xp`` that is not JAX.

    Notes
    -----
    Reverse mode (``jax.grad``, ``jax.vjp``, ``jax.value_and_grad``) uses
    xpconv's backward, also under ``jax.jit`` and ``jax.vmap``. Forward mode
    (``jax.jvp``, ``jax.jacfwd``) is not available for a ``custom_vjp``
    function; use :func:`xpconv.conv2d` itself, which JAX differentiates
    through its array operations, when you need it.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> import xpconv.jax
    >>> y = xpconv.jax.conv2d(jnp.ones((1, 1, 4, 4)), jnp.ones((1, 1, 2, 2)), stride=2)
    >>> y[0, 0].tolist()
    [[4.0, 4.0], [4.0, 4.0]]
    """
    if xp is not None and "jax" not in getattr(xp, "__name__", ""):
        msg = f"xp must be None or a JAX namespace for xpconv.jax.conv2d, got {xp!r}"
        raise TypeError(msg)
    static = _static_args(stride, padding, dilation, groups)
    x, weight = jnp.asarray(x), jnp.asarray(weight)
    if bias is not None:
        bias = jnp.asarray(bias)
    return _conv2d(x, weight, bias, *static)
