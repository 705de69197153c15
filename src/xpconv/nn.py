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
import numbers
import operator
from typing import TYPE_CHECKING, Any, Protocol

import array_api_compat
import array_api_extra as xpx

from xpconv._backend import (
    default_float_dtype,
    materialize,
    namespace_of,
    random_uniform,
    resolve_dtype,
    resolve_namespace,
    to_numpy,
)
from xpconv._state import Stateful

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

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


def _positive_int(value: Any, name: str) -> int:
    """``value`` as an int >= 1; NumPy integers are accepted, bools and floats are not."""
    # ValueError for a wrong type too: the layers of this module have always
    # raised it for sizes (tests/test_demo.py pins Linear(2, True)).
    msg = f"{name} must be a positive int, got {value!r}"
    if isinstance(value, bool):
        raise ValueError(msg)
    try:
        result = operator.index(value)
    except TypeError:
        raise ValueError(msg) from None
    if result < 1:
        raise ValueError(msg)
    return result


def _check_real(x: Array, layer: Any) -> Namespace:
    """x must be a real (integer or real floating) array, as torch's relu and max_pool2d need.

    Complex values have no order (NumPy compared them lexicographically) and
    bool arrays fail deep inside some backends.
    """
    xp = array_api_compat.array_namespace(x)
    if not xp.isdtype(x.dtype, ("integral", "real floating")):
        msg = f"x of {layer!r} must be real (integer or real floating), got dtype {x.dtype}"
        raise TypeError(msg)
    return xp


def _saved(value: Array | None, method: str) -> Array:
    if value is None:
        msg = f"{method}() needs a forward() call first: the layer has no saved input"
        raise RuntimeError(msg)
    return value


def _check_grad_shape(grad_output: Array, expected: tuple[int, ...], layer: Any) -> None:
    """grad_output must have the shape of the last forward output.

    A smaller one would broadcast (a silently wrong gradient) or fail deep
    inside a reshape or matmul.
    """
    if tuple(grad_output.shape) != tuple(expected):
        msg = (
            f"grad_output of {layer!r} must have the shape of its last forward() "
            f"output {tuple(expected)}, got {tuple(grad_output.shape)}"
        )
        raise ValueError(msg)


# --------------------------------------------------------------------------- layers


class ReLU:
    """``max(x, 0)``; the gradient passes where the input was positive."""

    def __init__(self) -> None:
        self._mask: Array | None = None

    def forward(self, x: Array) -> Array:
        xp = _check_real(x, self)
        self._mask = x > 0
        return xp.where(self._mask, x, xp.zeros_like(x))

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        mask = _saved(self._mask, "backward")
        _check_grad_shape(grad_output, tuple(mask.shape), self)
        xp = array_api_compat.array_namespace(grad_output)
        return xp.where(mask, grad_output, xp.zeros_like(grad_output))

    def __repr__(self) -> str:
        return "ReLU()"


