"""Results stay on the input's device; arrays on different devices are rejected.

array-api-strict provides several fake devices (``Device("device1")``...), and
refuses to combine arrays from different ones, so it checks that xpconv creates
every temporary on the input's device. These tests run whenever the
array_api_strict backend is selected (see XPCONV_TEST_BACKENDS).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import reference as ref
import xpconv
from xpconv._geometry import conv_geometry
from xpconv._im2col import col2im

xps = pytest.importorskip("array_api_strict")

_requested = os.environ.get("XPCONV_TEST_BACKENDS", "").strip()
pytestmark = pytest.mark.skipif(
    bool(_requested) and "array_api_strict" not in _requested.split(","),
    reason="array_api_strict is not among XPCONV_TEST_BACKENDS",
)

DEV1 = xps.Device("device1")
DEV2 = xps.Device("device2")


def _on(a: np.ndarray, device: Any, dtype: Any = None) -> Any:
    return xps.asarray(np.asarray(a), device=device, dtype=dtype)


def _check(result: Any, expected: np.ndarray, device: Any, rtol: float = 1e-10) -> None:
    assert result.device == device
    assert result.dtype == xps.float64
    assert tuple(result.shape) == expected.shape
    values = np.asarray(result.to_device(xps.Device("CPU_DEVICE")))
    np.testing.assert_allclose(values, expected, rtol=rtol, atol=rtol * np.max(np.abs(expected)))


def _data(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize("device", [DEV1, DEV2])
def test_functions_keep_the_device(device: Any) -> None:
    x, w, b = _data((2, 4, 6, 5), 0), _data((6, 2, 3, 2), 1), _data((6,), 2)
    kw = {"stride": 2, "padding": "same", "dilation": (1, 2), "groups": 2}
    xd, wd, bd = _on(x, device), _on(w, device), _on(b, device)
    y = xpconv.conv2d(xd, wd, bd, **kw)
    _check(y, ref.conv2d(x, w, b, **kw), device)

    gy = _data(tuple(y.shape), 3)
    grads = xpconv.conv2d_backward(_on(gy, device), xd, wd, **kw)
    gx, gw, gb = ref.conv2d_backward(gy, x, w, **kw)
    _check(grads.input, gx, device)
    _check(grads.weight, gw, device)
    _check(grads.bias, gb, device)

    wt = _data((4, 3, 2, 3), 4)
    tkw = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}
    _check(
        xpconv.conv_transpose2d(xd, _on(wt, device), _on(b, device), **tkw),
        ref.conv_transpose2d(x, wt, b, **tkw),
        device,
    )

    cols = xpconv.unfold(xd, (2, 3), stride=(1, 2), padding=1)
    expected_cols = ref.unfold(x, (2, 3), stride=(1, 2), padding=1)
    _check(cols, expected_cols, device)
    _check(
        xpconv.fold(cols, (6, 5), (2, 3), stride=(1, 2), padding=1),
        ref.fold(expected_cols, (6, 5), (2, 3), stride=(1, 2), padding=1),
        device,
    )

    # Unbatched input.
    _check(xpconv.conv2d(xd[0, ...], wd, bd, **kw), ref.conv2d(x[0], w, b, **kw), device)


@pytest.mark.parametrize("strategy", ["slices", "scatter"])
def test_col2im_keeps_the_device(strategy: str) -> None:
    geom = conv_geometry((2, 3, 5, 6), (3, 3, 3, 2), stride=2, padding=1, dilation=(1, 2))
    c = _data((2, 3 * 6, geom.out_volume), 5)
    out = col2im(_on(c, DEV1), geom, xps, strategy=strategy)
    _check(out, ref.fold(c, (5, 6), (3, 2), stride=2, padding=1, dilation=(1, 2)), DEV1)


def test_conv2d_layer_on_a_device() -> None:
    layer = xpconv.Conv2d(3, 4, 3, stride=2, padding="same", xp=xps, device=DEV1, rng=0)
    assert layer.weight.device == DEV1
    assert layer.bias.device == DEV1
    on_cpu = xpconv.Conv2d(3, 4, 3, rng=0)
    np.testing.assert_array_equal(
        np.asarray(layer.weight.to_device(xps.Device("CPU_DEVICE"))), on_cpu.weight
    )
    x = _data((2, 3, 5, 6), 1)
    y = layer(_on(x, DEV1))
    _check(y, ref.conv2d(x, on_cpu.weight, on_cpu.bias, stride=2, padding="same"), DEV1)
    gx = layer.backward(_on(np.ones(tuple(y.shape)), DEV1))
    assert gx.device == DEV1
    assert layer.grad_weight.device == DEV1
    assert layer.grad_bias.device == DEV1
    layer.step(0.1)
    assert layer.weight.device == DEV1
    assert layer.bias.device == DEV1
    with pytest.raises(
        ValueError,
        match=r"arrays must be on one device, got x on .*device2.* and weight on .*device1",
    ):
        layer(_on(x, DEV2))


def test_default_dtype_follows_the_device() -> None:
    """dtype=None is the default float *of the device*: float32 where float64 is missing."""
    no_f64 = xps.Device("no_float64")
    layer = xpconv.Conv2d(2, 3, 3, xp=xps, device=no_f64, rng=0)
    assert layer.weight.dtype == xps.float32
    assert layer.weight.device == no_f64
    y = layer(xps.ones((1, 2, 4, 4), dtype=xps.float32, device=no_f64))
    assert y.device == no_f64
    assert y.dtype == xps.float32


def test_seed_layer_on_a_device() -> None:
    np.random.seed(0)  # noqa: NPY002
    original = ref.SeedConvolutionLayer([2, 6, 5], [3, 2], 3, 2)
    np.random.seed(0)  # noqa: NPY002
    ours = xpconv.ConvolutionLayer([2, 6, 5], [3, 2], 3, 2, xp=xps, device=DEV1)
    assert ours.weights.device == DEV1
    x = _data((2, 2, 6, 5), 6)
    out = ours.forwardpass(_on(x, DEV1))
    _check(out, original.forwardpass(x), DEV1)
    delta = _data(tuple(out.shape), 7)
    new_delta = ours.backwardpass(0.1, _on(x, DEV1), _on(delta, DEV1))
    _check(new_delta, original.backwardpass(0.1, x, delta), DEV1)
    _check(ours.weights, original.weights, DEV1)
    _check(ours.biases, original.biases, DEV1)
    with pytest.raises(ValueError, match=r"arrays must be on one device"):
        ours.forwardpass(_on(x, DEV2))


MIXED = [
    (
        "conv2d x/weight",
        lambda a, b: xpconv.conv2d(a((1, 2, 4, 4)), b((3, 2, 2, 2))),
        r"x on .*device1.* and weight on .*device2",
    ),
    (
        "conv2d bias",
        lambda a, b: xpconv.conv2d(a((1, 2, 4, 4)), a((3, 2, 2, 2)), b((3,))),
        r"x on .*device1.* and bias on .*device2",
    ),
    (
        "backward grad_output",
        lambda a, b: xpconv.conv2d_backward(b((1, 3, 3, 3)), a((1, 2, 4, 4)), a((3, 2, 2, 2))),
        r"grad_output on .*device2.* and x on .*device1",
    ),
    (
        "backward weight",
        lambda a, b: xpconv.conv2d_backward(a((1, 3, 3, 3)), a((1, 2, 4, 4)), b((3, 2, 2, 2))),
        r"and weight on .*device2",
    ),
    (
        "transpose weight",
        lambda a, b: xpconv.conv_transpose2d(a((1, 2, 3, 3)), b((2, 3, 2, 2))),
        r"x on .*device1.* and weight on .*device2",
    ),
    (
        "transpose bias",
        lambda a, b: xpconv.conv_transpose2d(a((1, 2, 3, 3)), a((2, 3, 2, 2)), b((3,))),
        r"and bias on .*device2",
    ),
]


@pytest.mark.parametrize(("name", "call", "pattern"), MIXED, ids=[m[0] for m in MIXED])
def test_mixed_devices_raise(name: str, call: Any, pattern: str) -> None:
    def on1(shape: tuple[int, ...]) -> Any:
        return xps.ones(shape, dtype=xps.float64, device=DEV1)

    def on2(shape: tuple[int, ...]) -> Any:
        return xps.ones(shape, dtype=xps.float64, device=DEV2)

    with pytest.raises(ValueError, match=r"arrays must be on one device, got .*" + pattern):
        call(on1, on2)
