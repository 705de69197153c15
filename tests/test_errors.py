"""Every documented error: its type, and a message naming the argument and the value."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest

import xpconv


def _arr(backend: Any, shape: tuple[int, ...], dtype: str = "float64") -> Any:
    return backend.asarray(np.ones(shape), dtype)


# conv2d and conv2d_backward share their checks: run each case through both.
def _conv2d(backend: Any, x: Any, w: Any, **kw: Any) -> Any:
    return xpconv.conv2d(x, w, **kw)


def _conv2d_backward(backend: Any, x: Any, w: Any, **kw: Any) -> Any:
    # A grad_output of the right rank; the geometry errors must come before its shape check.
    gy = _arr(backend, (1, 1, 1, 1), dtype=str(x.dtype).rsplit(".", 1)[-1])
    return xpconv.conv2d_backward(gy, x, w, **kw)


CONV_FUNCS = pytest.mark.parametrize(
    "func", [_conv2d, _conv2d_backward], ids=["conv2d", "backward"]
)

# (x shape, weight shape, kwargs, exception, message pattern)
GEOMETRY_ERRORS = {
    "x_2d": (
        (5, 5),
        (1, 1, 3, 3),
        {},
        ValueError,
        r"conv2d expects a 4-D \(N, C, H, W\) or 3-D \(C, H, W\) input x, got shape \(5, 5\)",
    ),
    "x_5d": (
        (1, 1, 1, 5, 5),
        (1, 1, 3, 3),
        {},
        ValueError,
        r"conv2d expects a 4-D \(N, C, H, W\).*got shape \(1, 1, 1, 5, 5\)",
    ),
    "weight_3d": (
        (1, 2, 5, 5),
        (2, 3, 3),
        {},
        ValueError,
        r"conv2d expects a 4-D weight \(out_channels, in_channels/groups, KH, KW\), "
        r"got shape \(2, 3, 3\)",
    ),
    "weight_5d": (
        (1, 2, 5, 5),
        (1, 1, 2, 3, 3),
        {},
        ValueError,
        r"conv2d expects a 4-D weight.*\(1, 1, 2, 3, 3\)",
    ),
    "channels": (
        (1, 3, 5, 5),
        (4, 2, 3, 3),
        {},
        ValueError,
        r"x has 3 channels but weight expects.*= 2",
    ),
    "channels_groups": (
        (1, 4, 5, 5),
        (4, 1, 3, 3),
        {"groups": 2},
        ValueError,
        r"x has 4 channels.*in_channels/groups = 1 with groups=2",
    ),
    "groups_in": (
        (1, 3, 5, 5),
        (4, 1, 3, 3),
        {"groups": 2},
        ValueError,
        r"in_channels \(3.*divisible by groups=2",
    ),
    "groups_out": (
        (1, 4, 5, 5),
        (3, 2, 3, 3),
        {"groups": 2},
        ValueError,
        r"out_channels \(3.*divisible by groups=2",
    ),
    "groups_zero": (
        (1, 4, 5, 5),
        (4, 4, 3, 3),
        {"groups": 0},
        ValueError,
        r"groups must be a positive int, got 0",
    ),
    "groups_float": (
        (1, 4, 5, 5),
        (4, 2, 3, 3),
        {"groups": 2.0},
        TypeError,
        r"groups must be a positive int, got 2\.0",
    ),
    "kernel_too_big": (
        (1, 1, 4, 5),
        (1, 1, 5, 3),
        {},
        ValueError,
        r"kernel size 5x3.*larger than the padded input 4x5",
    ),
    "dilated_too_big": (
        (1, 1, 4, 4),
        (1, 1, 3, 3),
        {"dilation": 2},
        ValueError,
        r"kernel size 3x3 \(dilated: 5x5\) is larger than the padded input 4x4",
    ),
    "valid_too_big": (
        (1, 1, 2, 2),
        (1, 1, 3, 3),
        {"padding": "valid"},
        ValueError,
        r"larger than the padded input 2x2",
    ),
    "empty_kernel": (
        (1, 1, 4, 4),
        (1, 1, 0, 3),
        {},
        ValueError,
        r"weight must have a non-empty kernel.*\(1, 1, 0, 3\)",
    ),
    "stride_zero": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"stride": 0},
        ValueError,
        r"stride must be positive, got 0",
    ),
    "stride_negative": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"stride": (1, -2)},
        ValueError,
        r"stride must be positive, got \(1, -2\)",
    ),
    "dilation_zero": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"dilation": 0},
        ValueError,
        r"dilation must be positive, got 0",
    ),
    "dilation_negative": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"dilation": -1},
        ValueError,
        r"dilation must be positive, got -1",
    ),
    "padding_negative": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"padding": -1},
        ValueError,
        r"padding must be >= 0, got -1",
    ),
    "padding_negative_pair": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"padding": (0, -1)},
        ValueError,
        r"padding must be >= 0, got \(0, -1\)",
    ),
    "padding_string": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"padding": "circular"},
        ValueError,
        r"padding must be an int, a pair of ints, 'same', 'valid' or 'full', got 'circular'",
    ),
    "padding_float": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"padding": 1.0},
        TypeError,
        r"padding must be an int or a pair of ints, got 1\.0",
    ),
    "stride_float": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"stride": 1.5},
        TypeError,
        r"stride must be an int or a pair of ints, got 1\.5",
    ),
    "stride_float_pair": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"stride": (1, 2.0)},
        TypeError,
        r"stride must be an int or a pair of ints, got \(1, 2\.0\)",
    ),
    "dilation_float": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"dilation": 2.0},
        TypeError,
        r"dilation must be an int or a pair of ints, got 2\.0",
    ),
    "stride_bool": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"stride": True},
        TypeError,
        r"stride must be an int or a pair of ints, got True",
    ),
    "stride_triple": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"stride": (1, 1, 1)},
        ValueError,
        r"stride must be an int or a pair of ints, got \(1, 1, 1\)",
    ),
    "stride_string": (
        (1, 1, 5, 5),
        (1, 1, 3, 3),
        {"stride": "2"},
        TypeError,
        r"stride must be an int or a pair of ints, got '2'",
    ),
}


@CONV_FUNCS
@pytest.mark.parametrize("case", GEOMETRY_ERRORS)
def test_geometry_errors(backend: Any, func: Any, case: str) -> None:
    xs, ws, kw, exc, pattern = GEOMETRY_ERRORS[case]
    x, w = _arr(backend, xs), _arr(backend, ws)
    with pytest.raises(exc, match=pattern):
        func(backend, x, w, **kw)


@CONV_FUNCS
def test_integer_dtype(backend: Any, func: Any) -> None:
    x, w = _arr(backend, (1, 1, 4, 4), "int64"), _arr(backend, (1, 1, 2, 2), "int64")
    with pytest.raises(TypeError, match=r"must have a floating dtype \(float16, .*\), got .*int64"):
        func(backend, x, w)


def test_integer_weight(backend: Any) -> None:
    x, w = _arr(backend, (1, 1, 4, 4)), _arr(backend, (1, 1, 2, 2), "int32")
    with pytest.raises(TypeError, match=r"weight must have a floating dtype.*got .*int32"):
        xpconv.conv2d(x, w)


def test_real_and_complex_do_not_mix(backend: Any) -> None:
    x, w = _arr(backend, (1, 1, 4, 4), "complex128"), _arr(backend, (1, 1, 2, 2), "float64")
    with pytest.raises(TypeError, match=r"share one dtype, got x: .*complex128, weight: .*float64"):
        xpconv.conv2d(x, w)


def test_mixed_dtypes(backend: Any) -> None:
    x, w = _arr(backend, (1, 1, 4, 4), "float32"), _arr(backend, (1, 1, 2, 2), "float64")
    with pytest.raises(TypeError, match=r"share one dtype, got x: .*float32, weight: .*float64"):
        xpconv.conv2d(x, w)
    b = _arr(backend, (1,), "float32")
    with pytest.raises(TypeError, match=r"share one dtype.*bias: .*float32"):
        xpconv.conv2d(_arr(backend, (1, 1, 4, 4)), _arr(backend, (1, 1, 2, 2)), b)
    gy = _arr(backend, (1, 1, 3, 3), "float32")
    with pytest.raises(TypeError, match=r"share one dtype, got grad_output: .*float32"):
        xpconv.conv2d_backward(gy, _arr(backend, (1, 1, 4, 4)), _arr(backend, (1, 1, 2, 2)))
    with pytest.raises(TypeError, match=r"share one dtype, got x: .*float32, weight: .*float64"):
        xpconv.conv_transpose2d(x, w)


def test_mixed_namespaces() -> None:
    torch = pytest.importorskip("torch")
    x = torch.ones((1, 1, 4, 4), dtype=torch.float64)
    w = np.ones((1, 1, 2, 2))
    pattern = r"one array library, got x: torch\.Tensor, weight: numpy\.ndarray"
    with pytest.raises(TypeError, match=pattern):
        xpconv.conv2d(x, w)
    with pytest.raises(TypeError, match=pattern):
        xpconv.conv_transpose2d(x, w)
    with pytest.raises(
        TypeError, match=r"one array library.*grad_output: numpy\.ndarray, x: torch\.Tensor"
    ):
        xpconv.conv2d_backward(
            np.ones((1, 1, 3, 3)), x, torch.ones((1, 1, 2, 2), dtype=torch.float64)
        )
    with pytest.raises(TypeError, match=r"one array library.*bias: numpy\.ndarray"):
        xpconv.conv2d(x, torch.ones((1, 1, 2, 2), dtype=torch.float64), np.ones(1))


def test_mixed_namespaces_strict() -> None:
    xps = pytest.importorskip("array_api_strict")
    with pytest.raises(
        TypeError, match=r"one array library, got x: numpy\.ndarray, weight: array_api_strict"
    ):
        xpconv.conv2d(np.ones((1, 1, 4, 4)), xps.ones((1, 1, 2, 2)))


def test_not_an_array() -> None:
    with pytest.raises(TypeError, match=r"x must be an array of an array API library, got list"):
        xpconv.conv2d([[[[1.0]]]], np.ones((1, 1, 1, 1)))
    with pytest.raises(
        TypeError, match=r"weight must be an array of an array API library, got float"
    ):
        xpconv.conv2d(np.ones((1, 1, 1, 1)), 1.0)


def test_bias_shape(backend: Any) -> None:
    x, w = _arr(backend, (1, 2, 4, 4)), _arr(backend, (3, 2, 2, 2))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\).*got \(2,\)"):
        xpconv.conv2d(x, w, _arr(backend, (2,)))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\).*got \(1, 3\)"):
        xpconv.conv2d(x, w, _arr(backend, (1, 3)))
    wt = _arr(backend, (2, 3, 2, 2))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\).*got \(2,\)"):
        xpconv.conv_transpose2d(x, wt, _arr(backend, (2,)))


@pytest.mark.parametrize(
    ("gy_shape", "shown"),
    [
        ((1, 3, 3, 4), r"got \(1, 3, 3, 4\)"),
        ((2, 3, 3, 3), r"got \(2, 3, 3, 3\)"),
        ((1, 2, 3, 3), r"got \(1, 2, 3, 3\)"),
        ((3, 3, 3), r"got \(3, 3, 3\)"),
        ((1, 3, 3, 3, 1), r"got \(1, 3, 3, 3, 1\)"),
    ],
)
def test_grad_output_shape(backend: Any, gy_shape: tuple, shown: str) -> None:
    x, w = _arr(backend, (1, 2, 4, 4)), _arr(backend, (3, 2, 2, 2))
    with pytest.raises(
        ValueError, match=r"grad_output must have the conv2d output shape \(1, 3, 3, 3\), " + shown
    ):
        xpconv.conv2d_backward(_arr(backend, gy_shape), x, w)


@pytest.mark.parametrize("gy_shape", [(3, 3, 2), (1, 3, 3, 3), (3, 9)])
def test_grad_output_shape_unbatched(backend: Any, gy_shape: tuple) -> None:
    """A 3-D x has a 3-D output, so a batched grad_output is refused, not squeezed."""
    x, w = _arr(backend, (2, 4, 4)), _arr(backend, (3, 2, 2, 2))
    shown = re.escape(str(gy_shape))
    with pytest.raises(ValueError, match=r"output shape \(3, 3, 3\), got " + shown):
        xpconv.conv2d_backward(_arr(backend, gy_shape), x, w)


# --------------------------------------------------------------------------- conv_transpose2d

TRANSPOSE_ERRORS = {
    "outpad_eq_stride": (
        (1, 2, 3, 3),
        (2, 1, 3, 3),
        {"stride": 2, "output_padding": 2},
        ValueError,
        r"output_padding must be smaller than either stride or dilation, "
        r"got output_padding=2, stride=2, dilation=1",
    ),
    "outpad_stride1": (
        (1, 2, 3, 3),
        (2, 1, 3, 3),
        {"output_padding": 1},
        ValueError,
        r"output_padding must be smaller.*output_padding=1, stride=1, dilation=1",
    ),
    "outpad_pair": (
        (1, 2, 3, 3),
        (2, 1, 3, 3),
        {"stride": (3, 2), "dilation": (1, 2), "output_padding": (2, 2)},
        ValueError,
        r"output_padding=\(2, 2\), stride=\(3, 2\), dilation=\(1, 2\)",
    ),
    "outpad_negative": (
        (1, 2, 3, 3),
        (2, 1, 3, 3),
        {"stride": 2, "output_padding": -1},
        ValueError,
        r"output_padding must be >= 0, got -1",
    ),
    "channels": (
        (1, 3, 3, 3),
        (2, 1, 3, 3),
        {},
        ValueError,
        r"x has 3 channels but weight.*\(2, 1, 3, 3\); expected weight.shape\[0\] == 3",
    ),
    "groups": (
        (1, 4, 3, 3),
        (4, 1, 3, 3),
        {"groups": 3},
        ValueError,
        r"in_channels \(4, axis 1 of x\) must be divisible by groups=3",
    ),
    "x_2d": (
        (3, 3),
        (1, 1, 3, 3),
        {},
        ValueError,
        r"conv_transpose2d expects a 4-D \(N, C, H, W\).*input x, got shape \(3, 3\)",
    ),
    "weight_3d": (
        (1, 1, 3, 3),
        (1, 3, 3),
        {},
        ValueError,
        r"conv_transpose2d expects a 4-D weight \(in_channels, out_channels/groups, KH, KW\), "
        r"got shape \(1, 3, 3\)",
    ),
    "padding_same": (
        (1, 1, 3, 3),
        (1, 1, 3, 3),
        {"padding": "same"},
        TypeError,
        r"padding must be an int or a pair of ints for conv_transpose2d, got 'same'",
    ),
    "padding_negative": (
        (1, 1, 3, 3),
        (1, 1, 3, 3),
        {"padding": -1},
        ValueError,
        r"padding must be >= 0, got -1",
    ),
    "stride_zero": (
        (1, 1, 3, 3),
        (1, 1, 3, 3),
        {"stride": 0},
        ValueError,
        r"stride must be positive, got 0",
    ),
    "dilation_float": (
        (1, 1, 3, 3),
        (1, 1, 3, 3),
        {"dilation": 1.5},
        TypeError,
        r"dilation must be an int or a pair of ints, got 1\.5",
    ),
    "output_not_positive": (
        (1, 1, 1, 1),
        (1, 1, 1, 1),
        {"padding": 1},
        ValueError,
        r"conv_transpose2d output size \(-1, -1\) is not positive",
    ),
}


@pytest.mark.parametrize("case", TRANSPOSE_ERRORS)
def test_conv_transpose2d_errors(backend: Any, case: str) -> None:
    xs, ws, kw, exc, pattern = TRANSPOSE_ERRORS[case]
    with pytest.raises(exc, match=pattern):
        xpconv.conv_transpose2d(_arr(backend, xs), _arr(backend, ws), **kw)


def test_conv_transpose2d_outpad_below_dilation_is_accepted(backend: Any) -> None:
    """PyTorch's rule is 'smaller than stride OR dilation': dilation 3 allows output_padding 2."""
    y = xpconv.conv_transpose2d(
        _arr(backend, (1, 1, 2, 2)), _arr(backend, (1, 1, 2, 2)), dilation=3, output_padding=2
    )
    assert tuple(y.shape) == (1, 1, 7, 7)


