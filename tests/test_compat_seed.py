"""xpconv.ConvolutionLayer behaves as the repaired original layer (tests/reference.py).

Same weights in, same outputs, returned deltas and SGD-updated weights/biases
out, over several steps; the seed's quirks included (float32 or uint8 data with
float64 weights gives float64, floor output size, top-left crop of a larger
input, ``np.random.seed`` reproducibility).
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
import pytest

import xpconv
from reference import SeedConvolutionLayer, assert_close, thin

# (in_channels, filter_size, numfilters, stride, X shape, X dtype)
SEED_CASES: dict[str, tuple[list[int], list[int], int, int, tuple[int, ...], str]] = {
    "stride1": ([3, 6, 6], [3, 3], 4, 1, (2, 3, 6, 6), "float64"),
    "stride2": ([2, 7, 7], [3, 3], 3, 2, (3, 2, 7, 7), "float64"),
    "nonsquare": ([2, 7, 5], [2, 3], 3, 1, (2, 2, 7, 5), "float64"),
    "nonsquare_stride2_floor": ([1, 8, 7], [3, 2], 2, 2, (2, 1, 8, 7), "float64"),
    "stride3_floor": ([2, 8, 9], [2, 2], 2, 3, (1, 2, 8, 9), "float64"),
    "batch1_1x1": ([3, 4, 5], [1, 1], 2, 1, (1, 3, 4, 5), "float64"),
    "float32_input": ([2, 6, 5], [3, 2], 3, 1, (2, 2, 6, 5), "float32"),
    "float32_input_stride2": ([2, 7, 6], [3, 3], 2, 2, (2, 2, 7, 6), "float32"),
    "uint8_input": ([1, 6, 6], [3, 3], 2, 1, (2, 1, 6, 6), "uint8"),
    "uint8_input_stride2": ([3, 5, 7], [2, 3], 2, 2, (2, 3, 5, 7), "uint8"),
    "larger_input": ([2, 5, 5], [3, 3], 2, 1, (2, 3, 6, 7), "float64"),
}


def _inputs(shape: tuple[int, ...], dtype: str, rng: np.random.Generator) -> np.ndarray:
    if dtype == "uint8":
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype(dtype)


def _close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-10) -> None:
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


# The seed's sigmoid is 1/(1+exp(-z)): it overflows (with a warning) on saturated
# inputs such as raw uint8 images. xpconv's does not warn; the values agree.
SEED_ERRSTATE = {"over": "ignore"}


def _pair_of_layers(case: str, seed: int = 0, **kwargs: Any) -> tuple[SeedConvolutionLayer, Any]:
    in_ch, filt, nf, stride, _, _ = SEED_CASES[case]
    np.random.seed(seed)  # noqa: NPY002  (the seed's documented way to fix its weights)
    original = SeedConvolutionLayer(in_ch, filt, nf, stride)
    np.random.seed(seed)  # noqa: NPY002
    ours = xpconv.ConvolutionLayer(in_ch, filt, nf, stride, **kwargs)
    return original, ours


def test_np_random_seed_gives_the_seeds_weights() -> None:
    original, ours = _pair_of_layers("stride2", seed=123)
    assert isinstance(ours.weights, np.ndarray)
    assert ours.weights.dtype == np.float64
    assert ours.biases.dtype == np.float64
    np.testing.assert_array_equal(ours.weights, original.weights)
    np.testing.assert_array_equal(ours.biases, original.biases)
    assert ours.weights.shape == (3, 2, 3, 3)
    assert (ours.out_row, ours.out_col) == (original.out_row, original.out_col)
    # N(0, 0.1): a large layer's sample standard deviation is close to 0.1.
    np.random.seed(1)  # noqa: NPY002
    big = xpconv.ConvolutionLayer([16, 9, 9], [5, 5], 32, 1)
    assert abs(float(np.std(big.weights)) - 0.1) < 0.005
    assert abs(float(np.mean(big.weights))) < 0.005


def test_rng_argument_is_reproducible() -> None:
    a = xpconv.ConvolutionLayer([2, 5, 5], [3, 3], 2, 1, rng=5)
    b = xpconv.ConvolutionLayer([2, 5, 5], [3, 3], 2, 1, rng=5)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.biases, b.biases)
    c = xpconv.ConvolutionLayer([2, 5, 5], [3, 3], 2, 1, rng=6)
    assert not np.array_equal(a.weights, c.weights)


@pytest.mark.parametrize("case", SEED_CASES)
def test_same_steps_as_the_seed_numpy(case: str) -> None:
    """Plain NumPy, as the seed was used: outputs, deltas and updates agree over 3 steps."""
    original, ours = _pair_of_layers(case, seed=sum(map(ord, case)))
    *_, x_shape, x_dtype = SEED_CASES[case]
    rng = np.random.default_rng(0)
    for step in range(3):
        x = _inputs(x_shape, x_dtype, rng)
        x_copy = x.copy()
        with np.errstate(**SEED_ERRSTATE):
            expected_out = original.forwardpass(x)
        out = ours.forwardpass(x)
        assert isinstance(out, np.ndarray)
        assert out.dtype == expected_out.dtype == np.float64
        _close(out, expected_out)

        delta = rng.standard_normal(expected_out.shape)
        lr = 0.1 * (step + 1)
        expected_delta = original.backwardpass(lr, x, delta)
        new_delta = ours.backwardpass(lr, x, delta)
        assert new_delta.dtype == expected_delta.dtype
        assert new_delta.shape == expected_delta.shape
        _close(new_delta, expected_delta)
        _close(ours.weights, original.weights)
        _close(ours.biases, original.biases)
        assert ours.weights.dtype == np.float64
        np.testing.assert_array_equal(x, x_copy)


def test_explicitly_assigned_weights() -> None:
    """'Given the same weights': assigning the seed's arrays gives the seed's results."""
    original = SeedConvolutionLayer([2, 6, 5], [3, 2], 3, 1)
    ours = xpconv.ConvolutionLayer([2, 6, 5], [3, 2], 3, 1, rng=99)
    ours.weights, ours.biases = original.weights.copy(), original.biases.copy()
    x = np.random.default_rng(2).standard_normal((2, 2, 6, 5))
    np.testing.assert_allclose(ours.forwardpass(x), original.forwardpass(x), rtol=1e-12)


@pytest.mark.parametrize(
    "case",
    thin(
        [
            "stride1",
            "nonsquare_stride2_floor",
            "float32_input",
            "uint8_input_stride2",
            "larger_input",
        ],
        ["nonsquare_stride2_floor", "uint8_input_stride2"],
    ),
)
def test_same_steps_as_the_seed_on_backend(backend: Any, case: str) -> None:
    """The layer on any backend (float64 parameters there) against the NumPy seed."""
    f64 = backend.dtype("float64")
    original, ours = _pair_of_layers(case, seed=3, xp=backend.xp, device=backend.device, dtype=f64)
    assert array_api_compat.array_namespace(ours.weights) is backend.xp
    np.testing.assert_array_equal(backend.to_numpy(ours.weights), original.weights)
    np.testing.assert_array_equal(backend.to_numpy(ours.biases), original.biases)
    *_, x_shape, x_dtype = SEED_CASES[case]
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = _inputs(x_shape, x_dtype, rng)
        xb = backend.asarray(x)
        out = ours.forwardpass(xb)
        with np.errstate(**SEED_ERRSTATE):
            expected_out = original.forwardpass(x)
        assert_close(backend, out, expected_out, like=xb, dtype=f64)
        delta = rng.standard_normal(expected_out.shape)
        new_delta = ours.backwardpass(0.2, xb, backend.asarray(delta))
        assert_close(backend, new_delta, original.backwardpass(0.2, x, delta), like=xb, dtype=f64)
        assert_close(backend, ours.weights, original.weights, like=xb, dtype=f64)
        assert_close(backend, ours.biases, original.biases, like=xb, dtype=f64)
        np.testing.assert_array_equal(backend.to_numpy(xb), x)


def test_backend_default_dtype(backend: Any) -> None:
    """Without dtype= the parameters take the namespace's default float (float32 on torch);
    the results then agree with the float64 seed to float32 accuracy."""
    original, ours = _pair_of_layers("stride2", seed=4, xp=backend.xp, device=backend.device)
    info = backend.xp.__array_namespace_info__()
    assert ours.weights.dtype == info.default_dtypes(device=backend.device)["real floating"]
    rtol = 1e-10 if ours.weights.dtype == backend.dtype("float64") else 1e-5
    x = np.random.default_rng(5).standard_normal(SEED_CASES["stride2"][4]).astype(np.float32)
    xb = backend.asarray(x)
    out = ours.forwardpass(xb)
    expected = original.forwardpass(x)
    np.testing.assert_allclose(backend.to_numpy(out), expected, rtol=rtol)
    delta = np.ones(expected.shape)
    new_delta = ours.backwardpass(0.1, xb, backend.asarray(delta, "float32"))
    expected_delta = original.backwardpass(0.1, x, delta)
    np.testing.assert_allclose(
        backend.to_numpy(new_delta),
        expected_delta,
        rtol=rtol,
        atol=rtol * np.max(np.abs(expected_delta)),
    )
    np.testing.assert_allclose(
        backend.to_numpy(ours.weights), original.weights, rtol=rtol, atol=rtol
    )
    assert ours.weights.dtype == info.default_dtypes(device=backend.device)["real floating"]


def test_matches_torch_sigmoid_conv_autograd() -> None:
    """The layer is sigmoid(conv2d(X, W) + b) with an SGD step on torch's gradients."""
    torch = pytest.importorskip("torch")
    layer = xpconv.ConvolutionLayer([2, 7, 6], [3, 2], 3, 2, rng=8)
    w = torch.from_numpy(layer.weights.copy()).requires_grad_()
    b = torch.from_numpy(layer.biases.copy()).requires_grad_()
    x = np.random.default_rng(9).standard_normal((2, 2, 7, 6))
    xt = torch.from_numpy(x).requires_grad_()
    out_t = torch.sigmoid(torch.nn.functional.conv2d(xt, w, b, stride=2))
    out = layer.forwardpass(x)
    _close(out, out_t.detach().numpy())
    delta = np.random.default_rng(10).standard_normal(out.shape)
    out_t.backward(torch.from_numpy(delta))
    _close(layer.backwardpass(0.3, x, delta), xt.grad.numpy())
    _close(layer.weights, (w - 0.3 * w.grad).detach().numpy())
    _close(layer.biases, (b - 0.3 * b.grad).detach().numpy())