class MaxPool2d:
    """Non-overlapping max pooling over ``size x size`` windows of (N, C, H, W).

    Like ``torch.nn.MaxPool2d(size)``, trailing rows and columns that do not
    fill a window are dropped, and an input smaller than one window is a
    ``ValueError`` (its output would be empty). In the backward pass a window
    whose maximum is tied shares the gradient equally among the tied
    positions (a valid subgradient; PyTorch picks one of them).
    """

    def __init__(self, size: int = 2) -> None:
        self.size = _positive_int(size, "size")
        self._saved: tuple[tuple[int, ...], Array] | None = None

    def _windows(self, x: Array, xp: Namespace) -> Array:
        n, c, h, w = x.shape
        k = self.size
        oh, ow = h // k, w // k
        if (oh * k, ow * k) != (h, w):
            x = x[:, :, : oh * k, : ow * k]
        return xp.reshape(x, (n, c, oh, k, ow, k))

    def _check_input(self, x: Array) -> None:
        _check_real(x, self)
        if x.ndim != 4:
            msg = f"x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}"
            raise ValueError(msg)
        # Fewer rows or columns than one window: an empty (N, C, 0, W // k)
        # output, where torch raises "Output size is too small".
        if min(x.shape[2:]) < self.size:
            msg = (
                f"{self!r} needs x of at least {self.size}x{self.size} (H, W), got x of "
                f"shape {tuple(x.shape)}: the output would be empty"
            )
            raise ValueError(msg)

    def forward(self, x: Array) -> Array:
        self._check_input(x)
        xp = array_api_compat.array_namespace(x)
        windows = self._windows(x, xp)
        y = xp.max(windows, axis=(3, 5))
        n, c, oh, ow = y.shape
        mask = windows == xp.reshape(y, (n, c, oh, 1, ow, 1))
        # The gradient's share is a fraction: floating even for integer images
        # (array-api-strict refuses integer true division).
        floating = xp.isdtype(x.dtype, "real floating")
        dtype = x.dtype if floating else default_float_dtype(xp, array_api_compat.device(x))
        share = xp.astype(mask, dtype)
        share = share / xp.sum(share, axis=(3, 5), keepdims=True)
        self._saved = (tuple(x.shape), share)
        return y

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        if self._saved is None:
            _saved(None, "backward")
        assert self._saved is not None
        shape, share = self._saved
        _check_grad_shape(grad_output, (*shape[:2], share.shape[2], share.shape[4]), self)
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
        if x.ndim == 0:  # no batch axis to keep (it was an IndexError)
            msg = f"x must have a batch axis (N, ...), got a 0-d array of shape {tuple(x.shape)}"
            raise ValueError(msg)
        self._shape = tuple(x.shape)
        return xp.reshape(x, (x.shape[0], -1))

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        shape = _saved(self._shape, "backward")
        _check_grad_shape(grad_output, (shape[0], math.prod(shape[1:])), self)
        xp = array_api_compat.array_namespace(grad_output)
        return xp.reshape(grad_output, shape)

    def __repr__(self) -> str:
        return "Flatten()"