# --------------------------------------------------------------------------- unfold / fold


def test_unfold_errors(backend: Any) -> None:
    x = _arr(backend, (1, 2, 4, 4))
    with pytest.raises(
        ValueError,
        match=r"unfold expects an input x.*at least one spatial axis, got shape \(4, 4\)",
    ):
        xpconv.unfold(_arr(backend, (4, 4)), 2)
    with pytest.raises(ValueError, match=r"kernel_size must be positive, got 0"):
        xpconv.unfold(x, 0)
    with pytest.raises(TypeError, match=r"kernel_size must be an int or a pair of ints, got 2\.0"):
        xpconv.unfold(x, 2.0)
    with pytest.raises(ValueError, match=r"kernel size 5x5.*larger than the padded input 4x4"):
        xpconv.unfold(x, 5)
    with pytest.raises(
        TypeError, match=r"padding must be an int or a pair of ints for unfold/fold, got 'same'"
    ):
        xpconv.unfold(x, 2, padding="same")
    with pytest.raises(ValueError, match=r"stride must be positive, got 0"):
        xpconv.unfold(x, 2, stride=0)
    with pytest.raises(TypeError, match=r"x must have a floating dtype"):
        xpconv.unfold(_arr(backend, (1, 2, 4, 4), "int32"), 2)


