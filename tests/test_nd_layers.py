"""Conv1d, Conv3d and ConvTranspose1d/2d/3d against torch.nn's modules, autograd and an SGD step."""

from __future__ import annotations

import math
import re
import warnings
from typing import Any

import array_api_compat
import numpy as np
import pytest

import reference as ref
import xpconv
from reference import assert_close, thin

try:
    import torch
except ImportError:  # the layer tests that need no oracle still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch.nn is the oracle")

# (layer class, positional arguments, keywords, input shape)
LAYER_CASES: dict[str, tuple[str, tuple[Any, ...], dict[str, Any], tuple[int, ...]]] = {
    "conv1d": (
        "Conv1d",
        (4, 6, 3),
        {"stride": 2, "padding": 1, "dilation": 2, "groups": 2},
        (2, 4, 9),
    ),
    "conv1d_same_s2": ("Conv1d", (2, 3, 4), {"stride": 2, "padding": "same"}, (2, 2, 7)),
    "conv1d_depthwise_nobias": (
        "Conv1d",
        (3, 3, 2),
        {"groups": 3, "padding": "valid", "bias": False},
        (2, 3, 5),
    ),
    "conv3d": (
        "Conv3d",
        (2, 4, (2, 3, 1)),
        {"stride": (1, 2, 1), "padding": (1, 0, 1)},
        (2, 2, 4, 5, 3),
    ),
    "conv3d_same_depthwise": (
        "Conv3d",
        (3, 3, 2),
        {"groups": 3, "padding": "same"},
        (1, 3, 4, 3, 5),
    ),
    "conv3d_unbatched": ("Conv3d", (2, 2, 2), {"dilation": (1, 2, 1)}, (2, 3, 4, 3)),
    "convt1d": (
        "ConvTranspose1d",
        (4, 6, 3),
        {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2},
        (2, 4, 5),
    ),
    "convt2d": (
        "ConvTranspose2d",
        (4, 6, (2, 3)),
        {
            "stride": (2, 1),
            "padding": (1, 0),
            "output_padding": (1, 0),
            "groups": 2,
            "dilation": (1, 2),
        },
        (2, 4, 3, 4),
    ),
    "convt2d_nobias": (
        "ConvTranspose2d",
        (2, 3, 3),
        {"stride": 3, "output_padding": 2, "bias": False},
        (1, 2, 2, 3),
    ),
    "convt3d": ("ConvTranspose3d", (2, 3, 2), {"stride": 2, "output_padding": 1}, (1, 2, 2, 3, 2)),
    "convt3d_dilation_nobias": (
        "ConvTranspose3d",
        (2, 2, 2),
        {"dilation": 2, "padding": (0, 1, 0), "output_padding": 1, "bias": False},
        (1, 2, 2, 3, 2),
    ),
    "convt3d_unbatched_groups": (
        "ConvTranspose3d",
        (2, 2, (1, 2, 2)),
        {"stride": (1, 2, 1), "groups": 2},
        (2, 2, 3, 2),
    ),
}

SLOW_LAYERS = ["conv1d_same_s2", "convt3d"]


def _rank(name: str) -> int:
    return int(name[-2])


def _layer(backend: Any, case: str, dtype: str = "float64", rng: Any = 0) -> Any:
    cls, args, kwargs, _ = LAYER_CASES[case]
    return getattr(xpconv, cls)(
        *args, **kwargs, xp=backend.xp, device=backend.device, dtype=backend.dtype(dtype), rng=rng
    )


def _torch_twin(case: str) -> tuple[Any, list[int]]:
    """torch.nn's module of the case, and the F.pad amounts for 'same' at stride > 1.

    torch.nn refuses padding='same' with a stride: the twin gets padding 0 and
    an input padded by the TensorFlow/JAX rule (the odd zero at the end).
    """
    cls, args, kwargs, x_shape = LAYER_CASES[case]
    rank = _rank(cls)
    pad: list[int] = []
    t_kwargs = dict(kwargs)
    stride = ref._ntuple(kwargs.get("stride", 1), rank)
    if kwargs.get("padding") == "same" and stride != (1,) * rank:
        kernel = ref._ntuple(args[2], rank)
        pairs = ref.padding_pairs(
            "same",
            x_shape[-rank:],
            kernel,
            stride,
            ref._ntuple(kwargs.get("dilation", 1), rank),
        )
        pad = [v for pair in reversed(pairs) for v in pair]
        t_kwargs["padding"] = 0
    return getattr(torch.nn, cls)(*args, **t_kwargs, dtype=torch.float64), pad


