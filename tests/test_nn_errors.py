"""Hostile arguments to xpconv.nn and xpconv.ConvolutionLayer: a clear error, never a
silent wrong answer or a crash deep inside.

Each error names the argument, the value and what was expected.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import xpconv
from xpconv import nn


def _arr(backend: Any, shape: tuple[int, ...], dtype: str = "float64") -> Any:
    return backend.asarray(np.ones(shape), dtype)


# --------------------------------------------------------------------------- ConvolutionLayer

GOOD = ([1, 5, 5], [3, 3], 2, 1)

# (argument index, bad value, exception, message pattern)
CONSTRUCTOR_ERRORS = {
    "stride_zero": (3, 0, ValueError, r"stride must be a positive int, got 0"),
    "stride_negative": (3, -1, ValueError, r"stride must be a positive int, got -1"),
    "stride_float": (
        3,
        1.5,
        TypeError,
        r"stride must be a positive int, got 1\.5 \(1\.5 is a float, not an int\)",
    ),
    "stride_bool": (3, True, TypeError, r"stride must be a positive int, got True"),
    "numfilters_zero": (2, 0, ValueError, r"numfilters must be a positive int, got 0"),
    "numfilters_float": (2, 2.5, TypeError, r"numfilters must be a positive int, got 2\.5"),
    "numfilters_bool": (2, False, TypeError, r"numfilters must be a positive int, got False"),
    "in_channels_int": (
        0,
        5,
        TypeError,
        r"in_channels must be a sequence of 3 positive ints \(depth, rows, cols\), got 5$",
    ),
    "in_channels_str": (0, "155", TypeError, r"in_channels must be a sequence .*got '155'"),
    "in_channels_short": (
        0,
        [1, 5],
        ValueError,
        r"in_channels must be a sequence of 3 positive ints .*got \[1, 5\] \(2 values\)",
    ),
    "in_channels_float": (
        0,
        [1, 5.7, 5],
        TypeError,
        r"in_channels must be .*got \[1, 5\.7, 5\] \(5\.7 is a float, not an int\)",
    ),
    "in_channels_bool": (0, [True, 5, 5], TypeError, r"in_channels .*\(True is a bool"),
    "in_channels_zero": (
        0,
        [0, 5, 5],
        ValueError,
        r"in_channels must be .*got \[0, 5, 5\] \(0 is not positive\)",
    ),
    "filter_size_negative": (
        1,
        [3, -3],
        ValueError,
        r"filter_size must be a sequence of 2 positive ints \(rows, cols\), got \[3, -3\]",
    ),
    "filter_size_float": (1, (3.0, 3), TypeError, r"filter_size must be .*\(3\.0 is a float"),
    "filter_size_three": (1, [3, 3, 3], ValueError, r"filter_size .*\(3 values\)"),
    "filter_larger_than_input": (
        1,
        [6, 3],
        ValueError,
        re.escape(
            "filter_size [6, 3] must fit in the (rows, cols) = (5, 5) of in_channels "
            "[1, 5, 5]: the output would be empty"
        ),
    ),
}


@pytest.mark.parametrize(
    ("index", "value", "exc", "pattern"),
    list(CONSTRUCTOR_ERRORS.values()),
    ids=list(CONSTRUCTOR_ERRORS),
)
def test_convolution_layer_constructor_errors(
    index: int, value: Any, exc: type, pattern: str
) -> None:
    args = list(GOOD)
    args[index] = value
    with pytest.raises(exc, match=pattern):
        xpconv.ConvolutionLayer(*args)


def test_convolution_layer_accepts_numpy_integers() -> None:
    layer = xpconv.ConvolutionLayer(
        np.array([1, 7, 7]), (np.int64(3), np.int32(3)), np.int64(2), np.int64(2), rng=0
    )
    assert (layer.out_depth, layer.stride, layer.out_row, layer.out_col) == (2, 2, 3, 3)
    assert type(layer.stride) is int  # a plain int, as the original stored it


def test_convolution_layer_rejects_integer_parameters(backend: Any) -> None:
    # Integer weights would truncate every N(0, 0.1) draw to 0.
    with pytest.raises(TypeError, match=r"dtype must be a real floating dtype, got .*int32"):
        xpconv.ConvolutionLayer(
            *GOOD, xp=backend.xp, device=backend.device, dtype=backend.dtype("int32")
        )


def _layer(backend: Any) -> Any:
    return xpconv.ConvolutionLayer(*GOOD, xp=backend.xp, device=backend.device, rng=0)


@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
def test_convolution_layer_rejects_complex_input(backend: Any, dtype: str) -> None:
    # It used to cast X to the real weights' dtype: the imaginary part was lost
    # with at most a ComplexWarning (no warning at all on Dask).
    x = backend.asarray(np.ones((1, 1, 5, 5)) + 1j, dtype)
    with pytest.raises(TypeError, match=rf"X must be real .*got X of dtype .*{dtype}"):
        _layer(backend).forwardpass(x)


def test_convolution_layer_names_x_when_it_is_not_an_array() -> None:
    with pytest.raises(TypeError, match=r"X must be an array of an array API library, got list"):
        xpconv.ConvolutionLayer(*GOOD, rng=0).forwardpass([[[[1.0] * 5] * 5]])


def _forward(backend: Any) -> Any:
    layer = _layer(backend)
    layer.forwardpass(_arr(backend, (4, 1, 5, 5)))
    return layer


@pytest.mark.parametrize(
    ("lr", "exc", "pattern"),
    [
        (-0.1, ValueError, r"lr must be a finite number >= 0, got -0\.1"),
        (float("nan"), ValueError, r"lr must be a finite number >= 0, got nan"),
        (float("inf"), ValueError, r"lr must be a finite number >= 0, got inf"),
        ("0.1", TypeError, r"lr must be a real number >= 0, got '0\.1' of type str"),
        (True, TypeError, r"lr must be a real number >= 0, got True of type bool"),
    ],
)
def test_convolution_layer_backwardpass_checks_lr(
    backend: Any, lr: Any, exc: type, pattern: str
) -> None:
    layer = _forward(backend)
    weights = backend.to_numpy(layer.weights)
    with pytest.raises(exc, match=pattern):
        layer.backwardpass(lr, None, _arr(backend, (4, 2, 3, 3)))
    np.testing.assert_array_equal(backend.to_numpy(layer.weights), weights)  # no update


def test_convolution_layer_backwardpass_accepts_numpy_scalars_and_zero(backend: Any) -> None:
    layer = _forward(backend)
    weights = backend.to_numpy(layer.weights)
    layer.backwardpass(0, None, _arr(backend, (4, 2, 3, 3)))
    np.testing.assert_array_equal(backend.to_numpy(layer.weights), weights)
    layer.backwardpass(np.float32(0.1), None, _arr(backend, (4, 2, 3, 3)))
    assert not np.array_equal(backend.to_numpy(layer.weights), weights)


@pytest.mark.parametrize("shape", [(1, 2, 3, 3), (3,), (4, 2, 3, 4)])
def test_convolution_layer_backwardpass_checks_delta_shape(backend: Any, shape: tuple) -> None:
    # (1, 2, 3, 3) and (3,) used to broadcast over the batch of 4 silently.
    pattern = re.escape(
        f"delta must have the shape of the last forwardpass() output (4, 2, 3, 3), got {shape}"
    )
    with pytest.raises(ValueError, match=pattern):
        _forward(backend).backwardpass(0.1, None, _arr(backend, shape))


def test_convolution_layer_backwardpass_rejects_complex_delta(backend: Any) -> None:
    delta = backend.asarray(np.ones((4, 2, 3, 3)) * 1j, "complex128")
    with pytest.raises(TypeError, match=r"delta must be real.*got delta of dtype .*complex128"):
        _forward(backend).backwardpass(0.1, None, delta)


def test_convolution_layer_backwardpass_names_delta_when_it_is_not_an_array() -> None:
    layer = xpconv.ConvolutionLayer(*GOOD, rng=0)
    layer.forwardpass(np.ones((1, 1, 5, 5)))
    with pytest.raises(
        TypeError, match=r"delta must be an array of an array API library, got list"
    ):
        layer.backwardpass(0.1, None, [[1.0]])


# --------------------------------------------------------------------------- SoftmaxCrossEntropy

LAZY = "the label range is not checked on Dask (reading it would compute the graph)"


def _loss(backend: Any, labels: np.ndarray, classes: int = 4) -> Any:
    logits = backend.asarray(np.zeros((labels.shape[0], classes)))
    return nn.SoftmaxCrossEntropy()(logits, backend.asarray(labels))


@pytest.mark.skip_xp_backend("dask", reason=LAZY)
@pytest.mark.parametrize(
    ("labels", "pattern"),
    [
        ([0, 1, 7], r"got 7 \(1 of 3 labels out of range\)"),
        ([0, -1, 2], r"got -1 \(1 of 3 labels out of range\)"),
        ([4, 9, -3, 4, 1], r"got -3, 4, 9 \(4 of 5 labels out of range\)"),
        ([4, 5, 6, 7, 8, 9, 10], r"got 4, 5, 6, 7, 8, \.\.\. \(7 of 7 labels out of range\)"),
    ],
)
def test_cross_entropy_rejects_labels_out_of_range(
    backend: Any, labels: list[int], pattern: str
) -> None:
    # torch raises here ("Target 7 is out of bounds"); xpconv used to return a
    # loss with the bad label's term silently dropped.
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 4\), " + pattern):
        _loss(backend, np.array(labels))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int32", "int64"])
def test_cross_entropy_accepts_any_integer_labels(backend: Any, dtype: str) -> None:
    loss = _loss(backend, np.array([0, 3, 2], dtype=dtype))
    assert float(backend.to_numpy(loss)) == pytest.approx(np.log(4))


@pytest.mark.skip_xp_backend("dask", reason=LAZY)
def test_cross_entropy_checks_the_range_of_small_unsigned_labels(backend: Any) -> None:
    with pytest.raises(ValueError, match=r"in \[0, 3\), got 3 "):
        _loss(backend, np.array([0, 3], dtype="uint8"), classes=3)
    # 300 classes do not fit in uint8: only the lower bound can fail, and the
    # comparison with 300 (out of uint8's range) must not be attempted.
    logits = backend.asarray(np.zeros((2, 300)))
    nn.SoftmaxCrossEntropy()(logits, backend.asarray(np.array([0, 255], dtype="uint8")))


@pytest.mark.parametrize(
    ("labels", "dtype"),
    [([0.0, 1.0, 2.0], "float64"), ([0.5, 1.0, 2.0], "float32"), ([True, False, True], "bool")],
)
def test_cross_entropy_rejects_float_and_bool_labels(
    backend: Any, labels: list, dtype: str
) -> None:
    # Float labels were compared with float class numbers: 0.5 matched no class.
    pattern = rf"labels must be integer class indices in \[0, 4\), got labels of dtype .*{dtype}"
    with pytest.raises(TypeError, match=pattern):
        _loss(backend, np.array(labels, dtype=dtype))


@pytest.mark.parametrize("dtype", ["int64", "complex128"])
def test_cross_entropy_rejects_logits_that_are_not_real_floating(backend: Any, dtype: str) -> None:
    logits = backend.asarray(np.zeros((3, 4)), dtype)
    with pytest.raises(TypeError, match=rf"logits must have a real floating dtype, got .*{dtype}"):
        nn.SoftmaxCrossEntropy()(logits, backend.asarray(np.array([0, 1, 2])))


def test_cross_entropy_needs_a_class(backend: Any) -> None:
    # It used to fail in max() over an empty axis.
    with pytest.raises(ValueError, match=r"at least one class \(column\), got shape \(3, 0\)"):
        nn.SoftmaxCrossEntropy()(
            backend.asarray(np.zeros((3, 0))), backend.asarray(np.array([0, 0, 0]))
        )


def test_cross_entropy_keeps_its_shape_check(backend: Any) -> None:
    logits, labels = backend.asarray(np.zeros((3, 4))), backend.asarray(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"got shapes \(3, 4\) and \(2,\)"):
        nn.SoftmaxCrossEntropy()(logits, labels)


def test_cross_entropy_names_logits_when_they_are_not_an_array() -> None:
    with pytest.raises(TypeError, match=r"logits must be an array of an array API library"):
        nn.SoftmaxCrossEntropy()([[0.0, 1.0]], np.array([0]))


def test_cross_entropy_on_dask_skips_the_range_check_as_documented() -> None:
    # The documented trade-off: no compute() per call; a bad label's term is 0.
    da = pytest.importorskip("dask.array")
    import array_api_compat.dask.array as dxp

    logits = dxp.asarray(da.zeros((3, 4), chunks=2))
    labels = dxp.asarray(da.from_array(np.array([0, 1, 7]), chunks=2))
    loss = nn.SoftmaxCrossEntropy()(logits, labels)
    assert float(loss.compute()) == pytest.approx(2 * np.log(4) / 3)
    with pytest.raises(TypeError, match="labels must be integer"):  # dtypes are still checked
        nn.SoftmaxCrossEntropy()(logits, dxp.astype(labels, dxp.float64))


def test_cross_entropy_checks_eager_jax_but_not_traced_jax() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    logits, labels = jnp.zeros((3, 4)), jnp.asarray([0, 1, 7])
    with pytest.raises(ValueError, match=r"got 7 \(1 of 3 labels out of range\)"):
        nn.SoftmaxCrossEntropy()(logits, labels)
    loss = jax.jit(nn.SoftmaxCrossEntropy().forward)(logits, labels)
    assert float(loss) == pytest.approx(2 * np.log(4) / 3)


@pytest.mark.skip_xp_backend("dask", reason=LAZY)
def test_one_hot_checks_its_labels(backend: Any) -> None:
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\), got 5"):
        nn.one_hot(backend.asarray(np.array([0, 5])), 3, backend.dtype("float64"))
    with pytest.raises(TypeError, match=r"labels must be integer class indices.*float64"):
        nn.one_hot(backend.asarray(np.array([0.0, 1.0])), 3, backend.dtype("float64"))
    with pytest.raises(ValueError, match=r"num_classes must be a positive int, got 0"):
        nn.one_hot(backend.asarray(np.array([0])), 0, backend.dtype("float64"))
    hot = nn.one_hot(backend.asarray(np.array([0, 2])), np.int64(3), backend.dtype("float64"))
    np.testing.assert_array_equal(backend.to_numpy(hot), [[1, 0, 0], [0, 0, 1]])


@pytest.mark.parametrize(("dtype", "classes"), [("uint8", 300), ("int8", 300)])
def test_one_hot_counts_classes_past_the_labels_dtype(
    backend: Any, dtype: str, classes: int
) -> None:
    # arange(300) in uint8 wrapped round: label 0 also hit class 256, and the
    # loss counted its term twice.
    labels = backend.asarray(np.array([0, 1, 127], dtype=dtype))
    hot = backend.to_numpy(nn.one_hot(labels, classes, backend.dtype("float64")))
    np.testing.assert_array_equal(hot, np.eye(classes)[[0, 1, 127]])
    logits = backend.asarray(np.zeros((3, classes)))
    loss = nn.SoftmaxCrossEntropy()(logits, labels)
    assert float(backend.to_numpy(loss)) == pytest.approx(np.log(classes))


# --------------------------------------------------------------------------- MaxPool2d


@pytest.mark.parametrize(
    ("size", "shape"), [(3, (1, 1, 2, 2)), (2, (2, 3, 1, 4)), (4, (1, 1, 9, 3))]
)
def test_maxpool_rejects_an_input_smaller_than_one_window(
    backend: Any, size: int, shape: tuple
) -> None:
    # It returned an empty (N, C, 0, W // k) array; torch: "Output size is too small".
    pattern = re.escape(
        f"MaxPool2d({size}) needs x of at least {size}x{size} (H, W), got x of shape "
        f"{shape}: the output would be empty"
    )
    with pytest.raises(ValueError, match=pattern):
        nn.MaxPool2d(size)(_arr(backend, shape))


def test_maxpool_accepts_a_numpy_integer_size(backend: Any) -> None:
    layer = nn.MaxPool2d(np.int64(2))
    assert type(layer.size) is int
    assert tuple(layer(_arr(backend, (1, 1, 4, 5))).shape) == (1, 1, 2, 2)


@pytest.mark.parametrize("shape", [(1, 2, 3, 3), (1, 2, 1, 1), (2, 2, 2, 2)])
def test_maxpool_backward_checks_grad_output_shape(backend: Any, shape: tuple) -> None:
    layer = nn.MaxPool2d(2)
    layer(_arr(backend, (1, 2, 4, 5)))
    pattern = re.escape(
        "grad_output of MaxPool2d(2) must have the shape of its last forward() output "
        f"(1, 2, 2, 2), got {shape}"
    )
    with pytest.raises(ValueError, match=pattern):
        layer.backward(_arr(backend, shape))


# --------------------------------------------------------------------------- accuracy


def test_accuracy_of_an_empty_batch_is_an_error(backend: Any) -> None:
    # It divided by zero (ZeroDivisionError from deep inside); a NaN instead
    # would poison the batch-weighted means of xpconv.demo without a word.
    logits = backend.asarray(np.zeros((0, 3)))
    labels = backend.asarray(np.zeros((0,), dtype=np.int64))
    with pytest.raises(ValueError, match=r"at least one sample, got logits of shape \(0, 3\)"):
        nn.accuracy(logits, labels)


@pytest.mark.parametrize(
    ("logits_shape", "labels_shape"), [((4, 3), (1,)), ((4, 3), (2,)), ((4,), (4,))]
)
def test_accuracy_checks_shapes(backend: Any, logits_shape: tuple, labels_shape: tuple) -> None:
    # (4, 3) against (1,) broadcast: an "accuracy" of 4.0.
    logits = _arr(backend, logits_shape)
    labels = backend.asarray(np.zeros(labels_shape, dtype=np.int64))
    pattern = re.escape(
        f"logits must be (N, classes) and labels (N,), got shapes {logits_shape} and {labels_shape}"
    )
    with pytest.raises(ValueError, match=pattern):
        nn.accuracy(logits, labels)


def test_accuracy_needs_integer_labels(backend: Any) -> None:
    logits = _arr(backend, (2, 3))
    labels = backend.asarray(np.array([True, False]))
    with pytest.raises(TypeError, match=r"labels must be integer class indices, got .*bool"):
        nn.accuracy(logits, labels)


# --------------------------------------------------------------------------- Linear, Flatten, ReLU


def _linear(backend: Any) -> Any:
    return nn.Linear(3, 2, xp=backend.xp, device=backend.device, dtype=backend.dtype("float64"))


@pytest.mark.parametrize("shape", [(4, 5), (2, 4, 3), (3,)])
def test_linear_checks_its_input_shape(backend: Any, shape: tuple) -> None:
    # (4, 5) failed inside matmul; (2, 4, 3) passed and made grad_weight 3-D,
    # which the next optimizer step broadcast into the weight itself.
    pattern = (
        re.escape("x must be (N, in_features) = (N, 3) for Linear(3, 2, bias=True, dtype=")
        + rf".*\), got shape {re.escape(str(shape))}"
    )
    with pytest.raises(ValueError, match=pattern):
        _linear(backend)(_arr(backend, shape))


def test_linear_backward_checks_grad_output_shape(backend: Any) -> None:
    layer = _linear(backend)
    layer(_arr(backend, (4, 3)))
    with pytest.raises(ValueError, match=r"last forward\(\) output \(4, 2\), got \(4, 5\)"):
        layer.backward(_arr(backend, (4, 5)))
    with pytest.raises(ValueError, match=r"last forward\(\) output \(4, 2\), got \(2,\)"):
        layer.backward(_arr(backend, (2,)))


def test_linear_names_an_input_from_another_library() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(
        TypeError, match=r"arrays must all come from one array library, got x: torch"
    ):
        nn.Linear(3, 2, rng=0)(torch.ones((4, 3), dtype=torch.float64))


def test_linear_rejects_integer_parameters(backend: Any) -> None:
    # Integer weights would truncate every U(-1/sqrt(3), 1/sqrt(3)) draw to 0.
    with pytest.raises(TypeError, match=r"dtype must be a real floating dtype, got .*int64"):
        nn.Linear(3, 2, xp=backend.xp, device=backend.device, dtype=backend.dtype("int64"))


def test_linear_accepts_numpy_integers() -> None:
    layer = nn.Linear(np.int64(3), np.int32(2), rng=0)
    assert (type(layer.in_features), layer.weight.shape) == (int, (2, 3))


def test_flatten_rejects_a_0d_input(backend: Any) -> None:
    with pytest.raises(ValueError, match=r"x must have a batch axis \(N, \.\.\.\), got a 0-d"):
        nn.Flatten()(backend.asarray(np.float64(1.0)))


def test_flatten_backward_checks_grad_output_shape(backend: Any) -> None:
    layer = nn.Flatten()
    layer(_arr(backend, (2, 3, 4)))
    with pytest.raises(
        ValueError, match=r"Flatten\(\) must have .* output \(2, 12\), got \(2, 5\)"
    ):
        layer.backward(_arr(backend, (2, 5)))


@pytest.mark.parametrize("shape", [(3,), (1, 3), (3, 3)])
def test_relu_backward_checks_grad_output_shape(backend: Any, shape: tuple) -> None:
    # (3,) and (1, 3) broadcast against the (2, 3) mask: a gradient for a
    # batch that never came back.
    layer = nn.ReLU()
    layer(_arr(backend, (2, 3)))
    pattern = re.escape(
        f"ReLU() must have the shape of its last forward() output (2, 3), got {shape}"
    )
    with pytest.raises(ValueError, match=pattern):
        layer.backward(_arr(backend, shape))


# --------------------------------------------------------------------------- optimizers


def _model() -> Any:
    return nn.Sequential(nn.Linear(3, 2, rng=0))


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (
            lambda: nn.SGD(_model(), 0.1, momentum=-0.5),
            r"momentum must be a finite number >= 0, got -0\.5",
        ),
        (lambda: nn.SGD(_model(), 0.1, momentum=float("nan")), r"momentum must be .*, got nan"),
        (lambda: nn.SGD(_model(), 0.1, momentum="0.9"), r"momentum must be .*, got '0\.9'"),
        (lambda: nn.SGD(_model(), True), r"lr must be a positive finite number, got True"),
        (
            lambda: nn.Adam(_model(), betas=(1.0, 0.999)),
            r"betas\[0\] must be a number in \[0, 1\), got 1\.0",
        ),
        (
            lambda: nn.Adam(_model(), betas=(0.9, 1.0)),
            r"betas\[1\] must be a number in \[0, 1\), got 1\.0",
        ),
        (lambda: nn.Adam(_model(), betas=(0.9, -0.1)), r"betas\[1\] must be .*, got -0\.1"),
        (
            lambda: nn.Adam(_model(), betas=0.9),
            r"betas must be a pair \(beta1, beta2\) of numbers in \[0, 1\), got 0\.9",
        ),
        (
            lambda: nn.Adam(_model(), betas=(0.9, 0.99, 0.5)),
            r"betas must be a pair .*got \(0\.9, 0\.99, 0\.5\)",
        ),
        (lambda: nn.Adam(_model(), eps=-1e-8), r"eps must be a finite number >= 0, got -1e-08"),
        (
            lambda: nn.Adam(nn.Sequential(nn.ReLU())),
            r"model has no parameters to optimize, got Sequential",
        ),
        (lambda: nn.SGD([], 0.1), r"model has no parameters to optimize, got \[\]"),
        (
            lambda: nn.SGD([(nn.Linear(3, 2), "weights")], 0.1),
            r"model item 0: Linear\(3, 2.*\) has no array 'weights' to optimize",
        ),
        (lambda: nn.SGD([(nn.Linear(3, 2, bias=False), "bias")], 0.1), r"has no array 'bias'"),
    ],
)
def test_optimizer_argument_errors(make: Any, pattern: str) -> None:
    # Each was accepted and then diverged, divided by zero at step(), did
    # nothing at all, or failed at step() with a misleading message.
    with pytest.raises(ValueError, match=pattern):
        make()


def test_optimizer_names_a_bare_layer_in_place_of_pairs() -> None:
    with pytest.raises(
        TypeError, match=r"model must be a Sequential or \(layer, name\) pairs .*got item 0: Linear"
    ):
        nn.SGD([nn.Linear(3, 2)], 0.1)


def test_optimizers_accept_numpy_scalars_and_zero(backend: Any) -> None:
    # np.float32(0.01) was refused as lr (not a Python float).
    layer = nn.Linear(3, 2, xp=backend.xp, device=backend.device, dtype=backend.dtype("float64"))
    for optimizer in (
        nn.SGD(nn.Sequential(layer), np.float32(0.01), momentum=0),
        nn.Adam([(layer, "weight")], lr=np.float64(0.01), betas=(0.0, np.float32(0.5)), eps=0),
    ):
        layer.backward(layer(_arr(backend, (4, 3))))
        optimizer.step()
    assert np.all(np.isfinite(backend.to_numpy(layer.weight)))


# --------------------------------------------------------------------------- Sequential


@pytest.mark.parametrize("bad", [3, np.tanh, "relu", None])
def test_sequential_rejects_what_is_not_a_layer(bad: Any) -> None:
    # It was accepted and failed at forward() with an AttributeError.
    pattern = r"layers must have forward\(\) and backward\(\) methods .*got layer 1: " + re.escape(
        repr(bad)
    )
    with pytest.raises(TypeError, match=pattern):
        nn.Sequential(nn.ReLU(), bad)


# ------------------------------------------------------------------- ReLU and MaxPool2d dtypes


@pytest.mark.parametrize("layer", [nn.ReLU(), nn.MaxPool2d(2)], ids=repr)
@pytest.mark.parametrize("dtype", ["complex128", "bool"])
def test_relu_and_maxpool_reject_complex_and_bool(backend: Any, layer: Any, dtype: str) -> None:
    # Complex values were ordered lexicographically (NumPy) without a word;
    # torch refuses both dtypes, array-api-strict failed deep inside.
    x = backend.asarray(np.ones((1, 1, 2, 2)), dtype)
    with pytest.raises(TypeError, match=rf"x of {re.escape(repr(layer))} must be real .*{dtype}"):
        layer(x)


def test_maxpool_of_integer_images_has_a_floating_gradient(backend: Any) -> None:
    # array-api-strict refused the integer division of the tie shares.
    layer = nn.MaxPool2d(2)
    x = backend.asarray(np.array([[[[1, 3], [3, 0]]]]), "int64")
    y = layer(x)
    assert backend.to_numpy(y).tolist() == [[[[3]]]]
    grad = layer.backward(backend.asarray(np.ones((1, 1, 1, 1))))
    np.testing.assert_array_equal(backend.to_numpy(grad), [[[[0, 0.5], [0.5, 0]]]])
