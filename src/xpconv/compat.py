"""The original educational NumPy layer's interface, running on xpconv.

``ConvolutionLayer(in_channels, filter_size, numfilters, stride)`` with
``forwardpass(X)`` and ``backwardpass(lr, activation_prev, delta)`` behaves as
the layer xpconv grew from: sigmoid fused into the output, weights and biases
drawn from N(0, 0.1) with NumPy's global random state, the SGD update inside
``backwardpass``, which returns dL/dX. It now runs on xpconv's im2col kernels
and on any array API backend.
"""

from __future__ import annotations

from typing import Any

from xpconv._backend import default_float_dtype, namespace_of, random_normal, resolve_namespace
from xpconv.functional import conv2d, conv2d_backward

__all__ = ["ConvolutionLayer"]

Array = Any


def _sigmoid(z: Array, xp: Any) -> Array:
    # 1/(1+exp(-z)) written with tanh: equal to rounding, and no overflow
    # warning for large negative z.
    return 0.5 + 0.5 * xp.tanh(0.5 * z)


class ConvolutionLayer:
    """Seed-compatible convolution + sigmoid layer.

    Parameters
    ----------
    in_channels : sequence of 3 ints
        (depth, rows, cols) of one input sample.
    filter_size : sequence of 2 ints
        (rows, cols) of the kernel.
    numfilters : int
        Number of output feature maps.
    stride : int
        Stride of the convolution (no padding, as in the original layer).
    xp, device, dtype : optional
        Where the parameters live; NumPy float64 by default, as in the original.
    rng : int or numpy.random.Generator, optional
        Source of the N(0, 0.1) initial values; by default NumPy's global state,
        so ``np.random.seed(s)`` reproduces the original layer's weights.

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
        self.in_depth, self.in_row, self.in_col = (int(v) for v in in_channels)
        self.filter_row, self.filter_col = (int(v) for v in filter_size)
        self.stride = stride
        self.out_depth = int(numfilters)
        self.out_row = int((self.in_row - self.filter_row) / self.stride + 1)
        self.out_col = int((self.in_col - self.filter_col) / self.stride + 1)
        self.xp = resolve_namespace(xp)
        dtype = default_float_dtype(self.xp, device) if dtype is None else dtype
        shape = (self.out_depth, self.in_depth, self.filter_row, self.filter_col)
        # Same order of draws as the original: weights, then biases.
        self.weights = self.xp.asarray(
            random_normal(rng, 0, 0.1, shape), dtype=dtype, device=device
        )
        self.biases = self.xp.asarray(
            random_normal(rng, 0, 0.1, (self.out_depth,)), dtype=dtype, device=device
        )
        self.cache: tuple[Array, Array] | None = None

    def _promote(self, X: Array) -> tuple[Array, Array, Array]:
        """X, weights and biases in one floating dtype, as NumPy's matmul would promote."""
        xp = namespace_of(X=X, weights=self.weights)
        if xp.isdtype(X.dtype, "real floating"):
            dtype = xp.result_type(X.dtype, self.weights.dtype)
        else:
            dtype = self.weights.dtype  # integer or bool images
        cast = lambda a: a if a.dtype == dtype else xp.astype(a, dtype)  # noqa: E731
        return cast(X), cast(self.weights), cast(self.biases)

    def forwardpass(self, X: Array) -> Array:
        """sigmoid(conv(X, weights) + biases) for X of shape (n, depth, rows, cols)."""
        if X.ndim != 4:
            msg = f"X must be 4-D (n, depth, rows, cols), got shape {tuple(X.shape)}"
            raise ValueError(msg)
        need = (self.in_depth, self.in_row, self.in_col)
        if any(have < want for have, want in zip(X.shape[1:], need, strict=True)):
            msg = f"X must have per-sample shape at least {need}, got {tuple(X.shape[1:])}"
            raise ValueError(msg)
        X = X[:, : self.in_depth, : self.in_row, : self.in_col]
        X, weights, biases = self._promote(X)
        out = _sigmoid(conv2d(X, weights, biases, stride=self.stride), self.xp)
        self.cache = (out, X)
        return out

    def backwardpass(self, lr: float, activation_prev: Array, delta: Array) -> Array:
        """Update weights and biases by SGD and return dL/dX (the previous layer's delta).

        ``activation_prev`` is accepted for compatibility; the input saved by
        :meth:`forwardpass` is used, as in the original.
        """
        if self.cache is None:
            msg = "backwardpass() needs a forwardpass() call first"
            raise RuntimeError(msg)
        out, X = self.cache
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