class Linear(Stateful):
    """A fully connected layer ``y = x W^T + b``, like ``torch.nn.Linear``.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of each input and output sample.
    bias : bool, optional
        Whether the layer has a bias.
    xp, device, dtype, rng
        As for :class:`xpconv.Conv2d`: the namespace (NumPy by default), device
        and dtype (real floating) of the parameters, and the seed or
        ``numpy.random.Generator`` of their initialisation, PyTorch's
        ``U(-1/sqrt(in), 1/sqrt(in))``.

    Notes
    -----
    The input must be 2-D, (N, in_features); unlike ``torch.nn.Linear``,
    extra leading dimensions are refused, because the backward pass computes
    2-D gradients.
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
        in_features = _positive_int(in_features, "in_features")
        out_features = _positive_int(out_features, "out_features")
        self.in_features = in_features
        self.out_features = out_features
        self.xp = resolve_namespace(xp)
        self.device = device
        self.dtype = (
            default_float_dtype(self.xp, device) if dtype is None else resolve_dtype(dtype, self.xp)
        )
        if not self.xp.isdtype(self.dtype, "real floating"):
            # Integer parameters would truncate the U(-b, b) draws to zeros.
            msg = f"dtype must be a real floating dtype, got {dtype!r}"
            raise TypeError(msg)
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

    def _check_input(self, x: Array) -> None:
        namespace_of(x=x, weight=self.weight)  # names x when it comes from another library
        # Only (N, in_features): backward() computes grad_weight as a 2-D
        # product, and a batched (N, L, in) input made it 3-D, which the next
        # optimizer step broadcast into the weight itself.
        if x.ndim != 2 or x.shape[1] != self.in_features:
            msg = (
                f"x must be (N, in_features) = (N, {self.in_features}) for {self!r}, "
                f"got shape {tuple(x.shape)}"
            )
            raise ValueError(msg)

    def forward(self, x: Array) -> Array:
        self._check_input(x)
        xp = self.xp
        y = xp.matmul(x, xp.matrix_transpose(self.weight))
        if self.bias is not None:
            y = y + self.bias
        self._input = x
        return y

    __call__ = forward

    def backward(self, grad_output: Array) -> Array:
        x = _saved(self._input, "backward")
        _check_grad_shape(grad_output, (x.shape[0], self.out_features), self)
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


def _values_readable(x: Array) -> bool:
    """Whether ``x``'s values can be read now, and cheaply.

    False for Dask arrays (reading computes the task graph, again at every
    check) and for JAX tracers inside ``jax.jit``, ``vmap`` or ``grad`` (they
    have no values); True for NumPy, CuPy, PyTorch, array-api-strict and
    eager JAX arrays.
    """
    if array_api_compat.is_jax_array(x):
        # array_api_compat.is_lazy_array says True for every JAX array; only
        # tracers are lazy, and an eager array's values are there to read.
        import jax

        tracer = getattr(jax.core, "Tracer", None)
        return tracer is not None and not isinstance(x, tracer)
    return not array_api_compat.is_lazy_array(x)


def _check_labels(labels: Array, num_classes: int, name: str = "labels") -> None:
    """Integer class indices in ``[0, num_classes)``, as torch's ``cross_entropy`` needs.

    The dtype is always checked; the range only where :func:`_values_readable`.
    """
    xp = array_api_compat.array_namespace(labels)
    if not xp.isdtype(labels.dtype, "integral"):
        msg = (
            f"{name} must be integer class indices in [0, {num_classes}), "
            f"got {name} of dtype {labels.dtype}"
        )
        raise TypeError(msg)
    if _values_readable(labels):
        _check_label_range(labels, num_classes, xp, name)


def _check_label_range(labels: Array, num_classes: int, xp: Namespace, name: str) -> None:
    # One reduction (and one device sync) when all labels are valid; the
    # offending values are gathered on the host only to write the error.
    outside = labels < 0
    if num_classes <= xp.iinfo(labels.dtype).max:  # else no label can reach it
        outside = outside | (labels >= num_classes)
    if not bool(xp.any(outside)):
        return
    values = to_numpy(labels)
    wrong = values[(values < 0) | (values >= num_classes)]
    shown = sorted(set(wrong.tolist()))
    listed = ", ".join(str(v) for v in shown[:5]) + (", ..." if len(shown) > 5 else "")
    msg = (
        f"{name} must be class indices in [0, {num_classes}), got {listed} "
        f"({wrong.size} of {values.size} labels out of range)"
    )
    raise ValueError(msg)


def _one_hot(labels: Array, num_classes: int, dtype: Any) -> Array:
    xp = array_api_compat.array_namespace(labels)
    device = array_api_compat.device(labels)
    if num_classes - 1 > xp.iinfo(labels.dtype).max:
        # arange(300) in uint8 wraps round (class 256 would equal class 0 and
        # a label 0 would hit both): count the classes in the default integer.
        labels = xp.astype(labels, xpx.default_dtype(xp, "integral", device=device))
    classes = xp.arange(num_classes, dtype=labels.dtype, device=device)
    hits = xp.reshape(labels, (-1, 1)) == xp.reshape(classes, (1, -1))
    return xp.astype(hits, dtype)


def one_hot(labels: Array, num_classes: int, dtype: Any) -> Array:
    """(N,) integer labels -> (N, num_classes) array of 0/1 in ``dtype``.

    Raises
    ------
    TypeError
        If ``labels`` does not have an integer dtype.
    ValueError
        If ``num_classes`` is not a positive int, or a label is outside
        ``[0, num_classes)`` (checked on eager arrays only, as in
        :class:`SoftmaxCrossEntropy`; elsewhere such a label gives a row of zeros).
    """
    num_classes = _positive_int(num_classes, "num_classes")
    _check_labels(labels, num_classes)
    return _one_hot(labels, num_classes, dtype)


def _check_logits(logits: Array, xp: Namespace) -> None:
    # Integer logits are refused by torch; complex ones have no maximum to
    # subtract and no real softmax.
    if not xp.isdtype(logits.dtype, "real floating"):
        msg = f"logits must have a real floating dtype, got logits of dtype {logits.dtype}"
        raise TypeError(msg)
    if logits.shape[1] < 1:
        msg = f"logits must have at least one class (column), got shape {tuple(logits.shape)}"
        raise ValueError(msg)


class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels.

    ``forward(logits, labels)`` returns a 0-d array; it subtracts each row's
    maximum before exponentiating (log-sum-exp), so large logits do not
    overflow. ``backward()`` returns dL/dlogits = (softmax - one_hot) / N.

    Like ``torch.nn.functional.cross_entropy``, ``forward`` requires real
    floating ``logits`` of shape (N, classes) and integer ``labels`` of shape
    (N,) in ``[0, classes)``: it raises ``TypeError`` for other dtypes (float
    or bool labels) and ``ValueError`` for other shapes or a label out of range,
    naming the offending values.

    Notes
    -----
    The range check reads the labels' values, so it runs only on eager arrays
    (NumPy, CuPy, PyTorch, array-api-strict, JAX outside ``jax.jit``), at the
    cost of one reduction and, on a GPU, one synchronisation per call. It is
    skipped on Dask arrays, where reading values would compute the task graph,
    and on JAX tracers inside ``jax.jit``/``vmap``/``grad``, which have no
    values. There, an out-of-range label contributes a zero target row (a loss
    term of 0) instead of an error: check the labels before they become lazy.
    """

    def __init__(self) -> None:
        self._saved: tuple[Array, Array] | None = None

    def forward(self, logits: Array, labels: Array) -> Array:
        xp = namespace_of(logits=logits, labels=labels)
        if logits.ndim != 2 or labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
            msg = (
                "logits must be (N, classes) and labels (N,), got shapes "
                f"{tuple(logits.shape)} and {tuple(labels.shape)}"
            )
            raise ValueError(msg)
        _check_logits(logits, xp)
        _check_labels(labels, logits.shape[1])
        shifted = logits - xp.max(logits, axis=1, keepdims=True)
        log_probs = shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))
        target = _one_hot(labels, logits.shape[1], logits.dtype)
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


