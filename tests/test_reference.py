"""The oracles of tests/reference.py, checked themselves.

D = 1, 2, 3: the NumPy loops against PyTorch (forward, autograd, transposed)
and against unfoldNd (unfold, fold). D = 4, which neither library has: a 4-D
convolution is the sum over its first kernel axis of 3-D torch convolutions of
input slices, and the backward and transposed loops are checked by the adjoint
identities and by finite differences. Shapes are tiny: the loops are Python.
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

import numpy as np
import pytest

import reference as ref

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_UNFOLDND = HAVE_TORCH and importlib.util.find_spec("unfoldNd") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
needs_unfoldnd = pytest.mark.skipif(not HAVE_UNFOLDND, reason="unfoldNd is not installed")

Case = tuple[tuple[int, ...], Any, dict[str, Any]]

# (input shape, weight shape, keyword arguments), D = 1, 2, 3.
CONV_CASES: dict[str, Case] = {
    "1d_plain": ((2, 3, 7), (4, 3, 3), {}),
    "1d_stride_dil_pad": ((1, 2, 9), (3, 2, 2), {"stride": 2, "dilation": 2, "padding": 1}),
    "1d_same_s2": ((2, 2, 8), (2, 2, 3), {"padding": "same", "stride": 2}),
    "1d_same_s3_even": ((1, 1, 7), (2, 1, 4), {"padding": "same", "stride": 3}),
    "1d_same_s1_even": ((1, 3, 5), (3, 1, 2), {"padding": "same", "groups": 3}),
    "1d_valid_groups": ((2, 4, 6), (6, 2, 3), {"padding": "valid", "groups": 2}),
    "1d_asymmetric": ((1, 2, 6), (2, 2, 3), {"padding": ((2, 0),)}),
    "1d_unbatched": ((2, 6), (3, 2, 2), {"padding": 1}),
    "2d_mixed": (
        (2, 2, 6, 5),
        (3, 2, 3, 2),
        {"stride": (2, 1), "padding": (1, 0), "dilation": (1, 2)},
    ),
    "2d_same_s2": ((1, 2, 7, 6), (2, 2, 3, 2), {"padding": "same", "stride": 2}),
    "2d_valid_groups": (
        (1, 4, 5, 5),
        (4, 2, 2, 2),
        {"padding": "valid", "groups": 2, "stride": (1, 2)},
    ),
    "2d_asymmetric": ((1, 2, 5, 5), (2, 2, 3, 3), {"padding": ((0, 2), (1, 0))}),
    "3d_mixed": (
        (1, 2, 5, 4, 5),
        (3, 2, 2, 3, 2),
        {"stride": (1, 2, 2), "padding": (1, 0, 1), "dilation": (2, 1, 1)},
    ),
    "3d_same_strides": ((1, 2, 5, 6, 4), (2, 2, 3, 2, 2), {"padding": "same", "stride": (2, 1, 3)}),
    "3d_groups": ((2, 4, 3, 4, 3), (2, 2, 2, 2, 2), {"groups": 2}),
    "3d_asymmetric_dil": (
        (1, 1, 4, 4, 4),
        (2, 1, 2, 2, 2),
        {"padding": ((1, 0), (0, 1), (2, 2)), "dilation": 2},
    ),
    "3d_unbatched": ((2, 4, 4, 4), (2, 2, 2, 2, 2), {"stride": 2, "padding": 1}),
}

# (input shape, weight shape (C_in, C_out/groups, *k), keyword arguments), D = 1, 2, 3.
TRANSPOSE_CASES: dict[str, Case] = {
    "1d_groups_outpad": (
        (2, 4, 5),
        (4, 3, 3),
        {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2},
    ),
    "1d_dilation_outpad": ((1, 2, 4), (2, 2, 2), {"dilation": 3, "output_padding": 2}),
    "1d_unbatched": ((3, 4), (3, 2, 2), {"stride": 3}),
    "2d_outpad_pair": (
        (1, 2, 3, 4),
        (2, 3, 3, 2),
        {"stride": (2, 3), "padding": (1, 0), "output_padding": (1, 2)},
    ),
    "2d_groups_dilation": (
        (2, 4, 3, 3),
        (4, 2, 2, 3),
        {"groups": 2, "dilation": (2, 1), "padding": (0, 1)},
    ),
    "3d_outpad": (
        (1, 2, 3, 2, 3),
        (2, 2, 2, 3, 2),
        {"stride": (2, 1, 2), "padding": (1, 1, 0), "output_padding": (1, 0, 1)},
    ),
    "3d_groups": (
        (1, 4, 2, 3, 2),
        (4, 1, 2, 2, 2),
        {"groups": 2, "dilation": (1, 2, 1), "stride": 2, "output_padding": 1},
    ),
}

# (input shape, kernel size, keyword arguments), D = 1, 2, 3; the kernel size is a
# D-tuple except in 2-D, where an int means 2-D as in torch's unfold.
WINDOW_CASES: dict[str, Case] = {
    "1d_plain": ((1, 2, 5), (2,), {}),
    "1d_stride_pad_dil": ((2, 3, 9), (3,), {"stride": 2, "padding": 1, "dilation": 2}),
    "2d_mixed": ((2, 2, 5, 6), (2, 3), {"stride": (1, 2), "padding": (1, 0), "dilation": (2, 1)}),
    "2d_int_kernel": ((1, 1, 7, 7), 3, {"stride": 3, "padding": 1}),
    "3d_mixed": (
        (1, 2, 4, 5, 4),
        (2, 2, 3),
        {"stride": (2, 1, 1), "padding": (0, 1, 1), "dilation": (1, 1, 2)},
    ),
    "3d_stride": ((2, 1, 3, 3, 3), (1, 2, 2), {"stride": 2}),
}

# 4-D problems for the slice identity (input shape, weight shape, keyword arguments).
CONV4D_CASES: dict[str, Case] = {
    "plain": ((2, 2, 3, 4, 3, 3), (3, 2, 2, 2, 2, 2), {}),
    "stride_dil_pad": (
        (1, 2, 5, 4, 4, 5),
        (2, 2, 2, 2, 2, 2),
        {"stride": (2, 1, 2, 1), "dilation": (1, 2, 1, 2), "padding": (1, 0, 1, 1)},
    ),
    "same_s2_groups": (
        (1, 4, 5, 4, 3, 4),
        (4, 2, 3, 2, 2, 1),
        {"padding": "same", "stride": 2, "groups": 2},
    ),
    "asymmetric": (
        (1, 1, 3, 4, 3, 3),
        (2, 1, 2, 2, 3, 2),
        {"padding": ((1, 0), (0, 2), (1, 1), (2, 0))},
    ),
    "unbatched": ((2, 3, 3, 2, 3), (2, 2, 2, 2, 1, 2), {"padding": 1}),
}


def _data(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def _close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-12) -> None:
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * max(scale, 1.0))


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    return float(np.sum(a * b))


def _problem(
    case: Case, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    xs, ws, kw = case
    return _data(xs, seed), _data(ws, seed + 1), _data(ws[:1], seed + 2), kw


# --------------------------------------------------------------------------- D = 1, 2, 3 vs torch


@needs_torch
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_torch(case: str, bias: bool) -> None:
    x, w, b, kw = _problem(CONV_CASES[case])
    b = b if bias else None
    _close(ref.conv(x, w, b, **kw), ref.torch_conv(x, w, b, **kw))


@needs_torch
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_backward_matches_torch_autograd(case: str) -> None:
    x, w, _, kw = _problem(CONV_CASES[case])
    gy = _data(ref.conv(x, w, **kw).shape, 7)
    for got, want in zip(
        ref.conv_backward(gy, x, w, **kw), ref.torch_conv_grads(gy, x, w, **kw), strict=True
    ):
        _close(got, want)


@needs_torch
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("case", TRANSPOSE_CASES)
def test_conv_transpose_matches_torch(case: str, bias: bool) -> None:
    xs, ws, kw = TRANSPOSE_CASES[case]
    x, w = _data(xs, 0), _data(ws, 1)
    groups = kw.get("groups", 1)
    b = _data((ws[1] * groups,), 2) if bias else None
    _close(ref.conv_transpose(x, w, b, **kw), ref.torch_conv_transpose(x, w, b, **kw))


@needs_unfoldnd
@pytest.mark.parametrize("case", WINDOW_CASES)
def test_unfold_fold_match_unfoldnd(case: str) -> None:
    xs, k, kw = WINDOW_CASES[case]
    x = _data(xs, 0)
    cols = ref.unfold(x, k, **kw)
    _close(cols, ref.nd_unfold(x, k, **kw))
    c = _data(cols.shape, 1)
    img = ref.fold(c, xs[2:], k, **kw)
    _close(img, ref.nd_fold(c, xs[2:], k, **kw))
    if len(xs) == 4:  # torch's own unfold and fold are 2-D
        _close(cols, ref.torch_unfold(x, k, **kw))
        _close(img, ref.torch_fold(c, xs[2:], k, **kw))


# --------------------------------------------------------------------------- padding rules


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_same_padding_is_the_tensorflow_rule(stride: int) -> None:
    """The TF formula (stated per remainder), output ceil(size/stride); stride 1 is torch's."""
    for size in range(1, 10):
        for kernel in range(1, 5):
            for dilation in range(1, 4):
                eff = dilation * (kernel - 1) + 1
                rem = size % stride
                total = max(eff - stride, 0) if rem == 0 else max(eff - rem, 0)
                pads = ref.same_padding(size, kernel, stride, dilation)
                assert pads == (total // 2, total - total // 2)
                assert (size + total - eff) // stride + 1 == -(-size // stride)
                if stride == 1:
                    assert pads == ((eff - 1) // 2, eff - 1 - (eff - 1) // 2)  # torch 'same'


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_same_output_is_ceil_of_size_over_stride(d: int) -> None:
    x = _data((1, 2, *(5, 4, 3, 6)[:d]), 0)
    w = _data((2, 2, *(2, 3, 2, 1)[:d]), 1)
    stride = (2, 3, 1, 4)[:d]
    y = ref.conv(x, w, padding="same", stride=stride, dilation=(1, 2, 2, 1)[:d])
    assert y.shape[2:] == tuple(-(-n // s) for n, s in zip(x.shape[2:], stride, strict=True))


def test_padding_forms() -> None:
    geometry = ((5, 6), (3, 2), (1, 2), (1, 1))
    assert ref.padding_pairs(1, *geometry) == ((1, 1), (1, 1))
    assert ref.padding_pairs((1, 0), *geometry) == ((1, 1), (0, 0))
    assert ref.padding_pairs(((2, 0), (0, 1)), *geometry) == ((2, 0), (0, 1))
    assert ref.padding_pairs([(2, 0), 1], *geometry) == ((2, 0), (1, 1))
    assert ref.padding_pairs("valid", *geometry) == ((0, 0), (0, 0))
    assert ref.padding_pairs("same", *geometry) == ((1, 1), (0, 0))
    assert ref.padding_pairs("same", (6,), (4,), (1,), (1,)) == ((1, 2),)  # odd one at the end
    assert ref.explicit_padding(((2, 0), (0, 1)), *geometry) == (2, 0, 0, 1)
    assert ref.explicit_padding("same", (7, 6), (3, 2), (2, 2), (1, 1)) == (1, 1, 0, 0)
    for bad in ("full", -1, (1, 2, 3), ((1, 2, 3), (0, 0)), ((1, -1), (0, 0))):
        with pytest.raises(ValueError):  # noqa: PT011  (the message varies by mistake)
            ref.padding_pairs(bad, *geometry)


# --------------------------------------------------------------------------- D = 4


def _conv_by_lower_slices(
    x: np.ndarray,
    w: np.ndarray,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
) -> np.ndarray:
    """A D-dim convolution as sums over the first kernel axis of (D-1)-dim torch convolutions.

    y[:, :, r] = sum_i conv_{D-1}(xpad[:, :, r*s0 + i*d0], w[:, :, i]) with the
    remaining axes padded, strided and dilated as before.
    """
    d = w.ndim - 2
    s, dil = ref._ntuple(stride, d), ref._ntuple(dilation, d)
    pads = ref.padding_pairs(padding, x.shape[2:], w.shape[2:], s, dil)
    x = np.pad(x, [(0, 0), (0, 0), pads[0]] + [(0, 0)] * (d - 1))
    k0 = w.shape[2]
    out0 = (x.shape[2] - dil[0] * (k0 - 1) - 1) // s[0] + 1
    rest = {"stride": s[1:], "padding": pads[1:], "dilation": dil[1:], "groups": groups}
    rows = [
        sum(ref.torch_conv(x[:, :, r * s[0] + i * dil[0]], w[:, :, i], **rest) for i in range(k0))
        for r in range(out0)
    ]
    return np.stack(rows, axis=2)


@needs_torch
def test_slice_identity_holds_in_3d() -> None:
    """The identity the 4-D check uses, verified where torch has the answer."""
    x, w, _, kw = _problem(CONV_CASES["3d_mixed"])
    _close(_conv_by_lower_slices(x, w, **kw), ref.torch_conv(x, w, **kw))
    x, w, _, kw = _problem(CONV_CASES["3d_asymmetric_dil"])
    _close(_conv_by_lower_slices(x, w, **kw), ref.torch_conv(x, w, **kw))


@needs_torch
@pytest.mark.parametrize("case", CONV4D_CASES)
def test_conv4d_is_sum_of_3d_convolutions(case: str) -> None:
    x, w, b, kw = _problem(CONV4D_CASES[case])
    batched = x if x.ndim == 6 else x[None]
    expected = _conv_by_lower_slices(batched, w, **kw) + b.reshape(-1, 1, 1, 1, 1)
    _close(ref.conv(x, w, b, **kw), expected if x.ndim == 6 else expected[0])


def _nd_kwargs(d: int) -> dict[str, Any]:
    """A strided, dilated, asymmetrically padded, grouped problem in D dimensions."""
    return {
        "stride": (2, 1, 3, 1)[:d],
        "dilation": (1, 2, 1, 1)[:d],
        "padding": ((1, 0), (0, 1), (1, 1), (0, 2))[:d],
        "groups": 2,
    }


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_conv_backward_adjoint_identity(d: int) -> None:
    """<conv(x, W), gy> = <x, grad_x> = <W, grad_w>; grad_b sums gy."""
    x = _data((2, 4, *(5, 4, 6, 3)[:d]), 0)
    w = _data((6, 2, *(2, 2, 3, 2)[:d]), 1)
    kw = _nd_kwargs(d)
    y = ref.conv(x, w, **kw)
    gy = _data(y.shape, 2)
    gx, gw, gb = ref.conv_backward(gy, x, w, **kw)
    assert gx.shape == x.shape
    assert gw.shape == w.shape
    assert _dot(y, gy) == pytest.approx(_dot(x, gx), rel=1e-12)
    assert _dot(y, gy) == pytest.approx(_dot(w, gw), rel=1e-12)
    _close(gb, gy.sum(axis=(0, *range(2, d + 2))))


def test_conv_backward_finite_differences_4d() -> None:
    """Every entry of the three gradients by central differences of <conv(x, W, b), gy>."""
    x, w, b = _data((1, 2, 3, 2, 3, 2), 0), _data((2, 2, 2, 1, 2, 2), 1), _data((2,), 2)
    kw = {
        "stride": (1, 1, 2, 1),
        "padding": ((1, 0), (0, 0), (1, 1), (0, 1)),
        "dilation": (2, 1, 1, 1),
    }
    gy = _data(ref.conv(x, w, b, **kw).shape, 3)
    grads = ref.conv_backward(gy, x, w, **kw)
    h = 1e-3
    for which, grad in enumerate(grads):
        numeric = np.zeros_like(grad)
        for idx in np.ndindex(grad.shape):
            loss = []
            for sign in (1, -1):
                args = [x.copy(), w.copy(), b.copy()]
                args[which][idx] += sign * h
                loss.append(_dot(ref.conv(*args, **kw), gy))
            numeric[idx] = (loss[0] - loss[1]) / (2 * h)
        _close(grad, numeric, rtol=1e-8)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_conv_transpose_is_adjoint_of_conv(d: int) -> None:
    """<conv_transpose(y, W), x> = <y, conv(x, W)>; and it is conv's input gradient."""
    kw = _nd_kwargs(d)
    output_padding = (1, 0, 2, 0)[:d]  # < stride: conv maps the output back to y.shape
    y = _data((2, 4, *(3, 2, 2, 3)[:d]), 0)
    w = _data((4, 3, *(2, 2, 3, 2)[:d]), 1)
    t = ref.conv_transpose(y, w, output_padding=output_padding, **kw)
    x = _data(t.shape, 2)
    assert ref.conv(x, w, **kw).shape == y.shape
    assert _dot(t, x) == pytest.approx(_dot(y, ref.conv(x, w, **kw)), rel=1e-12)
    _close(ref.conv_backward(y, x, w, **kw)[0], t)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_conv_is_weight_times_unfold(d: int) -> None:
    """conv(x, W) = W.reshape(O, -1) @ unfold(x): unfold's row order is the weight's."""
    x = _data((2, 3, *(5, 4, 6, 3)[:d]), 0)
    w = _data((4, 3, *(2, 3, 2, 2)[:d]), 1)
    kw = {"stride": (2, 1, 3, 1)[:d], "dilation": (1, 1, 2, 1)[:d], "padding": "same"}
    y = ref.conv(x, w, **kw)
    cols = ref.unfold(x, w.shape[2:], **kw)
    _close((w.reshape(4, -1) @ cols).reshape(y.shape), y)


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_unfold_fold_adjoint(d: int) -> None:
    """<unfold(x), c> = <x, fold(c)>, and fold(unfold(1)) counts the windows over each pixel."""
    size = (5, 4, 6, 3)[:d]
    k = (2, 3, 2, 2)[:d]
    kw = {"stride": (2, 1, 3, 1)[:d], "dilation": (1, 1, 2, 1)[:d], "padding": (1, 0, 1, 2)[:d]}
    x = _data((2, 3, *size), 0)
    cols = ref.unfold(x, k, **kw)
    assert cols.shape[1] == 3 * math.prod(k)
    c = _data(cols.shape, 1)
    assert _dot(cols, c) == pytest.approx(_dot(x, ref.fold(c, size, k, **kw)), rel=1e-12)
    counts = ref.fold(ref.unfold(np.ones((1, 1, *size)), k, **kw), size, k, **kw)
    ones, w_ones = np.ones((1, 1, *size)), np.ones((1, 1, *k))
    gy = np.ones(ref.conv(ones, w_ones, **kw).shape)
    gx = ref.conv_backward(gy, ones, w_ones, **kw)[0]  # also counts the windows over each pixel
    _close(counts, gx)


# --------------------------------------------------------------------------- batching, 2-D names


@pytest.mark.parametrize("d", [1, 3])
def test_unbatched_is_batch_of_one(d: int) -> None:
    x = _data((3, *(5, 4, 4)[:d]), 0)
    w, b = _data((2, 3, *(2, 2, 3)[:d]), 1), _data((2,), 2)
    kw = {"stride": 2, "padding": 1}
    y = ref.conv(x, w, b, **kw)
    _close(y, ref.conv(x[None], w, b, **kw)[0])
    gy = _data(y.shape, 3)
    for got, want in zip(
        ref.conv_backward(gy, x, w, **kw),
        ref.conv_backward(gy[None], x[None], w, **kw),
        strict=True,
    ):
        _close(got, want[0] if got.ndim == x.ndim else want)
    wt = _data((3, 2, *(2, 2, 3)[:d]), 4)
    _close(ref.conv_transpose(x, wt, **kw), ref.conv_transpose(x[None], wt, **kw)[0])
    k = (2, 2, 3)[:d]
    cols = ref.unfold(x, k, **kw)
    _close(cols, ref.unfold(x[None], k, **kw)[0])
    _close(ref.fold(cols, x.shape[1:], k, **kw), ref.fold(cols[None], x.shape[1:], k, **kw)[0])


@needs_torch
def test_2d_names_are_the_2d_case() -> None:
    x, w, b, kw = _problem(CONV_CASES["2d_same_s2"])
    np.testing.assert_array_equal(ref.conv2d(x, w, b, **kw), ref.conv(x, w, b, **kw))
    gy = _data(ref.conv(x, w, **kw).shape, 5)
    for got, want in zip(
        ref.conv2d_backward(gy, x, w, **kw), ref.conv_backward(gy, x, w, **kw), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ref.torch_conv2d(x, w, b, **kw), ref.torch_conv(x, w, b, **kw))
    with pytest.raises(ValueError, match="4 dimensions"):
        ref.conv2d(x[:, :, 0], w[:, :, 0])
    # An int kernel size means 2-D, as in torch's unfold: a 3-D input is unbatched.
    x3 = _data((2, 5, 5), 6)
    _close(ref.unfold(x3, 2, stride=2), ref.torch_unfold(x3, 2, stride=2))
    hand = np.array([[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]], dtype=float)
    np.testing.assert_array_equal(ref.unfold(np.arange(9.0).reshape(1, 1, 3, 3), 2), hand[None])


def test_kernel_larger_than_padded_input_is_an_error() -> None:
    """As in torch: no window at all raises instead of giving an empty output."""
    with pytest.raises(ValueError, match="no window"):
        ref.conv(np.ones((1, 1, 3)), np.ones((1, 1, 4)))
    with pytest.raises(ValueError, match="no window"):
        ref.unfold(np.ones((1, 1, 2, 5)), (3, 1))
    np.testing.assert_array_equal(
        ref.conv(np.ones((1, 1, 3)), np.ones((1, 1, 4)), padding="same"), [[[3.0, 3.0, 2.0]]]
    )
