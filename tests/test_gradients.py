"""Finite-difference checks of the analytic gradients (float64, central differences).

The scalar loss is ``L = sum(R * tanh(conv2d(x, W, b)))`` with a random ``R``:
non-linear, so the step size matters and the check is not a tautology of
linearity. Its gradient w.r.t. the convolution output is ``R * (1 - tanh(y)**2)``,
which is what :func:`xpconv.conv2d_backward` receives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import xpconv
from reference import thin

H = 1e-5
RTOL = 1e-6

CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "plain": ((1, 2, 4, 4), (2, 2, 2, 3), {}),
    "stride_padding": ((2, 1, 5, 4), (2, 1, 3, 2), {"stride": (2, 1), "padding": 1}),
    "same_stride2_dilation": (
        (1, 2, 5, 5),
        (1, 2, 2, 2),
        {"padding": "same", "stride": 2, "dilation": 2},
    ),
    "groups": ((1, 4, 3, 4), (2, 2, 2, 2), {"groups": 2, "padding": (0, 1)}),
    "unbatched": ((2, 4, 3), (3, 2, 2, 1), {"padding": "valid"}),
}


def _loss(
    backend: Any, x: np.ndarray, w: np.ndarray, b: np.ndarray, r: np.ndarray, kw: dict
) -> float:
    y = xpconv.conv2d(backend.asarray(x), backend.asarray(w), backend.asarray(b), **kw)
    return float(np.sum(r * np.tanh(backend.to_numpy(y))))


def _numeric_grad(f: Any, a: np.ndarray) -> np.ndarray:
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        plus, minus = a.copy(), a.copy()
        plus[idx] += H
        minus[idx] -= H
        grad[idx] = (f(plus) - f(minus)) / (2 * H)
    return grad


def _close(analytic: np.ndarray, numeric: np.ndarray) -> None:
    scale = max(float(np.max(np.abs(numeric))), 1e-3)
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=RTOL * scale)


@pytest.mark.parametrize("case", thin(CASES, ["same_stride2_dilation", "groups"]))
def test_conv2d_backward_finite_differences(backend: Any, case: str) -> None:
    xs, ws, kw = CASES[case]
    rng = np.random.default_rng(sum(map(ord, case)))
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws) * 0.5, rng.standard_normal(ws[0])
    y = backend.to_numpy(
        xpconv.conv2d(backend.asarray(x), backend.asarray(w), backend.asarray(b), **kw)
    )
    r = rng.standard_normal(y.shape)
    gy = r * (1 - np.tanh(y) ** 2)
    grads = xpconv.conv2d_backward(
        backend.asarray(gy), backend.asarray(x), backend.asarray(w), **kw
    )

    _close(
        backend.to_numpy(grads.input), _numeric_grad(lambda a: _loss(backend, a, w, b, r, kw), x)
    )
    _close(
        backend.to_numpy(grads.weight), _numeric_grad(lambda a: _loss(backend, x, a, b, r, kw), w)
    )
    _close(backend.to_numpy(grads.bias), _numeric_grad(lambda a: _loss(backend, x, w, a, r, kw), b))


@pytest.mark.parametrize("case", thin(["stride_padding", "groups"], ["groups"]))
def test_conv2d_backward_directional(backend: Any, case: str) -> None:
    """<grad, v> equals the directional derivative for random directions v (a larger layer)."""
    xs, ws, kw = CASES[case]
    xs = (3, xs[1], xs[2] + 4, xs[3] + 5)
    ws = (ws[0] * 3, *ws[1:])
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal(xs), rng.standard_normal(ws) * 0.5, rng.standard_normal(ws[0])
    y = backend.to_numpy(
        xpconv.conv2d(backend.asarray(x), backend.asarray(w), backend.asarray(b), **kw)
    )
    r = rng.standard_normal(y.shape)
    grads = xpconv.conv2d_backward(
        backend.asarray(r * (1 - np.tanh(y) ** 2)), backend.asarray(x), backend.asarray(w), **kw
    )
    for _ in range(3):
        vx, vw, vb = rng.standard_normal(xs), rng.standard_normal(ws), rng.standard_normal(ws[0])
        numeric = (
            _loss(backend, x + H * vx, w + H * vw, b + H * vb, r, kw)
            - _loss(backend, x - H * vx, w - H * vw, b - H * vb, r, kw)
        ) / (2 * H)
        analytic = (
            np.sum(backend.to_numpy(grads.input) * vx)
            + np.sum(backend.to_numpy(grads.weight) * vw)
            + np.sum(backend.to_numpy(grads.bias) * vb)
        )
        assert analytic == pytest.approx(numeric, rel=RTOL)


def test_conv_transpose2d_adjoint_of_conv2d(backend: Any) -> None:
    """The adjoint of conv_transpose2d is conv2d: <conv_transpose2d(g), x> == <g, conv2d(x)>."""
    rng = np.random.default_rng(3)
    kw = {"stride": 2, "padding": 1, "output_padding": 1, "dilation": 1, "groups": 1}
    g, w = rng.standard_normal((2, 3, 3, 4)), rng.standard_normal((3, 2, 3, 3))
    y = backend.to_numpy(xpconv.conv_transpose2d(backend.asarray(g), backend.asarray(w), **kw))
    x = rng.standard_normal(y.shape)
    conv = backend.to_numpy(
        xpconv.conv2d(backend.asarray(x), backend.asarray(w), stride=2, padding=1)
    )
    assert conv.shape == g.shape
    assert float(np.sum(y * x)) == pytest.approx(float(np.sum(g * conv)), rel=1e-12)


def test_seed_layer_delta_finite_differences(backend: Any) -> None:
    """ConvolutionLayer.backwardpass returns dL/dX of L = sum(delta * forwardpass(X)),
    and its SGD step moves the weights by lr * dL/dW (sigmoid included)."""
    rng = np.random.default_rng(11)
    f64 = backend.dtype("float64")
    layer = xpconv.ConvolutionLayer(
        [2, 5, 4], [2, 3], 2, 2, xp=backend.xp, device=backend.device, dtype=f64, rng=5
    )
    w0, b0 = backend.to_numpy(layer.weights), backend.to_numpy(layer.biases)
    x = rng.standard_normal((2, 2, 5, 4))
    out = backend.to_numpy(layer.forwardpass(backend.asarray(x)))
    delta = rng.standard_normal(out.shape)
    lr = 0.5
    new_delta = backend.to_numpy(layer.backwardpass(lr, backend.asarray(x), backend.asarray(delta)))

    def loss(xv: np.ndarray, wv: np.ndarray, bv: np.ndarray) -> float:
        probe = xpconv.ConvolutionLayer(
            [2, 5, 4], [2, 3], 2, 2, xp=backend.xp, device=backend.device, dtype=f64, rng=0
        )
        probe.weights, probe.biases = backend.asarray(wv), backend.asarray(bv)
        return float(np.sum(delta * backend.to_numpy(probe.forwardpass(backend.asarray(xv)))))

    _close(new_delta, _numeric_grad(lambda a: loss(a, w0, b0), x))
    _close((w0 - backend.to_numpy(layer.weights)) / lr, _numeric_grad(lambda a: loss(x, a, b0), w0))
    _close((b0 - backend.to_numpy(layer.biases)) / lr, _numeric_grad(lambda a: loss(x, w0, a), b0))