def _check_accuracy_args(logits: Array, labels: Array, xp: Namespace) -> None:
    # A (1,) labels array used to broadcast against N predictions: an
    # "accuracy" of up to N.
    if logits.ndim != 2 or labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        msg = (
            "logits must be (N, classes) and labels (N,), got shapes "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
        raise ValueError(msg)
    if labels.shape[0] == 0:
        msg = (
            f"accuracy needs at least one sample, got logits of shape {tuple(logits.shape)} "
            "(an empty batch has no accuracy)"
        )
        raise ValueError(msg)
    if not xp.isdtype(labels.dtype, "integral"):
        msg = f"labels must be integer class indices, got labels of dtype {labels.dtype}"
        raise TypeError(msg)


def accuracy(logits: Array, labels: Array) -> float:
    """Fraction of rows whose largest logit is at the label.

    Parameters
    ----------
    logits : array of shape (N, classes)
        Scores, one row per sample.
    labels : integer array of shape (N,)
        The true classes (a label outside ``[0, classes)`` is never a hit).

    Raises
    ------
    TypeError
        If ``labels`` does not have an integer dtype.
    ValueError
        If the shapes are not (N, classes) and (N,), or N is 0: the accuracy
        of an empty batch is undefined (0 / 0), and a NaN would silently
        poison a batch-weighted mean such as ``xpconv.demo.evaluate``'s.
    """
    xp = namespace_of(logits=logits, labels=labels)
    _check_accuracy_args(logits, labels, xp)
    hits = xp.argmax(logits, axis=1) == labels
    return float(xp.sum(xp.astype(hits, labels.dtype))) / labels.shape[0]


# --------------------------------------------------------------------------- container


class Sequential:
    """Layers applied in order; ``backward`` runs them in reverse."""

    def __init__(self, *layers: Module) -> None:
        for i, layer in enumerate(layers):
            # Caught here, not as an AttributeError in the middle of forward().
            if not all(callable(getattr(layer, m, None)) for m in ("forward", "backward")):
                msg = (
                    f"layers must have forward() and backward() methods (xpconv.Conv2d, "
                    f"nn.ReLU, ...), got layer {i}: {layer!r}"
                )
                raise TypeError(msg)
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

    def state_dict(self) -> dict[str, Array]:
        """Every layer's parameters, keyed ``"<index>.weight"``, ``"<index>.bias"`` as in torch."""
        return {
            f"{i}.{key}": value
            for i, layer in enumerate(self.layers)
            if hasattr(layer, "state_dict")
            for key, value in layer.state_dict().items()
        }

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Load :meth:`state_dict`'s keys into the layers (see ``Conv2d.load_state_dict``)."""
        if not isinstance(state, dict):
            msg = f"state must be a dict of arrays (from state_dict()), got {type(state).__name__}"
            raise TypeError(msg)
        own = self.state_dict()
        missing = sorted(set(own) - set(state), key=_natural)
        unexpected = sorted(set(state) - set(own), key=_natural)
        if strict and (missing or unexpected):
            msg = (
                f"Sequential.load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
            raise ValueError(msg)
        for i, layer in enumerate(self.layers):
            prefix = f"{i}."
            part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if hasattr(layer, "load_state_dict"):
                layer.load_state_dict(part, strict=strict)

    def __getitem__(self, index: int) -> Any:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        inner = "".join(f"\n  {layer!r}," for layer in self.layers)
        return f"Sequential({inner}\n)"


def _natural(key: str) -> tuple[int, str]:
    index, _, name = key.partition(".")
    return (int(index), name) if index.isdigit() else (-1, key)


# --------------------------------------------------------------------------- optimizers


def _slots(model: Sequential | Iterable[tuple[Any, str]]) -> list[tuple[Any, str]]:
    """The ``(layer, name)`` pairs an optimizer updates, checked now rather than at step()."""
    pairs = list(model.named_parameters() if isinstance(model, Sequential) else model)
    for i, pair in enumerate(pairs):
        # A bare layer (model=[linear]) used to fail inside step() as an unpacking error.
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], str)):
            msg = (
                "model must be a Sequential or (layer, name) pairs such as "
                f"(linear, 'weight'), got item {i}: {pair!r}"
            )
            raise TypeError(msg)
        # A misspelt name surfaced at step() as a misleading "needs a backward() call".
        if getattr(pair[0], pair[1], None) is None:
            msg = f"model item {i}: {pair[0]!r} has no array {pair[1]!r} to optimize"
            raise ValueError(msg)
    if not pairs:  # step() would do nothing, silently; torch raises too
        msg = f"model has no parameters to optimize, got {model!r}"
        raise ValueError(msg)
    return pairs