def test_fold_errors(backend: Any) -> None:
    cols = _arr(backend, (1, 8, 9))  # 2 channels of 2x2 windows over a 4x4 image
    assert tuple(xpconv.fold(cols, 4, 2).shape) == (1, 2, 4, 4)
    with pytest.raises(
        ValueError,
        match=r"cols.shape\[-1\] \(9\) must equal the number of windows 2x2 = 4 "
        r"for output_size \(3, 3\)",
    ):
        xpconv.fold(cols, 3, 2)
    with pytest.raises(
        ValueError, match=r"cols.shape\[-1\] \(8\) must equal the number of windows 3x3 = 9"
    ):
        xpconv.fold(_arr(backend, (1, 8, 8)), 4, 2)
    with pytest.raises(
        ValueError, match=r"cols.shape\[-2\] \(7\) must be divisible by the kernel volume 2x2 = 4"
    ):
        xpconv.fold(_arr(backend, (1, 7, 9)), 4, 2)
    with pytest.raises(
        ValueError, match=r"cols must be 3-D \(N, C\*K, L\) or 2-D.*got shape \(1, 1, 8, 9\)"
    ):
        xpconv.fold(_arr(backend, (1, 1, 8, 9)), 4, 2)
    with pytest.raises(ValueError, match=r"output_size must be positive, got 0"):
        xpconv.fold(cols, 0, 2)
    with pytest.raises(ValueError, match=r"kernel size 2x2.*larger than the padded input 1x1"):
        xpconv.fold(_arr(backend, (1, 8, 1)), 1, 2)
    with pytest.raises(
        TypeError, match=r"padding must be an int or a pair of ints for unfold/fold, got 'valid'"
    ):
        xpconv.fold(cols, 4, 2, padding="valid")
    with pytest.raises(TypeError, match=r"cols must have a floating dtype"):
        xpconv.fold(_arr(backend, (1, 8, 9), "int64"), 4, 2)