def _fan_in(case: str) -> int:
    """PyTorch's fan_in: weight.shape[1] * prod(kernel).

    That is in_channels/groups * prod(kernel) for a convolution and
    out_channels/groups * prod(kernel) for a transposed one.
    """
    cls, (c_in, c_out, k), kwargs, _ = LAYER_CASES[case]
    kernel = ref._ntuple(k, _rank(cls))
    channels = c_out if cls.startswith("ConvTranspose") else c_in
    return channels // kwargs.get("groups", 1) * math.prod(kernel)


def _weight_shape(case: str) -> tuple[int, ...]:
    cls, (c_in, c_out, k), kwargs, _ = LAYER_CASES[case]
    g = kwargs.get("groups", 1)
    kernel = ref._ntuple(k, _rank(cls))
    if cls.startswith("ConvTranspose"):
        return (c_in, c_out // g, *kernel)
    return (c_out, c_in // g, *kernel)


# --------------------------------------------------------------------------- parameters


@needs_torch
@pytest.mark.parametrize("case", thin(LAYER_CASES, SLOW_LAYERS))
def test_shapes_and_init_bounds(backend: Any, case: str) -> None:
    _, (_, c_out, _), kwargs, _ = LAYER_CASES[case]
    layer = _layer(backend, case)
    native, _ = _torch_twin(case)
    assert tuple(layer.weight.shape) == _weight_shape(case) == tuple(native.weight.shape)
    assert array_api_compat.array_namespace(layer.weight) is backend.xp
    assert layer.weight.dtype == backend.dtype("float64")
    # The fan_in xpconv must use is the one torch's initialisation computes.
    torch_fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(native.weight)
    assert _fan_in(case) == torch_fan_in
    bound = 1 / math.sqrt(_fan_in(case))
    assert np.all(np.abs(backend.to_numpy(layer.weight)) <= bound)
    if kwargs.get("bias", True):
        assert tuple(layer.bias.shape) == (c_out,)
        assert np.all(np.abs(backend.to_numpy(layer.bias)) <= bound)
    else:
        assert layer.bias is None
    assert layer.grad_weight is None
    assert layer.grad_bias is None
    assert len(layer.parameters()) == (2 if kwargs.get("bias", True) else 1)


# Layers with hundreds of weights: the largest |w| comes within 3% of the bound.
BIG_LAYERS = [
    ("Conv1d", (16, 64, 5), {"groups": 2}, 8 * 5),
    ("Conv3d", (8, 16, 3), {"groups": 4}, 2 * 27),
    ("ConvTranspose1d", (8, 64, 5), {"groups": 2}, 32 * 5),
    ("ConvTranspose2d", (6, 32, (3, 2)), {"groups": 2}, 16 * 6),
    ("ConvTranspose3d", (4, 12, 3), {"groups": 2}, 6 * 27),
]


@needs_torch
@pytest.mark.parametrize(("cls", "args", "kwargs", "fan_in"), BIG_LAYERS, ids=str)
def test_init_fills_torchs_interval(cls: str, args: tuple, kwargs: dict, fan_in: int) -> None:
    """U(-1/sqrt(fan_in), +): the same interval as torch's, filled, never exceeded."""
    ours = getattr(xpconv, cls)(*args, **kwargs, rng=0)
    torch.manual_seed(0)
    native = getattr(torch.nn, cls)(*args, **kwargs)
    bound = 1 / math.sqrt(fan_in)
    for w in (ours.weight, native.weight.detach().numpy()):
        assert 0.97 * bound < np.max(np.abs(w)) <= bound
    assert np.max(np.abs(ours.bias)) <= bound
    assert np.max(np.abs(native.bias.detach().numpy())) <= bound
    # No sign bias: the mean is within four standard errors of 0.
    assert abs(ours.weight.mean() / bound) < 4 * math.sqrt(1 / 3 / ours.weight.size)


@pytest.mark.parametrize("case", ["conv1d", "conv3d", "convt1d", "convt3d"])
def test_same_weights_on_every_backend(backend: Any, case: str) -> None:
    """The seed fixes the weights whatever the backend (the NumPy layer is the reference)."""
    cls, args, kwargs, _ = LAYER_CASES[case]
    on_numpy = getattr(xpconv, cls)(*args, **kwargs, rng=7)
    here = _layer(backend, case, rng=7)
    np.testing.assert_array_equal(backend.to_numpy(here.weight), on_numpy.weight)
    np.testing.assert_array_equal(backend.to_numpy(here.bias), on_numpy.bias)
    other = _layer(backend, case, rng=8)
    assert not np.array_equal(backend.to_numpy(other.weight), on_numpy.weight)


@pytest.mark.parametrize("cls", ["Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose3d"])
def test_default_dtype_is_namespace_default(backend: Any, cls: str) -> None:
    layer = getattr(xpconv, cls)(2, 2, 2, xp=backend.xp, device=backend.device, rng=0)
    info = backend.xp.__array_namespace_info__()
    expected = info.default_dtypes(device=backend.device)["real floating"]
    assert layer.weight.dtype == expected
    assert layer.bias.dtype == expected


# --------------------------------------------------------------------------- against torch.nn


@needs_torch
@pytest.mark.parametrize("dtype", thin(["float64", "float32"], ["float64"]))
@pytest.mark.parametrize("case", thin(LAYER_CASES, SLOW_LAYERS))
def test_forward_backward_step_match_torch(backend: Any, case: str, dtype: str) -> None:
    _, _, kwargs, x_shape = LAYER_CASES[case]
    layer = _layer(backend, case, dtype=dtype, rng=3)
    native, pad = _torch_twin(case)
    has_bias = kwargs.get("bias", True)
    with torch.no_grad():
        native.weight.copy_(torch.from_numpy(backend.to_numpy(layer.weight).astype(np.float64)))
        if has_bias:
            native.bias.copy_(torch.from_numpy(backend.to_numpy(layer.bias).astype(np.float64)))

    rng = np.random.default_rng(9)
    lr = 0.05
    for _ in range(2):  # two steps: the second forward sees the updated parameters
        x = rng.standard_normal(x_shape).astype(dtype).astype(np.float64)
        xt = torch.from_numpy(x).requires_grad_()
        with warnings.catch_warnings():  # torch copies the input for 'same' with even kernels
            warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)
            yt = native(torch.nn.functional.pad(xt, pad) if pad else xt)
        g = rng.standard_normal(tuple(yt.shape)).astype(dtype).astype(np.float64)
        yt.backward(torch.from_numpy(g))

        xb = backend.asarray(x, dtype)
        y = layer(xb)
        assert_close(backend, y, yt.detach().numpy(), like=xb)
        gx = layer.backward(backend.asarray(g, dtype))
        assert_close(backend, gx, xt.grad.numpy(), like=xb)
        assert_close(backend, layer.grad_weight, native.weight.grad.numpy(), like=xb)
        if has_bias:
            assert_close(backend, layer.grad_bias, native.bias.grad.numpy(), like=xb)
        else:
            assert layer.grad_bias is None

        layer.step(lr)
        with torch.no_grad():
            for param in native.parameters():
                param.sub_(lr * param.grad)
                param.grad = None
        assert_close(backend, layer.weight, native.weight.detach().numpy(), like=xb)
        if has_bias:
            assert_close(backend, layer.bias, native.bias.detach().numpy(), like=xb)
        np.testing.assert_array_equal(backend.to_numpy(xb), x)  # input untouched


@needs_torch
def test_backward_uses_the_last_forward_input(backend: Any) -> None:
    layer = _layer(backend, "convt3d")
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((1, 2, 2, 3, 2)), rng.standard_normal((1, 2, 2, 3, 2))
    layer(backend.asarray(x1))
    y = layer(backend.asarray(x2))
    g = rng.standard_normal(tuple(y.shape))
    layer.backward(backend.asarray(g))
    native, _ = _torch_twin("convt3d")
    with torch.no_grad():
        native.weight.copy_(torch.tensor(backend.to_numpy(layer.weight)))
    native(torch.from_numpy(x2)).backward(torch.from_numpy(g))
    assert_close(backend, layer.grad_weight, native.weight.grad.numpy(), like=layer.weight)


# --------------------------------------------------------------------------- errors and repr

CONSTRUCTOR_ERRORS = [
    (
        "Conv1d",
        (2, 4, (3, 3)),
        {},
        ValueError,
        r"kernel_size must be an int or a tuple of 1 ints?, got \(3, 3\)",
    ),
    (
        "Conv3d",
        (2, 4, (3, 3)),
        {},
        ValueError,
        r"kernel_size must be an int or a tuple of 3 ints, got \(3, 3\)",
    ),
    (
        "Conv3d",
        (2, 4, 3),
        {"stride": (1, 2)},
        ValueError,
        r"stride must be an int or a tuple of 3 ints, got \(1, 2\)",
    ),
    (
        "Conv3d",
        (2, 4, 3),
        {"dilation": (1, 1, 1, 1)},
        ValueError,
        r"dilation must be an int or a tuple of 3 ints, got \(1, 1, 1, 1\)",
    ),
    (
        "Conv3d",
        (2, 4, 3),
        {"padding": (1, 1)},
        ValueError,
        r"padding must be an int or a tuple of 3 ints, got \(1, 1\)",
    ),
    (
        "Conv3d",
        (2, 4, 3),
        {"padding": "circular"},
        ValueError,
        r"padding must be an int, a tuple of 3 ints, 'same', 'valid' or 'full', got 'circular'",
    ),
    (
        "Conv1d",
        (3, 4, 3),
        {"groups": 2},
        ValueError,
        r"in_channels \(3\) must be divisible by groups=2",
    ),
    (
        "Conv3d",
        (4, 3, 3),
        {"groups": 2},
        ValueError,
        r"out_channels \(3\) must be divisible by groups=2",
    ),
    ("Conv1d", (0, 4, 3), {}, ValueError, r"in_channels must be a positive int, got 0"),
    ("Conv1d", (2, 4, 3), {"bias": 1}, TypeError, r"bias must be True or False, got 1"),
    (
        "Conv3d",
        (2, 4, 3),
        {"dtype": np.int64},
        TypeError,
        r"dtype must be a real or complex floating dtype",
    ),
    ("ConvTranspose3d", (2, 4, 0), {}, ValueError, r"kernel_size must be positive, got 0"),
    (
        "ConvTranspose3d",
        (2, 4, 3),
        {"padding": "same"},
        TypeError,
        r"padding must be an int or a tuple of ints for ConvTranspose3d, got 'same'",
    ),
    (
        "ConvTranspose1d",
        (2, 4, 3),
        {"output_padding": (1, 1)},
        ValueError,
        r"output_padding must be an int or a tuple of 1 ints?, got \(1, 1\)",
    ),
    (
        "ConvTranspose2d",
        (2, 4, (3, 3, 3)),
        {},
        ValueError,
        r"kernel_size must be an int or a pair of ints, got \(3, 3, 3\)",
    ),
    (
        "ConvTranspose3d",
        (2, 4, 3),
        {"groups": 3},
        ValueError,
        r"in_channels \(2\) must be divisible by groups=3",
    ),
    (
        "ConvTranspose3d",
        (2, 4, 3),
        {"padding": (1, 1, 1, 1)},
        ValueError,
        r"padding must be an int or a tuple of 3 ints, got \(1, 1, 1, 1\)",
    ),
]


@pytest.mark.parametrize(
    ("cls", "args", "kwargs", "exc", "pattern"),
    CONSTRUCTOR_ERRORS,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CONSTRUCTOR_ERRORS)],
)
def test_constructor_errors(cls: str, args: tuple, kwargs: dict, exc: type, pattern: str) -> None:
    with pytest.raises(exc, match=f"^{pattern}"):
        getattr(xpconv, cls)(*args, **kwargs, rng=0)


