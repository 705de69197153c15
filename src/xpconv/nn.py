"""Small network pieces with explicit backward passes, for any array API library.

These are the parts around :class:`xpconv.Conv2d` that a small convolutional
network needs: :class:`ReLU`, :class:`MaxPool2d`, :class:`Flatten`,
:class:`Linear`, :class:`SoftmaxCrossEntropy`, a :class:`Sequential`
container and two optimizers, :class:`SGD` (with momentum) and :class:`Adam`.

Every piece follows the same contract as :class:`xpconv.Conv2d`:
``forward(x)`` (also ``__call__``) remembers what the backward pass needs,
``backward(grad_output)`` returns the gradient with respect to the input and,
for layers with parameters, sets ``grad_weight`` and ``grad_bias``. The code
uses only the array API standard: it runs on NumPy, CuPy, PyTorch,
array-api-strict and Dask, and on JAX because no array is updated in place
(optimizers rebind ``layer.weight = layer.weight - step``).

Examples
--------
>>> import numpy as np
>>> import xpconv
>>> from xpconv import nn
>>> rng = np.random.default_rng(0)
>>> model = nn.Sequential(
...     xpconv.Conv2d(1, 4, 3, padding=1, rng=rng), nn.ReLU(), nn.MaxPool2d(),
...     nn.Flatten(), nn.Linear(4 * 2 * 2, 3, rng=rng),
... )
>>> loss_fn = nn.SoftmaxCrossEntropy()
>>> optimizer = nn.Adam(model, lr=1e-2)
>>> x, labels = rng.uniform(size=(5, 1, 4, 4)), np.array([0, 1, 2, 0, 1])
>>> loss = loss_fn(model(x), labels)
>>> _ = model.backward(loss_fn.backward())
>>> optimizer.step()
>>> model[0].grad_weight.shape
(4, 1, 3, 3)
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import array_api_compat

from xpconv._backend import default_float_dtype, materialize, random_uniform, resolve_namespace

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "SGD",
    "Adam",
    "Flatten",
    "Linear",
    "MaxPool2d",
    "ReLU",
    "Sequential",
    "SoftmaxCrossEntropy",
    "accuracy",
    "one_hot",
]

Array = Any
Namespace = Any


class Module(Protocol):
    """What :class:`Sequential` and the optimizers need from a layer."""

    def forward(self, x: Array, /) -> Array: ...

    def backward(self, grad_output: Array, /) -> Array: ...


def _saved(value: Array | None, method: str) -> Array:
    if value is None:
        msg = f"{method}() needs a forward() call first: the layer has no saved input"
        raise RuntimeError(msg)
    return value


# --------------------------------------------------------------------------- layers


class ReLU:
    """``max(x, 0)``; the gradient passes where the input was positive."""

    def __init__(self) -> None:
        self._mask: Array | None = None

    def forward(self, x: Array) -> Array:
        xp = array_api_compat.array_namespace(x)
        self._mask = x > 0
        return xp.where(self._mask, x, xp.zeros_like(x))

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        mask = _saved(self._mask, "backward")
        xp = array_api_compat.array_namespace(grad_output)
        return xp.where(mask, grad_output, xp.zeros_like(grad_output))

    def __repr__(self) -> str:
        return "ReLU()"


class MaxPool2d:
    """Non-overlapping max pooling over ``size x size`` windows of (N, C, H, W).

    Like ``torch.nn.MaxPool2d(size)``, trailing rows and columns that do not
    fill a window are dropped. In the backward pass a window whose maximum
    is tied shares the gradient equally among the tied positions (a valid
    subgradient; PyTorch picks one of them).
    """

    def __init__(self, size: int = 2) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            msg = f"size must be a positive int, got {size!r}"
            raise ValueError(msg)
        self.size = size
        self._saved: tuple[tuple[int, ...], Array] | None = None

    def _windows(self, x: Array, xp: Namespace) -> Array:
        n, c, h, w = x.shape
        k = self.size
        oh, ow = h // k, w // k
        if (oh * k, ow * k) != (h, w):
            x = x[:, :, : oh * k, : ow * k]
        return xp.reshape(x, (n, c, oh, k, ow, k))

    def forward(self, x: Array) -> Array:
        if x.ndim != 4:
            msg = f"x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}"
            raise ValueError(msg)
        xp = array_api_compat.array_namespace(x)
        windows = self._windows(x, xp)
        y = xp.max(windows, axis=(3, 5))
        n, c, oh, ow = y.shape
        mask = windows == xp.reshape(y, (n, c, oh, 1, ow, 1))
        share = xp.astype(mask, x.dtype)
        share = share / xp.sum(share, axis=(3, 5), keepdims=True)
        self._saved = (tuple(x.shape), share)
        return y

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        if self._saved is None:
            _saved(None, "backward")
        assert self._saved is not None
        shape, share = self._saved
        xp = array_api_compat.array_namespace(grad_output)
        n, c, oh, ow = grad_output.shape
        g = xp.reshape(grad_output, (n, c, oh, 1, ow, 1)) * share
        k = self.size
        g = xp.reshape(g, (n, c, oh * k, ow * k))
        if (oh * k, ow * k) != shape[2:]:
            full = xp.zeros(shape, dtype=g.dtype, device=array_api_compat.device(g))
            # Rebuild by concatenation instead of a slice assignment (JAX arrays
            # are immutable).
            rows = xp.concat([g, full[:, :, : oh * k, ow * k :]], axis=3)
            g = xp.concat([rows, full[:, :, oh * k :, :]], axis=2)
        return g

    def __repr__(self) -> str:
        return f"MaxPool2d({self.size})"


class Flatten:
    """(N, ...) -> (N, prod(...)); the backward pass restores the shape."""

    def __init__(self) -> None:
        self._shape: tuple[int, ...] | None = None

    def forward(self, x: Array) -> Array:
        xp = array_api_compat.array_namespace(x)
        self._shape = tuple(x.shape)
        return xp.reshape(x, (x.shape[0], -1))

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        shape = _saved(self._shape, "backward")
        xp = array_api_compat.array_namespace(grad_output)
        return xp.reshape(grad_output, shape)

    def __repr__(self) -> str:
        return "Flatten()"


class Linear:
    """A fully connected layer ``y = x W^T + b``, like ``torch.nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of each input and output sample.
    bias : bool, optional
        Whether the layer has a bias.
    xp, device, dtype, rng
        As for :class:`xpconv.Conv2d`: the namespace (NumPy by default), device
        and dtype of the parameters, and the seed or ``numpy.random.Generator``
        of their initialisation, PyTorch's ``U(-1/sqrt(in), 1/sqrt(in))``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        xp: Any = None,
        device: Any = None,
        dtype: Any = None,
        rng: Any = None,
    ) -> None:
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                msg = f"{name} must be a positive int, got {value!r}"
                raise ValueError(msg)
        self.in_features = in_features
        self.out_features = out_features
        self.xp = resolve_namespace(xp)
        self.device = device
        self.dtype = default_float_dtype(self.xp, device) if dtype is None else dtype
        bound = 1.0 / math.sqrt(in_features)
        self.weight = self._param(random_uniform(rng, -bound, bound, (out_features, in_features)))
        self.bias = (
            self._param(random_uniform(rng, -bound, bound, (out_features,))) if bias else None
        )
        self.grad_weight: Array | None = None
        self.grad_bias: Array | None = None
        self._input: Array | None = None

    def _param(self, values: Any) -> Array:
        return self.xp.asarray(values, dtype=self.dtype, device=self.device)

    def forward(self, x: Array) -> Array:
        xp = self.xp
        y = xp.matmul(x, xp.matrix_transpose(self.weight))
        if self.bias is not None:
            y = y + self.bias
        self._input = x
        return y

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        x = _saved(self._input, "backward")
        xp = self.xp
        self.grad_weight = xp.matmul(xp.matrix_transpose(grad_output), x)
        if self.bias is not None:
            self.grad_bias = xp.sum(grad_output, axis=0)
        return xp.matmul(grad_output, self.weight)

    def parameters(self) -> list[Array]:
        """The trainable arrays, weight first."""
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def __repr__(self) -> str:
        return (
            f"Linear({self.in_features}, {self.out_features}, "
            f"bias={self.bias is not None}, dtype={self.dtype})"
        )