# --------------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "pattern"),
    [
        ((0, 4, 3), {}, ValueError, r"in_channels must be a positive int, got 0"),
        ((2, -1, 3), {}, ValueError, r"out_channels must be a positive int, got -1"),
        ((2.0, 4, 3), {}, TypeError, r"in_channels must be a positive int, got 2\.0"),
        ((3, 4, 3), {"groups": 2}, ValueError, r"in_channels \(3\) must be divisible by groups=2"),
        ((4, 3, 3), {"groups": 2}, ValueError, r"out_channels \(3\) must be divisible by groups=2"),
        ((2, 4, 3), {"groups": 0}, ValueError, r"groups must be a positive int, got 0"),
        ((2, 4, 0), {}, ValueError, r"kernel_size must be positive, got 0"),
        (
            (2, 4, (3, 3, 3)),
            {},
            ValueError,
            r"kernel_size must be an int or a pair of ints, got \(3, 3, 3\)",
        ),
        ((2, 4, 3), {"stride": 0}, ValueError, r"stride must be positive, got 0"),
        (
            (2, 4, 3),
            {"dilation": 1.5},
            TypeError,
            r"dilation must be an int or a pair of ints, got 1\.5",
        ),
        ((2, 4, 3), {"padding": -2}, ValueError, r"padding must be >= 0, got -2"),
        (
            (2, 4, 3),
            {"padding": "circular"},
            ValueError,
            r"padding must be an int, a pair of ints, 'same', 'valid' or 'full', got 'circular'",
        ),
        (
            (2, 4, 3),
            {"dtype": np.int32},
            TypeError,
            r"dtype must be a real or complex floating dtype, got .*int32",
        ),
        (
            (2, 4, 3),
            {"xp": object()},
            TypeError,
            r"xp must be an array API namespace such as numpy or torch, got <object",
        ),
    ],
)
def test_conv2d_layer_errors(args: tuple, kwargs: dict, exc: type, pattern: str) -> None:
    with pytest.raises(exc, match=pattern):
        xpconv.Conv2d(*args, **kwargs)


