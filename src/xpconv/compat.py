"""The original educational NumPy layer's interface, running on xpconv.

``ConvolutionLayer(in_channels, filter_size, numfilters, stride)`` with
``forwardpass(X)`` and ``backwardpass(lr, activation_prev, delta)`` behaves as
the layer xpconv grew from: sigmoid fused into the output, weights and biases
drawn from N(0, 0.1) with NumPy's global random state, the SGD update inside
``backwardpass``, which returns dL/dX. It now runs on xpconv's im2col kernels
and on any array API backend.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

from xpconv._backend import default_float_dtype, namespace_of, random_normal, resolve_namespace
from xpconv.functional import conv2d, conv2d_backward

__all__ = ["ConvolutionLayer"]

Array = Any


def _as_int(value: Any, name: str, expected: str, given: Any) -> int:
    """``value`` as a positive int, for argument ``name`` as ``given`` by the caller.

    ``given`` is the whole argument (``in_channels``) when ``value`` is one of
    its items; the errors name both, with what was ``expected``.
    """
    msg = f"{name} must be {expected}, got {given!r}"
    # operator.index accepts Python and NumPy integers and rejects floats (no
    # silent truncation of 5.7 to 5); bool is an int subclass, refused by hand.
    try:
        if isinstance(value, bool):
            raise TypeError
        result = operator.index(value)
    except TypeError:
        msg += f" ({value!r} is a {type(value).__name__}, not an int)"
        raise TypeError(msg) from None
    if result < 1:
        msg += "" if value is given else f" ({value!r} is not positive)"
        raise ValueError(msg)
    return result


def _positive_ints(value: Any, name: str, count: int, meaning: str) -> tuple[int, ...]:
    """A sequence of ``count`` positive ints, such as ``in_channels``, checked."""
    expected = f"a sequence of {count} positive ints {meaning}"
    try:
        items = tuple(value) if not isinstance(value, str | bytes) else None
    except TypeError:  # an int, None, a 0-d array: not iterable
        items = None
    if items is None:
        msg = f"{name} must be {expected}, got {value!r}"
        raise TypeError(msg)
    if len(items) != count:
        msg = f"{name} must be {expected}, got {value!r} ({len(items)} values)"
        raise ValueError(msg)
    return tuple(_as_int(item, name, expected, value) for item in items)


def _check_lr(lr: Any) -> float:
    """The learning rate of :meth:`ConvolutionLayer.backwardpass`: a finite number >= 0."""
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        msg = f"lr must be a real number >= 0, got {lr!r} of type {type(lr).__name__}"
        raise TypeError(msg)
    rate = float(lr)
    # A negative rate would climb the loss and NaN would poison every weight;
    # torch.optim.SGD refuses the first, and neither is a sensible request.
    if not (math.isfinite(rate) and rate >= 0):
        msg = f"lr must be a finite number >= 0, got {lr!r}"
        raise ValueError(msg)
    return rate


def _sigmoid(z: Array, xp: Any) -> Array:
    # 1/(1+exp(-z)) written with tanh: equal to rounding, and no overflow
    # warning for large negative z.
    return 0.5 + 0.5 * xp.tanh(0.5 * z)


class ConvolutionLayer:
    """Seed-compatible convolution + sigmoid layer.

    Parameters
    ----------
    in_channels : sequence of 3 ints
        (depth, rows, cols) of one input sample, each positive.
    filter_size : sequence of 2 ints
        (rows, cols) of the kernel, each positive and no larger than the
        input's rows and cols.
    numfilters : int
        Number of output feature maps, positive.
    stride : int
        Stride of the convolution, positive (no padding, as in the original layer).
    xp, device, dtype : optional
        Where the parameters live; NumPy float64 by default, as in the original.
        ``dtype`` must be a real floating dtype.
    rng : int or numpy.random.Generator, optional
        Source of the N(0, 0.1) initial values; by default NumPy's global state,
        so ``np.random.seed(s)`` reproduces the original layer's weights.

    Raises
    ------
    TypeError
        If a size is not an integer (a float or a bool; NumPy integers are
        accepted), ``in_channels`` or ``filter_size`` is not a sequence, or
        ``dtype`` is not a real floating dtype.
    ValueError
        If a size is not positive, a sequence has the wrong length, or the
        filter is larger than the input (the output would be empty).

    Notes
    -----
    As in the original, the input is promoted to the weights' precision
    (float32 or integer data with float64 weights gives float64 outputs), and
    an input larger than ``in_channels`` is read from its top-left corner.

    Examples
    --------
    >>> import numpy as np
    >>> from xpconv import ConvolutionLayer
    >>> np.random.seed(0)
    >>> layer = ConvolutionLayer([1, 5, 5], [3, 3], 2, 1)
    >>> out = layer.forwardpass(np.ones((4, 1, 5, 5), dtype=np.float32))
    >>> out.shape, out.dtype
    ((4, 2, 3, 3), dtype('float64'))
    >>> delta = layer.backwardpass(0.1, None, np.ones_like(out))
    >>> delta.shape
    (4, 1, 5, 5)
    """

    def __init__(
        self,
        in_channels: Any,
        filter_size: Any,
        numfilters: int,
        stride: int,
        *,
        xp: Any = None,
        device: Any = None,
        dtype: Any = None,
        rng: Any = None,
    ) -> None:
        self.in_depth, self.in_row, self.in_col = _positive_ints(
            in_channels, "in_channels", 3, "(depth, rows, cols)"
        )
        self.filter_row, self.filter_col = _positive_ints(
            filter_size, "filter_size", 2, "(rows, cols)"
        )
        self.out_depth = _as_int(numfilters, "numfilters", "a positive int", numfilters)
        self.stride = _as_int(stride, "stride", "a positive int", stride)
        self._check_filter_fits(in_channels, filter_size)
        # Floor division, as the original's int((in - f) / stride + 1) for in >= f.
        self.out_row = (self.in_row - self.filter_row) // self.stride + 1
        self.out_col = (self.in_col - self.filter_col) // self.stride + 1
        self.xp = resolve_namespace(xp)
        dtype = default_float_dtype(self.xp, device) if dtype is None else dtype
        if not self.xp.isdtype(dtype, "real floating"):
            # Integer parameters would truncate the N(0, 0.1) draws to zeros.
            msg = f"dtype must be a real floating dtype, got {dtype!r}"
            raise TypeError(msg)
        shape = (self.out_depth, self.in_depth, self.filter_row, self.filter_col)
        # Same order of draws as the original: weights, then biases.
        self.weights = self.xp.asarray(
            random_normal(rng, 0, 0.1, shape), dtype=dtype, device=device
        )
        self.biases = self.xp.asarray(
            random_normal(rng, 0, 0.1, (self.out_depth,)), dtype=dtype, device=device
        )
        self.cache: tuple[Array, Array] | None = None

    def _check_filter_fits(self, in_channels: Any, filter_size: Any) -> None:
        """A filter larger than the input would give an empty output (0 rows or cols)."""
        if self.filter_row > self.in_row or self.filter_col > self.in_col:
            msg = (
                f"filter_size {filter_size!r} must fit in the (rows, cols) = "
                f"({self.in_row}, {self.in_col}) of in_channels {in_channels!r}: "
                "the output would be empty"
            )
            raise ValueError(msg)

    def _promote(self, X: Array) -> tuple[Array, Array, Array]:
        """X, weights and biases in one floating dtype, as NumPy's matmul would promote."""
        xp = namespace_of(X=X, weights=self.weights)
        if xp.isdtype(X.dtype, "real floating"):
            dtype = xp.result_type(X.dtype, self.weights.dtype)
        else:
            dtype = self.weights.dtype  # integer or bool images
        cast = lambda a: a if a.dtype == dtype else xp.astype(a, dtype)  # noqa: E731
        return cast(X), cast(self.weights), cast(self.biases)

    def _check_input(self, X: Array) -> None:
        """X must be a real 4-D array at least ``in_channels`` large, of the weights' library."""
        xp = namespace_of(X=X, weights=self.weights)  # names X when it is not an array
        # The layer is real (a sigmoid): casting complex data to the weights'
        # dtype would drop the imaginary part with at most a warning.
        if not xp.isdtype(X.dtype, ("real floating", "integral", "bool")):
            msg = (
                f"X must be real (real floating, integer or bool): the layer applies a "
                f"real sigmoid, got X of dtype {X.dtype}"
            )
            raise TypeError(msg)
        if X.ndim != 4:
            msg = f"X must be 4-D (n, depth, rows, cols), got shape {tuple(X.shape)}"
            raise ValueError(msg)
        need = (self.in_depth, self.in_row, self.in_col)
        if any(have < want for have, want in zip(X.shape[1:], need, strict=True)):
            msg = f"X must have per-sample shape at least {need}, got {tuple(X.shape[1:])}"
            raise ValueError(msg)

    def forwardpass(self, X: Array) -> Array:
        """sigmoid(conv(X, weights) + biases) for X of shape (n, depth, rows, cols).

        Raises
        ------
        TypeError
            If X is not an array of the weights' library, or not real (complex).
        ValueError
            If X is not 4-D or is smaller than ``in_channels``.
        """
        self._check_input(X)
        X = X[:, : self.in_depth, : self.in_row, : self.in_col]
        X, weights, biases = self._promote(X)
        out = _sigmoid(conv2d(X, weights, biases, stride=self.stride), self.xp)
        self.cache = (out, X)
        return out

    def _check_delta(self, delta: Array, out: Array) -> None:
        """delta must be a real array with exactly the shape of the last output."""
        xp = namespace_of(delta=delta, weights=self.weights)
        if not xp.isdtype(delta.dtype, ("real floating", "integral", "bool")):
            msg = f"delta must be real: the layer is real, got delta of dtype {delta.dtype}"
            raise TypeError(msg)
        # Broadcasting a smaller delta (one sample's, say) over the batch would
        # give a gradient summed over copies: a silent wrong update.
        if tuple(delta.shape) != tuple(out.shape):
            msg = (
                f"delta must have the shape of the last forwardpass() output "
                f"{tuple(out.shape)}, got {tuple(delta.shape)}"
            )
            raise ValueError(msg)

    def backwardpass(self, lr: float, activation_prev: Array, delta: Array) -> Array:
        """Update weights and biases by SGD and return dL/dX (the previous layer's delta).

        ``activation_prev`` is accepted for compatibility; the input saved by
        :meth:`forwardpass` is used, as in the original.

        Raises
        ------
        RuntimeError
            If :meth:`forwardpass` has not been called.
        TypeError
            If ``lr`` is not a real number, or ``delta`` is not a real array of
            the weights' library.
        ValueError
            If ``lr`` is negative or not finite, or ``delta`` does not have the
            shape of the last output (the original broadcast it silently).
        """
        if self.cache is None:
            msg = "backwardpass() needs a forwardpass() call first"
            raise RuntimeError(msg)
        out, X = self.cache
        lr = _check_lr(lr)
        self._check_delta(delta, out)
        xp = self.xp
        if delta.dtype != out.dtype:
            delta = xp.astype(delta, out.dtype)
        del_in = delta * out * (1 - out)
        weights = (
            self.weights if self.weights.dtype == X.dtype else xp.astype(self.weights, X.dtype)
        )
        grads = conv2d_backward(del_in, X, weights, stride=self.stride)
        assert grads.bias is not None
        dtype = self.weights.dtype
        self.biases = self.biases - lr * xp.astype(grads.bias, dtype)
        self.weights = self.weights - lr * xp.astype(grads.weight, dtype)
        return grads.input