def test_forward_errors(backend: Any) -> None:
    """A layer checks its input with the messages of its functional twin."""
    x4 = backend.asarray(np.ones((1, 2, 5, 5)))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "conv1d expects a 3-D (N, C, L) or 2-D (C, L) input x, got shape (1, 2, 5, 5)"
        ),
    ):
        _layer(backend, "conv1d_same_s2")(x4)
    x3 = backend.asarray(np.ones((2, 3, 3)))
    with pytest.raises(
        ValueError,
        match=re.escape(
            "conv_transpose3d expects a 5-D (N, C, D, H, W) or 4-D (C, D, H, W) input x, "
            "got shape (2, 3, 3)"
        ),
    ):
        _layer(backend, "convt3d")(x3)
    # output_padding is checked against stride and dilation when the layer runs, as in torch.
    layer = xpconv.ConvTranspose1d(
        2,
        2,
        3,
        stride=2,
        output_padding=2,
        xp=backend.xp,
        device=backend.device,
        dtype=backend.dtype("float64"),
        rng=0,
    )
    with pytest.raises(
        ValueError, match="output_padding must be smaller than either stride or dilation"
    ):
        layer(backend.asarray(np.ones((1, 2, 4))))


@pytest.mark.parametrize("case", ["conv1d", "convt3d"])
def test_backward_and_step_need_their_predecessor(case: str) -> None:
    cls, args, kwargs, x_shape = LAYER_CASES[case]
    layer = getattr(xpconv, cls)(*args, **kwargs, rng=0)
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a forward\(\) call first"):
        layer.backward(np.ones(x_shape))
    with pytest.raises(RuntimeError, match=r"step\(\) needs a backward\(\) call first"):
        layer.step(0.1)


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (
            lambda: xpconv.Conv1d(2, 4, 3, stride=2, padding="same", bias=False, rng=0),
            "Conv1d(2, 4, kernel_size=(3,), stride=(2,), padding=same, dilation=(1,), "
            "groups=1, bias=False, dtype=float64)",
        ),
        (
            lambda: xpconv.Conv3d(2, 4, (3, 1, 2), padding=(1, 0, 1), groups=2, rng=0),
            "Conv3d(2, 4, kernel_size=(3, 1, 2), stride=(1, 1, 1), padding=(1, 0, 1), "
            "dilation=(1, 1, 1), groups=2, bias=True, dtype=float64)",
        ),
        (
            lambda: xpconv.ConvTranspose1d(2, 4, 3, stride=2, output_padding=1, rng=0),
            "ConvTranspose1d(2, 4, kernel_size=(3,), stride=(2,), padding=(0,), "
            "output_padding=(1,), dilation=(1,), groups=1, bias=True, dtype=float64)",
        ),
        (
            lambda: xpconv.ConvTranspose2d(2, 4, (3, 2), padding=1, dilation=(2, 1), rng=0),
            "ConvTranspose2d(2, 4, kernel_size=(3, 2), stride=(1, 1), padding=(1, 1), "
            "output_padding=(0, 0), dilation=(2, 1), groups=1, bias=True, dtype=float64)",
        ),
        (
            lambda: xpconv.ConvTranspose3d(
                4, 2, 2, stride=2, output_padding=(1, 0, 1), groups=2, rng=0
            ),
            "ConvTranspose3d(4, 2, kernel_size=(2, 2, 2), stride=(2, 2, 2), padding=(0, 0, 0), "
            "output_padding=(1, 0, 1), dilation=(1, 1, 1), groups=2, bias=True, dtype=float64)",
        ),
    ],
    ids=["Conv1d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"],
)
def test_repr(layer: Any, expected: str) -> None:
    assert repr(layer()) == expected