def test_conv2d_layer_call_errors(backend: Any) -> None:
    layer = xpconv.Conv2d(
        2, 3, 3, xp=backend.xp, device=backend.device, dtype=backend.dtype("float64"), rng=0
    )
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a forward\(\) call first"):
        layer.backward(_arr(backend, (1, 3, 2, 2)))
    with pytest.raises(RuntimeError, match=r"step\(\) needs a backward\(\) call first"):
        layer.step(0.1)
    with pytest.raises(
        ValueError,
        match=r"Conv2d expects 2 input channels on axis 1 of \(N, C, H, W\), got x of shape "
        r"\(1, 3, 4, 4\)",
    ):
        layer(_arr(backend, (1, 3, 4, 4)))
    with pytest.raises(TypeError, match=r"x has dtype float32 .* are float64: .*dtype='float32'"):
        layer(_arr(backend, (1, 2, 4, 4), "float32"))
    layer(_arr(backend, (1, 2, 4, 4)))
    with pytest.raises(
        ValueError,
        match=r"grad_output must have the conv2d output shape \(1, 3, 2, 2\), got \(1, 3, 3, 3\)",
    ):
        layer.backward(_arr(backend, (1, 3, 3, 3)))


def test_convolution_layer_errors(backend: Any) -> None:
    layer = xpconv.ConvolutionLayer(
        [2, 5, 5], [3, 3], 2, 1, xp=backend.xp, device=backend.device, rng=0
    )
    with pytest.raises(RuntimeError, match=r"backwardpass\(\) needs a forwardpass\(\) call first"):
        layer.backwardpass(0.1, None, _arr(backend, (1, 2, 3, 3)))
    with pytest.raises(
        ValueError, match=r"X must be 4-D \(n, depth, rows, cols\), got shape \(2, 5, 5\)"
    ):
        layer.forwardpass(_arr(backend, (2, 5, 5)))
    with pytest.raises(
        ValueError,
        match=re.escape("X must have per-sample shape at least (2, 5, 5), got (2, 4, 5)"),
    ):
        layer.forwardpass(_arr(backend, (1, 2, 4, 5)))