# --------------------------------------------------------------------------- loss


def one_hot(labels: Array, num_classes: int, dtype: Any) -> Array:
    """(N,) integer labels -> (N, num_classes) array of 0/1 in ``dtype``."""
    xp = array_api_compat.array_namespace(labels)
    classes = xp.arange(num_classes, dtype=labels.dtype, device=array_api_compat.device(labels))
    hits = xp.reshape(labels, (-1, 1)) == xp.reshape(classes, (1, -1))
    return xp.astype(hits, dtype)


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels.

    ``forward(logits, labels)`` returns a 0-d array; it subtracts each row's
    maximum before exponentiating (log-sum-exp), so large logits do not
    overflow. ``backward()`` returns dL/dlogits = (softmax - one_hot) / N.
    """

    def __init__(self) -> None:
        self._saved: tuple[Array, Array] | None = None

    def forward(self, logits: Array, labels: Array) -> Array:
        if logits.ndim != 2 or labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
            msg = (
                "logits must be (N, classes) and labels (N,), got shapes "
                f"{tuple(logits.shape)} and {tuple(labels.shape)}"
            )
            raise ValueError(msg)
        xp = array_api_compat.array_namespace(logits, labels)
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
        target = one_hot(labels, logits.shape[1], logits.dtype)
        self._saved = (xp.exp(log_probs), target)
        return -xp.sum(target * log_probs) / logits.shape[0]

    __call__ = forward

    def backward(self, grad_output: float = 1.0) -> Array:
        if self._saved is None:
            _saved(None, "backward")
        assert self._saved is not None
        probs, target = self._saved
        return (probs - target) * (grad_output / probs.shape[0])

    def __repr__(self) -> str:
        return "SoftmaxCrossEntropy()"


def accuracy(logits: Array, labels: Array) -> float:
    """Fraction of rows whose largest logit is at the label."""
    xp = array_api_compat.array_namespace(logits, labels)
    hits = xp.argmax(logits, axis=1) == labels
    return float(xp.sum(xp.astype(hits, labels.dtype))) / labels.shape[0]


# --------------------------------------------------------------------------- container


class Sequential:
    """Layers applied in order; ``backward`` runs them in reverse."""

    def __init__(self, *layers: Module) -> None:
        self.layers = list(layers)

    def forward(self, x: Array) -> Array:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        for layer in reversed(self.layers):
            grad_output = layer.backward(grad_output)
        return grad_output

    def named_parameters(self) -> Iterator[tuple[Any, str]]:
        """``(layer, "weight")`` and ``(layer, "bias")`` for every trainable array."""
        for layer in self.layers:
            for name in ("weight", "bias"):
                if getattr(layer, name, None) is not None:
                    yield layer, name

    def parameters(self) -> list[Array]:
        return [getattr(layer, name) for layer, name in self.named_parameters()]

    def __getitem__(self, index: int) -> Any:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  {layer!r}," for layer in self.layers)
        return f"Sequential({inner}\n)"


# --------------------------------------------------------------------------- optimizers


def _slots(model: Sequential | Iterable[tuple[Any, str]]) -> list[tuple[Any, str]]:
    pairs = model.named_parameters() if isinstance(model, Sequential) else model
    return list(pairs)


def _grad(layer: Any, name: str) -> Array:
    grad = getattr(layer, f"grad_{name}", None)
    if grad is None:
        msg = f"step() needs a backward() call first: {layer!r} has no grad_{name}"
        raise RuntimeError(msg)
    return grad


def _check_lr(lr: float) -> float:
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        msg = f"lr must be a positive finite number, got {lr!r}"
        raise ValueError(msg)
    return float(lr)


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum, like ``torch.optim.SGD``.

    ``v = momentum * v + g``; ``p = p - lr * v``. Parameters are rebound, not
    modified in place, so immutable arrays (JAX) work too.
    """

    def __init__(
        self, model: Sequential | Iterable[tuple[Any, str]], lr: float, momentum: float = 0.9
    ) -> None:
        self.slots = _slots(model)
        self.lr = _check_lr(lr)
        self.momentum = float(momentum)
        self._velocity: list[Array | None] = [None] * len(self.slots)

    def step(self) -> None:
        velocity, params = [], []
        for i, (layer, name) in enumerate(self.slots):
            grad = _grad(layer, name)
            v = self._velocity[i]
            v = grad if v is None or self.momentum == 0 else self.momentum * v + grad
            velocity.append(v)
            params.append(getattr(layer, name) - self.lr * v)
        k = len(self.slots)
        updated = materialize(velocity + params)
        self._velocity = updated[:k]
        for (layer, name), p in zip(self.slots, updated[k:], strict=True):
            setattr(layer, name, p)