def _grad(layer: Any, name: str) -> Array:
    grad = getattr(layer, f"grad_{name}", None)
    if grad is None:
        msg = f"step() needs a backward() call first: {layer!r} has no grad_{name}"
        raise RuntimeError(msg)
    return grad


def _real(value: Any, name: str, rule: str, ok: Callable[[float], bool]) -> float:
    """``value`` as a float when it is a real number (not a bool) for which ``ok`` holds.

    Always ``ValueError``, as this module has raised for ``lr`` (tests pin it).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not ok(float(value)):
        msg = f"{name} must be {rule}, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _check_lr(lr: float) -> float:
    return _real(lr, "lr", "a positive finite number", lambda v: math.isfinite(v) and v > 0)


def _check_non_negative(value: float, name: str) -> float:
    return _real(value, name, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0)


def _check_betas(betas: Any) -> tuple[float, float]:
    # beta1 = 1 made the bias correction 1 - beta1**t zero (ZeroDivisionError
    # at step()); beta2 = 1 divided by zero in the second-moment correction.
    rule = "a pair (beta1, beta2) of numbers in [0, 1)"
    if not (isinstance(betas, tuple | list) and len(betas) == 2):
        msg = f"betas must be {rule}, got {betas!r}"
        raise ValueError(msg)
    b1, b2 = (
        _real(b, f"betas[{i}]", "a number in [0, 1)", lambda v: 0 <= v < 1)
        for i, b in enumerate(betas)
    )
    return b1, b2


class SGD:
    """Stochastic gradient descent with (heavy-ball) momentum, like ``torch.optim.SGD``.

    ``v = momentum * v + g``; ``p = p - lr * v``. Parameters are rebound, not
    modified in place, so immutable arrays (JAX) work too.

    Raises
    ------
    ValueError
        If ``lr`` is not a positive finite number, ``momentum`` is negative or
        not finite, or ``model`` names no parameter or one its layer lacks.
    TypeError
        If ``model`` is neither a :class:`Sequential` nor ``(layer, name)`` pairs.
    """

    def __init__(
        self, model: Sequential | Iterable[tuple[Any, str]], lr: float, momentum: float = 0.9
    ) -> None:
        self.lr = _check_lr(lr)
        self.momentum = _check_non_negative(momentum, "momentum")
        self.slots = _slots(model)
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
    """Adam (Kingma & Ba, 2015) with bias correction, like ``torch.optim.Adam``.

    Raises
    ------
    ValueError
        If ``lr`` is not a positive finite number, ``betas`` is not a pair of
        numbers in [0, 1), ``eps`` is negative or not finite, or ``model``
        names no parameter or one its layer lacks.
    TypeError
        If ``model`` is neither a :class:`Sequential` nor ``(layer, name)`` pairs.
    """

    def __init__(
        self,
        model: Sequential | Iterable[tuple[Any, str]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.lr = _check_lr(lr)
        self.beta1, self.beta2 = _check_betas(betas)
        self.eps = _check_non_negative(eps, "eps")
        self.slots = _slots(model)
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
