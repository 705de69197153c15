"""Property tests: random shapes and arguments against the loop reference and PyTorch.

The search is derandomized (the same examples on every run and machine) and
small: sizes up to 9x9, kernels up to 3x3, a few channels. The N-d searches
draw the rank D = 1..4 too, with kernels up to 2 and sizes up to 7 for D >= 3. Raise
``XPCONV_HYPOTHESIS_EXAMPLES`` (default 25 per test and backend;
``XPCONV_HYPOTHESIS_EXAMPLES_SLOW``, default 4, on JAX and Dask) for a longer
local search.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference as ref
import xpconv
from reference import assert_close, is_slow

SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _examples(backend: Any) -> int:
    """25 examples (XPCONV_HYPOTHESIS_EXAMPLES); 4 on the slow backends (..._SLOW)."""
    if is_slow(backend):
        return int(os.environ.get("XPCONV_HYPOTHESIS_EXAMPLES_SLOW", "4"))
    return int(os.environ.get("XPCONV_HYPOTHESIS_EXAMPLES", "25"))


def _search(backend: Any, problems: st.SearchStrategy[Any], check: Any, scale: int = 1) -> None:
    """Run ``check(backend, problem)`` over the derandomized examples of ``problems``.

    ``scale`` multiplies the number of examples on the fast backends only.
    """
    examples = _examples(backend) * (1 if is_slow(backend) else scale)

    @settings(SETTINGS, max_examples=examples)
    @given(problem=problems)
    def run(problem: dict[str, Any]) -> None:
        check(backend, problem)

    run()


try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # the loop reference still runs
    HAVE_TORCH = False


def _int_or_pair(lo: int, hi: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


# The im2col workspace limit: a small one forces batch chunks and bands of output
# rows. "default": run as the user would; 1 byte: every output row is its own tile.
LIMITS = st.sampled_from(["default", 1, 300, 3000])


def _limit(limit: Any) -> contextlib.AbstractContextManager[Any]:
    if limit == "default":
        return contextlib.nullcontext()
    return xpconv.workspace_limit(limit)


def _data(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype).astype(np.float64)


@st.composite
def conv_problems(draw: st.DrawFn) -> dict[str, Any]:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 2))  # cg == 1 with groups > 1 is depthwise
    og = draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(_int_or_pair(1, 3))
    dilation = draw(_int_or_pair(1, 2))
    padding = draw(
        st.one_of(
            st.sampled_from(["same", "valid"]),
            st.integers(0, 2),
            st.tuples(st.integers(0, 2), st.integers(0, 2)),
        )
    )
    d = _pair(dilation)
    pad = (0, 0) if isinstance(padding, str) else _pair(padding)
    eff = (d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1)
    lowest = [1 if padding == "same" else max(1, eff[a] - 2 * pad[a]) for a in range(2)]
    h = lowest[0] + draw(st.integers(0, 4))
    w = lowest[1] + draw(st.integers(0, 4))
    n = draw(st.integers(1, 2))
    unbatched = n == 1 and draw(st.booleans())
    x_shape = (groups * cg, h, w) if unbatched else (n, groups * cg, h, w)
    return {
        "x_shape": x_shape,
        "w_shape": (groups * og, cg, kh, kw),
        "kwargs": {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups},
        "bias": draw(st.booleans()),
        "dtype": draw(st.sampled_from(["float64", "float32"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "limit": draw(LIMITS),
    }


@st.composite
def transpose_problems(draw: st.DrawFn) -> dict[str, Any]:
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride, dilation = draw(_int_or_pair(1, 3)), draw(_int_or_pair(1, 2))
    s, d = _pair(stride), _pair(dilation)
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    # Padding may not make the output empty: 2p <= (h-1)s + d(k-1).
    pmax = [
        min(2, ((size - 1) * s[a] + d[a] * (k - 1)) // 2)
        for a, (size, k) in enumerate(((h, kh), (w, kw)))
    ]
    padding = (draw(st.integers(0, pmax[0])), draw(st.integers(0, pmax[1])))
    output_padding = tuple(draw(st.integers(0, max(s[a], d[a]) - 1)) for a in range(2))
    n = draw(st.integers(1, 2))
    unbatched = n == 1 and draw(st.booleans())
    x_shape = (groups * cg, h, w) if unbatched else (n, groups * cg, h, w)
    return {
        "x_shape": x_shape,
        "w_shape": (groups * cg, og, kh, kw),
        "kwargs": {
            "stride": stride,
            "padding": padding if draw(st.booleans()) or padding[0] != padding[1] else padding[0],
            "output_padding": output_padding,
            "dilation": dilation,
            "groups": groups,
        },
        "bias": draw(st.booleans()),
        "dtype": draw(st.sampled_from(["float64", "float32"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "limit": draw(LIMITS),
    }


@st.composite
def window_problems(draw: st.DrawFn) -> dict[str, Any]:
    kernel = draw(_int_or_pair(1, 3))
    stride, dilation = draw(_int_or_pair(1, 3)), draw(_int_or_pair(1, 2))
    padding = draw(_int_or_pair(0, 2))
    k, d, p = _pair(kernel), _pair(dilation), _pair(padding)
    hw = tuple(max(1, d[a] * (k[a] - 1) + 1 - 2 * p[a]) + draw(st.integers(0, 4)) for a in range(2))
    n = draw(st.integers(1, 2))
    unbatched = n == 1 and draw(st.booleans())
    c = draw(st.integers(1, 3))
    return {
        "x_shape": (c, *hw) if unbatched else (n, c, *hw),
        "kernel_size": kernel,
        "kwargs": {"stride": stride, "padding": padding, "dilation": dilation},
        "dtype": draw(st.sampled_from(["float64", "float32"])),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _ntuple(v: Any, rank: int) -> tuple[int, ...]:
    return (v,) * rank if isinstance(v, int) else tuple(v)


def _int_or_tuple(rank: int, lo: int, hi: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(lo, hi), st.tuples(*[st.integers(lo, hi)] * rank))


@st.composite
def nd_conv_problems(draw: st.DrawFn) -> dict[str, Any]:
    """Convolutions of rank D = 1..4 through the generic ``conv``; smaller sizes for D >= 3."""
    rank = draw(st.integers(1, 4))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 2))  # cg == 1 with groups > 1 is depthwise
    og = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3 if rank <= 2 else 2)) for _ in range(rank))
    stride = draw(_int_or_tuple(rank, 1, 3))
    dilation = draw(_int_or_tuple(rank, 1, 2))
    padding = draw(
        st.one_of(
            st.sampled_from(["same", "valid"]),
            st.integers(0, 2),
            st.tuples(*[st.integers(0, 2)] * rank),
        )
    )
    d = _ntuple(dilation, rank)
    pad = (0,) * rank if isinstance(padding, str) else _ntuple(padding, rank)
    extra = 4 if rank <= 2 else 2
    spatial = tuple(
        (1 if padding == "same" else max(1, d[a] * (kernel[a] - 1) + 1 - 2 * pad[a]))
        + draw(st.integers(0, extra))
        for a in range(rank)
    )
    n = draw(st.integers(1, 2))
    unbatched = n == 1 and draw(st.booleans())
    c = groups * cg
    return {
        "x_shape": (c, *spatial) if unbatched else (n, c, *spatial),
        "w_shape": (groups * og, cg, *kernel),
        "kwargs": {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups},
        "bias": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
        "limit": draw(LIMITS),
    }


def _check_conv2d_property(backend: Any, problem: dict[str, Any]) -> None:
    rng = np.random.default_rng(problem["seed"])
    dtype, kw = problem["dtype"], problem["kwargs"]
    x = _data(rng, problem["x_shape"], dtype)
    w = _data(rng, problem["w_shape"], dtype)
    b = _data(rng, problem["w_shape"][:1], dtype) if problem["bias"] else None
    xb, wb = backend.asarray(x, dtype), backend.asarray(w, dtype)
    bb = None if b is None else backend.asarray(b, dtype)
    with _limit(problem["limit"]):
        y = xpconv.conv2d(xb, wb, bb, **kw)
    expected = ref.conv2d(x, w, b, **kw)
    if kw["padding"] == "same":
        s = _pair(kw["stride"])
        assert expected.shape[-2:] == tuple(-(-x.shape[-2 + a] // s[a]) for a in range(2))
    assert_close(backend, y, expected, like=xb)
    if HAVE_TORCH:
        batched = x if x.ndim == 4 else x[None]
        t = ref.torch_conv2d(batched, w, b, **kw)
        assert_close(backend, y, t if x.ndim == 4 else t[0], like=xb)
    np.testing.assert_array_equal(backend.to_numpy(xb), x)


def _check_conv2d_backward_property(backend: Any, problem: dict[str, Any]) -> None:
    rng = np.random.default_rng(problem["seed"])
    dtype, kw = problem["dtype"], problem["kwargs"]
    x = _data(rng, problem["x_shape"], dtype)
    w = _data(rng, problem["w_shape"], dtype)
    gy = _data(rng, ref.conv2d(x, w, **kw).shape, dtype)
    gyb, xb, wb = (backend.asarray(a, dtype) for a in (gy, x, w))
    with _limit(problem["limit"]):
        grads = xpconv.conv2d_backward(gyb, xb, wb, bias=problem["bias"], **kw)
    oracles = [ref.conv2d_backward(gy, x, w, **kw)]
    if HAVE_TORCH:
        if x.ndim == 4:
            oracles.append(ref.torch_conv2d_grads(gy, x, w, **kw))
        else:
            gx, gw, gb = ref.torch_conv2d_grads(gy[None], x[None], w, **kw)
            oracles.append((gx[0], gw, gb))
    for gx, gw, gb in oracles:
        assert_close(backend, grads.input, gx, like=xb)
        assert_close(backend, grads.weight, gw, like=xb)
        if problem["bias"]:
            assert_close(backend, grads.bias, gb, like=xb)
        else:
            assert grads.bias is None


def _check_conv_transpose2d_property(backend: Any, problem: dict[str, Any]) -> None:
    rng = np.random.default_rng(problem["seed"])
    dtype, kw = problem["dtype"], problem["kwargs"]
    x = _data(rng, problem["x_shape"], dtype)
    w = _data(rng, problem["w_shape"], dtype)
    n_out = problem["w_shape"][1] * kw["groups"]
    b = _data(rng, (n_out,), dtype) if problem["bias"] else None
    xb, wb = backend.asarray(x, dtype), backend.asarray(w, dtype)
    bb = None if b is None else backend.asarray(b, dtype)
    with _limit(problem["limit"]):
        y = xpconv.conv_transpose2d(xb, wb, bb, **kw)
    assert_close(backend, y, ref.conv_transpose2d(x, w, b, **kw), like=xb)
    if HAVE_TORCH:
        assert_close(backend, y, ref.torch_conv_transpose2d(x, w, b, **kw), like=xb)


def _check_transpose_is_input_gradient(backend: Any, problem: dict[str, Any]) -> None:
    kw = dict(problem["kwargs"])
    if isinstance(kw["padding"], str):  # transposed convolutions take symmetric padding only
        _, bottom, _, right = ref.explicit_padding(
            kw["padding"],
            problem["x_shape"][-2:],
            problem["w_shape"][-2:],
            _pair(kw["stride"]),
            _pair(kw["dilation"]),
        )
        kw["padding"] = (bottom, right)  # enough for the kernel to fit, as 'same' is
    rng = np.random.default_rng(problem["seed"])
    x_shape = problem["x_shape"] if len(problem["x_shape"]) == 4 else (1, *problem["x_shape"])
    x = _data(rng, x_shape, "float64")
    w = _data(rng, problem["w_shape"], "float64")
    gy = _data(rng, ref.conv2d(x, w, **kw).shape, "float64")
    s, p, d = _pair(kw["stride"]), _pair(kw["padding"]), _pair(kw["dilation"])
    out_pad = tuple(
        x.shape[2 + a] + 2 * p[a] - ((gy.shape[2 + a] - 1) * s[a] + d[a] * (w.shape[2 + a] - 1) + 1)
        for a in range(2)
    )
    gyb, xb, wb = (backend.asarray(a) for a in (gy, x, w))
    gx = xpconv.conv2d_backward(gyb, xb, wb, **kw).input
    if all(out_pad[a] < max(s[a], d[a]) for a in range(2)):
        yt = xpconv.conv_transpose2d(gyb, wb, output_padding=out_pad, **kw)
        assert_close(backend, yt, backend.to_numpy(gx), like=gyb)
    else:  # x has rows no window reads: their gradient is zero, the rest is the transpose
        yt = xpconv.conv_transpose2d(gyb, wb, **kw)
        hh, ww = yt.shape[-2:]
        assert_close(backend, yt, backend.to_numpy(gx)[..., :hh, :ww], like=gyb)
        assert np.all(backend.to_numpy(gx)[..., hh:, :] == 0)
        assert np.all(backend.to_numpy(gx)[..., :, ww:] == 0)


def _check_unfold_fold_property(backend: Any, problem: dict[str, Any]) -> None:
    rng = np.random.default_rng(problem["seed"])
    dtype, k, kw = problem["dtype"], problem["kernel_size"], problem["kwargs"]
    x = _data(rng, problem["x_shape"], dtype)
    xb = backend.asarray(x, dtype)
    cols = xpconv.unfold(xb, k, **kw)
    expected_cols = ref.unfold(x, k, **kw)
    assert_close(backend, cols, expected_cols, like=xb)
    c = _data(rng, expected_cols.shape, dtype)
    cb = backend.asarray(c, dtype)
    img = xpconv.fold(cb, x.shape[-2:], k, **kw)
    assert_close(backend, img, ref.fold(c, x.shape[-2:], k, **kw), like=cb)
    if HAVE_TORCH:
        assert_close(backend, cols, ref.torch_unfold(x, k, **kw), like=xb)
        assert_close(backend, img, ref.torch_fold(c, x.shape[-2:], k, **kw), like=cb)
    # Adjointness, in float64.
    x64, c64 = backend.asarray(x), backend.asarray(c)
    lhs = float(np.sum(backend.to_numpy(xpconv.unfold(x64, k, **kw)) * c))
    rhs = float(np.sum(x * backend.to_numpy(xpconv.fold(c64, x.shape[-2:], k, **kw))))
    assert lhs == pytest.approx(rhs, rel=1e-10, abs=1e-12)


def _check_conv_nd_property(backend: Any, problem: dict[str, Any]) -> None:
    rng = np.random.default_rng(problem["seed"])
    kw = problem["kwargs"]
    x = _data(rng, problem["x_shape"], "float64")
    w = _data(rng, problem["w_shape"], "float64")
    b = _data(rng, problem["w_shape"][:1], "float64") if problem["bias"] else None
    xb, wb = backend.asarray(x), backend.asarray(w)
    bb = None if b is None else backend.asarray(b)
    with _limit(problem["limit"]):
        y = xpconv.conv(xb, wb, bb, **kw)
    expected = ref.conv(x, w, b, **kw)
    rank = w.ndim - 2
    if kw["padding"] == "same":
        s = _ntuple(kw["stride"], rank)
        size = x.shape[-rank:]
        assert expected.shape[-rank:] == tuple(-(-size[a] // s[a]) for a in range(rank))
    assert_close(backend, y, expected, like=xb)
    np.testing.assert_array_equal(backend.to_numpy(xb), x)


def _check_conv_nd_backward_property(backend: Any, problem: dict[str, Any]) -> None:
    rng = np.random.default_rng(problem["seed"])
    kw = problem["kwargs"]
    x = _data(rng, problem["x_shape"], "float64")
    w = _data(rng, problem["w_shape"], "float64")
    gy = _data(rng, ref.conv(x, w, **kw).shape, "float64")
    gyb, xb, wb = (backend.asarray(a) for a in (gy, x, w))
    with _limit(problem["limit"]):
        grads = xpconv.conv_backward(gyb, xb, wb, bias=problem["bias"], **kw)
    gx, gw, gb = ref.conv_backward(gy, x, w, **kw)
    assert_close(backend, grads.input, gx, like=xb)
    assert_close(backend, grads.weight, gw, like=xb)
    if problem["bias"]:
        assert_close(backend, grads.bias, gb, like=xb)
    else:
        assert grads.bias is None
    np.testing.assert_array_equal(backend.to_numpy(gyb), gy)


# --------------------------------------------------------------------------- the searches


def test_conv2d_property(backend: Any) -> None:
    _search(backend, conv_problems(), _check_conv2d_property)


def test_conv2d_backward_property(backend: Any) -> None:
    _search(backend, conv_problems(), _check_conv2d_backward_property)


def test_conv_transpose2d_property(backend: Any) -> None:
    _search(backend, transpose_problems(), _check_conv_transpose2d_property)


def test_unfold_fold_property(backend: Any) -> None:
    _search(backend, window_problems(), _check_unfold_fold_property)


def test_conv_transpose2d_is_conv2d_input_gradient_property(backend: Any) -> None:
    _search(backend, conv_problems(), _check_transpose_is_input_gradient)


# Four ranks share these searches, and their problems are small: 4x the examples
# on the fast backends (100 by default, a second or two each on NumPy; JAX and
# Dask keep their 4, since JAX compiles every new shape).
ND_SCALE = 4


def test_conv_nd_property(backend: Any) -> None:
    """The generic conv for D = 1..4 against the loop reference, float64 at 1e-10."""
    _search(backend, nd_conv_problems(), _check_conv_nd_property, scale=ND_SCALE)


def test_conv_nd_backward_property(backend: Any) -> None:
    _search(backend, nd_conv_problems(), _check_conv_nd_backward_property, scale=ND_SCALE)