class Adam:
    """Adam (Kingma & Ba, 2015) with bias correction, like ``torch.optim.Adam``."""

    def __init__(
        self,
        model: Sequential | Iterable[tuple[Any, str]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.slots = _slots(model)
        self.lr = _check_lr(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.t = 0
        self._m: list[Array] = [None] * len(self.slots)  # zeros at the first step
        self._v: list[Array] = [None] * len(self.slots)

    def step(self) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        correction1 = 1.0 - b1**self.t
        step_size = self.lr / correction1
        sqrt_correction2 = math.sqrt(1.0 - b2**self.t)
        moments1, moments2, params = [], [], []
        for i, (layer, name) in enumerate(self.slots):
            grad = _grad(layer, name)
            xp = array_api_compat.array_namespace(grad)
            # Zeros at first, so that every step runs the same operations (eager JAX
            # compiles each new operation once).
            m = xp.zeros_like(grad) if self._m[i] is None else self._m[i]
            v = xp.zeros_like(grad) if self._v[i] is None else self._v[i]
            m = b1 * m + (1.0 - b1) * grad
            v = b2 * v + (1.0 - b2) * (grad * grad)
            denom = xp.sqrt(v) / sqrt_correction2 + self.eps
            moments1.append(m)
            moments2.append(v)
            params.append(getattr(layer, name) - step_size * (m / denom))
        k = len(self.slots)
        updated = materialize(moments1 + moments2 + params)
        self._m, self._v = updated[:k], updated[k : 2 * k]
        for (layer, name), p in zip(self.slots, updated[2 * k :], strict=True):
            setattr(layer, name, p)
