"""xpconv.signal against scipy.signal on every backend.

The oracle is SciPy itself: ``scipy.signal.convolve``/``correlate`` with
``method='direct'`` (sums of products, no FFT) on float64/complex128 NumPy
copies of the inputs, ``convolve2d``/``correlate2d`` for the boundary rules,
and a loop over the batch of broadcast pairs for ``axes=``. Tolerances are
relative to the largest magnitude of the expected result: 1e-10 for the
direct method, 1e-8 for the FFT method, 1e-4 for float32/complex64.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from typing import Any

import array_api_compat
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reference import is_slow, thin
from xpconv import signal
from xpconv._signal_fft import next_fast_len

scipy_signal = pytest.importorskip("scipy.signal")
scipy_fft = pytest.importorskip("scipy.fft")

RTOL = {"direct": 1e-10, "fft": 1e-8, "auto": 1e-8}


def _random(shape: tuple[int, ...], complex_: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if complex_:
        a = a + 1j * rng.standard_normal(shape)
    return a


def _check(
    backend: Any, actual: Any, expected: np.ndarray, *, like: Any, dtype: Any, rtol: float
) -> None:
    """Namespace, dtype, shape and device of ``actual``, then its values (complex too)."""
    assert array_api_compat.array_namespace(actual) is backend.xp
    assert actual.dtype == dtype, f"dtype {actual.dtype} != {dtype}"
    assert tuple(actual.shape) == expected.shape, f"{tuple(actual.shape)} != {expected.shape}"
    assert array_api_compat.device(actual) == array_api_compat.device(like)
    got = backend.to_numpy(actual).astype(np.complex128)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * max(scale, 1e-300))


# (in1 shape, in2 shape): 1-D, 2-D, 3-D; in2 larger than in1 (the 'valid' swap);
# even and odd kernels (the 'same' centring).
SHAPES = {
    "1d": ((11,), (4,)),
    "1d-swap": ((3,), (8,)),
    "1d-equal": ((5,), (5,)),
    "2d": ((7, 9), (3, 4)),
    "2d-swap": ((2, 3), (5, 6)),
    "3d": ((5, 4, 6), (2, 3, 3)),
}


@pytest.mark.parametrize("case", thin(SHAPES, keep=("1d", "2d-swap", "3d")))
@pytest.mark.parametrize("op", ["convolve", "correlate"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_matches_scipy(
    backend: Any, case: str, op: str, mode: str, method: str, complex_: bool
) -> None:
    if is_slow(backend) and (complex_ and mode != "same"):
        pytest.skip("thinned on slow eager backends")
    shape1, shape2 = SHAPES[case]
    a, b = _random(shape1, complex_, 1), _random(shape2, complex_, 2)
    expected = getattr(scipy_signal, op)(a, b, mode=mode, method="direct")
    x, w = backend.asarray(a), backend.asarray(b)
    got = getattr(signal, op)(x, w, mode=mode, method=method)
    _check(backend, got, expected, like=x, dtype=x.dtype, rtol=RTOL[method])


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("dtype", ["float32", "complex64"])
def test_single_precision_stays(backend: Any, method: str, dtype: str) -> None:
    a, b = _random((6, 9), dtype == "complex64", 3), _random((3, 2), dtype == "complex64", 4)
    x, w = backend.asarray(a, dtype), backend.asarray(b, dtype)
    for op in ("convolve", "correlate"):
        expected = getattr(scipy_signal, op)(a, b, method="direct")
        got = getattr(signal, op)(x, w, method=method)
        _check(backend, got, expected, like=x, dtype=backend.dtype(dtype), rtol=1e-4)


def test_mixed_precision_promotes(backend: Any) -> None:
    """float32 with float64 gives float64, as np.result_type does."""
    a, b = _random((10,), False, 5), _random((3,), False, 6)
    x, w = backend.asarray(a, "float32"), backend.asarray(b, "float64")
    expected = scipy_signal.convolve(a.astype(np.float32), b, method="direct")
    got = signal.convolve(x, w)
    _check(backend, got, expected, like=x, dtype=backend.dtype("float64"), rtol=1e-10)


@pytest.mark.parametrize("method", ["direct", "fft", "auto"])
def test_integer_inputs_round_back(backend: Any, method: str) -> None:
    """Integers: computed in float64, rounded back to the integer result type, exact."""
    rng = np.random.default_rng(7)
    a, b = rng.integers(-50, 50, size=(4, 30)), rng.integers(-50, 50, size=(2, 5))
    x, w = backend.asarray(a, "int64"), backend.asarray(b, "int64")
    for op in ("convolve", "correlate"):
        expected = getattr(scipy_signal, op)(a, b, mode="same", method="direct")
        got = getattr(signal, op)(x, w, mode="same", method=method)
        assert got.dtype == backend.dtype("int64")
        np.testing.assert_array_equal(backend.to_numpy(got), expected)


@pytest.mark.parametrize("op", ["convolve", "correlate"])
def test_zero_dimensional(backend: Any, op: str) -> None:
    a, b = np.asarray(2.0 + 1.0j), np.asarray(0.5 - 3.0j)
    expected = np.asarray(getattr(scipy_signal, op)(a, b))
    x, w = backend.asarray(a), backend.asarray(b)
    _check(backend, getattr(signal, op)(x, w), expected, like=x, dtype=x.dtype, rtol=1e-15)


# --------------------------------------------------------------------------- axes


def _batched_reference(
    op: str, a: np.ndarray, b: np.ndarray, mode: str, axes: tuple[int, ...]
) -> np.ndarray:
    """SciPy on each broadcast pair of the batch, one pair at a time."""
    rest = [d for d in range(a.ndim) if d not in axes]
    a_t, b_t = (
        np.moveaxis(a, axes, range(-len(axes), 0)),
        np.moveaxis(b, axes, range(-len(axes), 0)),
    )
    batch = np.broadcast_shapes(a_t.shape[: len(rest)], b_t.shape[: len(rest)])
    a_t = np.broadcast_to(a_t, batch + a_t.shape[len(rest) :])
    b_t = np.broadcast_to(b_t, batch + b_t.shape[len(rest) :])
    outs = [
        getattr(scipy_signal, op)(a_t[i], b_t[i], mode=mode, method="direct")
        for i in itertools.product(*map(range, batch))
    ]
    out = np.stack(outs).reshape(batch + outs[0].shape)
    return np.moveaxis(out, range(-len(axes), 0), axes)


# (in1 shape, in2 shape, axes): one kernel for many signals, many kernels for one
# signal (a filter bank), signal i with kernel i, an outer product of both, the
# convolved axis first, and two of three axes convolved.
BATCHES = {
    "samples": ((4, 20), (1, 5), -1),
    "filter-bank": ((1, 20), (3, 5), (1,)),
    "pairs": ((3, 20), (3, 6), -1),
    "outer": ((4, 1, 16), (1, 3, 5), 2),
    "axis-first": ((17, 3), (4, 3), 0),
    "two-axes": ((2, 9, 8), (2, 3, 4), (1, 2)),
    "mixed": ((2, 1, 3, 12), (2, 4, 1, 5), (3,)),
}


@pytest.mark.parametrize("case", thin(BATCHES, keep=("samples", "mixed")))
@pytest.mark.parametrize("op", ["convolve", "correlate"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("method", ["direct", "fft"])
def test_axes_broadcast_the_rest(backend: Any, case: str, op: str, mode: str, method: str) -> None:
    shape1, shape2, axes = BATCHES[case]
    complex_ = case == "pairs"
    a, b = _random(shape1, complex_, 8), _random(shape2, complex_, 9)
    axes_t = tuple(d % a.ndim for d in ((axes,) if isinstance(axes, int) else axes))
    expected = _batched_reference(op, a, b, mode, axes_t)
    x, w = backend.asarray(a), backend.asarray(b)
    got = getattr(signal, op)(x, w, mode=mode, method=method, axes=axes)
    _check(backend, got, expected, like=x, dtype=x.dtype, rtol=RTOL[method])


def test_axes_valid_swaps_along_convolved_axes_only(backend: Any) -> None:
    """The 'valid' size rule looks at the convolved axes; the batch axes just broadcast."""
    a, b = _random((5, 3), False, 10), _random((1, 8), False, 11)
    expected = _batched_reference("correlate", a, b, "valid", (1,))
    x, w = backend.asarray(a), backend.asarray(b)
    got = signal.correlate(x, w, mode="valid", axes=1)
    _check(backend, got, expected, like=x, dtype=x.dtype, rtol=1e-10)


# 1-D kernels of 8 taps and more take the polyphase form (blocks of 32 or 64
# outputs): lengths around the block sizes, one or several samples and kernels.
POLYPHASE = {
    "k8": ((100,), (8,)),
    "k33": ((257,), (33,)),
    "k256": ((600,), (256,)),
    "kernel-longer": ((40,), (70,)),
    "samples": ((3, 150), (1, 31)),
    "filter-bank": ((1, 130), (4, 64)),
    "outer": ((2, 1, 97), (1, 3, 9)),
}


@pytest.mark.parametrize("case", thin(POLYPHASE, keep=("k33", "outer")))
@pytest.mark.parametrize("op", ["convolve", "correlate"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
def test_long_1d_kernels(backend: Any, case: str, op: str, mode: str) -> None:
    shape1, shape2 = POLYPHASE[case]
    complex_ = case == "k33"
    a, b = _random(shape1, complex_, 20), _random(shape2, complex_, 21)
    expected = _batched_reference(op, a, b, mode, (a.ndim - 1,))
    x, w = backend.asarray(a), backend.asarray(b)
    got = getattr(signal, op)(x, w, mode=mode, method="direct", axes=-1)
    _check(backend, got, expected, like=x, dtype=x.dtype, rtol=1e-10)


@pytest.mark.parametrize("method", ["direct", "fft"])
@pytest.mark.parametrize("kernel", [3, 9])
def test_empty_batch(backend: Any, method: str, kernel: int) -> None:
    """No signals in the batch: an empty result of the right shape, not an error."""
    x, w = backend.asarray(np.ones((0, 5))), backend.asarray(np.ones((1, kernel)))
    got = signal.convolve(x, w, axes=-1, method=method)
    assert tuple(got.shape) == (0, 4 + kernel)
    assert got.dtype == x.dtype


# --------------------------------------------------------------------------- 2-D


SHAPES_2D = {"image": ((7, 8), (3, 4)), "small-input": ((2, 3), (4, 5)), "odd": ((6, 5), (3, 3))}


@pytest.mark.parametrize("case", thin(SHAPES_2D, keep=("small-input",)))
@pytest.mark.parametrize("op", ["convolve2d", "correlate2d"])
@pytest.mark.parametrize("mode", ["full", "same", "valid"])
@pytest.mark.parametrize("boundary", ["fill", "wrap", "symm"])
def test_2d_boundaries(backend: Any, case: str, op: str, mode: str, boundary: str) -> None:
    shape1, shape2 = SHAPES_2D[case]
    complex_ = case == "odd"
    a, b = _random(shape1, complex_, 12), _random(shape2, complex_, 13)
    x, w = backend.asarray(a), backend.asarray(b)
    fillvalues = (0, 1.5) if boundary == "fill" else (0,)
    for fillvalue, method in itertools.product(fillvalues, ("direct", "fft")):
        expected = getattr(scipy_signal, op)(a, b, mode, boundary, fillvalue)
        got = getattr(signal, op)(x, w, mode, boundary, fillvalue, method=method)
        _check(backend, got, expected, like=x, dtype=x.dtype, rtol=RTOL[method])


def test_2d_scipy_aliases_and_array_fillvalue(backend: Any) -> None:
    a, b = _random((5, 6), False, 14), _random((3, 2), False, 15)
    x, w = backend.asarray(a), backend.asarray(b)
    for alias, fill in (("pad", 2.0), ("circular", 0), ("symmetric", 0)):
        expected = scipy_signal.convolve2d(a, b, "same", alias, fill)
        fillvalue = backend.asarray(np.asarray([fill]))
        got = signal.convolve2d(x, w, "same", alias, fillvalue)
        _check(backend, got, expected, like=x, dtype=x.dtype, rtol=1e-10)


def test_correlate2d_valid_swap_is_not_conjugated(backend: Any) -> None:
    """SciPy's correlate2d reverses correlate2d(in2, in1) without conjugating it."""
    a, b = _random((2, 3), True, 16), _random((4, 5), True, 17)
    x, w = backend.asarray(a), backend.asarray(b)
    expected = scipy_signal.correlate2d(a, b, "valid")
    np.testing.assert_allclose(expected, scipy_signal.correlate2d(b, a, "valid")[::-1, ::-1])
    got = signal.correlate2d(x, w, "valid")
    _check(backend, got, expected, like=x, dtype=x.dtype, rtol=1e-8)


# --------------------------------------------------------------------------- method choice


def test_long_signals_never_go_direct(backend: Any) -> None:
    """Two 2**15-long signals: 2**31 products directly, a few million by FFT."""
    x = backend.asarray(np.ones(2**15))
    for mode in ("full", "same"):
        assert signal.choose_conv_method(x, x, mode) == "fft"
        assert signal.choose_conv_method(x, x, mode, op="correlate") == "fft"
    # 'valid' of two equal lengths is one dot product: direct, as SciPy chooses too.
    assert signal.choose_conv_method(x, x, "valid") == "direct"
    assert scipy_signal.choose_conv_method(np.ones(2**15), np.ones(2**15), "valid") == "direct"


def test_small_kernels_go_direct(backend: Any) -> None:
    x, w = backend.asarray(np.ones((64, 64))), backend.asarray(np.ones((3, 3)))
    assert signal.choose_conv_method(x, w, "same") == "direct"
    assert (
        signal.choose_conv_method(backend.asarray(np.ones(1000)), backend.asarray(np.ones(5)))
        == "direct"
    )


def test_large_integers_go_direct(backend: Any) -> None:
    """SciPy's rule: the FFT cannot round back integers whose sums pass 2**52."""
    big = backend.asarray(np.full(2**12, 2**30, dtype=np.int64))
    assert signal.choose_conv_method(big, big) == "direct"
    small = backend.asarray(np.full(2**12, 3, dtype=np.int64))
    # Dask's values would have to be computed to know: the exact route, always.
    unreadable = backend.backend.value == "dask"
    assert signal.choose_conv_method(small, small) == ("direct" if unreadable else "fft")


def test_numpy_fft_fast_path_matches_the_extension() -> None:
    """NumPy arrays go through scipy.fft: same values and dtypes as the array API fft."""
    import array_api_compat.numpy as xnp

    from xpconv._backend import fft_module

    assert fft_module(np.ones(3), xnp) is scipy_fft
    for dtype in ("float32", "float64"):
        a = _random((6, 10), False, 30).astype(dtype)
        fast = fft_module(a, xnp).rfftn(a, s=(8, 12), axes=(0, 1))
        generic = xnp.fft.rfftn(a, s=(8, 12), axes=(0, 1))
        assert fast.dtype == generic.dtype
        np.testing.assert_allclose(fast, generic, rtol=1e-5 if dtype == "float32" else 1e-12)


def test_next_fast_len_is_scipys() -> None:
    targets = [*range(1, 2000), 2**15 + 1, 2**20 - 3, 10**7 + 19, 3**13 + 1]
    for n in targets:
        assert next_fast_len(n) == scipy_fft.next_fast_len(n, real=True), n


# --------------------------------------------------------------------------- errors


def _pair(backend: Any, shape1: tuple[int, ...], shape2: tuple[int, ...]) -> tuple[Any, Any]:
    return backend.asarray(np.ones(shape1)), backend.asarray(np.ones(shape2))


@pytest.mark.parametrize(
    ("kwargs", "shapes", "match"),
    [
        ({}, ((3, 2), (2,)), "same number of dimensions"),
        ({"mode": "foo"}, ((3,), (2,)), "mode must be 'full', 'same' or 'valid', got 'foo'"),
        ({"method": "fast"}, ((3,), (2,)), "method must be 'auto', 'direct' or 'fft', got 'fast'"),
        ({"mode": "valid"}, ((3, 2), (2, 3)), r"mode='valid' needs one input .* \(3, 2\)"),
        ({}, ((0,), (2,)), "must not be empty"),
        ({}, ((3,), (0,)), "must not be empty"),
        ({"axes": 2}, ((3, 2), (2, 2)), "axes must name"),
        ({"axes": (0, -2)}, ((3, 2), (2, 2)), "must not repeat"),
        ({"axes": -1}, ((3, 5), (2, 5)), "broadcastable along the axes not convolved"),
    ],
)
@pytest.mark.parametrize("op", ["convolve", "correlate"])
def test_value_errors(
    backend: Any, op: str, kwargs: dict[str, Any], shapes: tuple[Any, Any], match: str
) -> None:
    x, w = _pair(backend, *shapes)
    with pytest.raises(ValueError, match=match):
        getattr(signal, op)(x, w, **kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "shapes", "match"),
    [
        ((), {}, ((3,), (2,)), "needs 2-D in1 and in2"),
        (("same", "reflect"), {}, ((3, 3), (2, 2)), "boundary must be .* got 'reflect'"),
        (("foo",), {}, ((3, 3), (2, 2)), "mode must be"),
        (("valid",), {}, ((3, 2), (2, 3)), "mode='valid' needs"),
        (("full", "fill", 1j), {}, ((3, 3), (2, 2)), "fillvalue=1j is complex"),
        ((), {"method": "slow"}, ((3, 3), (2, 2)), "method must be"),
        ((), {}, ((0, 3), (2, 2)), "must not be empty"),
    ],
)
@pytest.mark.parametrize("op", ["convolve2d", "correlate2d"])
def test_2d_value_errors(
    backend: Any,
    op: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    shapes: tuple[Any, Any],
    match: str,
) -> None:
    x, w = _pair(backend, *shapes)
    with pytest.raises(ValueError, match=match):
        getattr(signal, op)(x, w, *args, **kwargs)


def test_fillvalue_of_several_values(backend: Any) -> None:
    x, w = _pair(backend, (3, 3), (2, 2))
    with pytest.raises(ValueError, match="fillvalue must be a scalar or an array with one"):
        signal.convolve2d(x, w, fillvalue=backend.asarray(np.ones(2)))


def test_type_errors(backend: Any) -> None:
    x = backend.asarray(np.ones(4))
    with pytest.raises(TypeError, match="one array library"):
        signal.convolve(x, np.ones(2) if backend.backend.value != "numpy" else _foreign())
    with pytest.raises(TypeError, match="in2 must have an integer, real or complex"):
        signal.correlate(x, backend.asarray(np.ones(2, dtype=bool)))
    with pytest.raises(TypeError, match="in1 must be an array"):
        signal.convolve({"values": [1.0, 2.0]}, x)  # a list would be an array-like
    with pytest.raises(TypeError, match="axes must be None, an int or a sequence"):
        signal.convolve(x, x, axes="last")


def _foreign() -> Any:
    import array_api_strict

    return array_api_strict.ones(2)


# --------------------------------------------------------------------------- hypothesis


def _examples(backend: Any) -> int:
    if is_slow(backend):
        return int(os.environ.get("XPCONV_HYPOTHESIS_EXAMPLES_SLOW", "4"))
    return int(os.environ.get("XPCONV_HYPOTHESIS_EXAMPLES", "25"))


@st.composite
def _problems(draw: Any) -> dict[str, Any]:
    rank = draw(st.integers(1, 3))
    hi = 9 if rank == 1 else 5
    shape1 = tuple(draw(st.integers(1, hi)) for _ in range(rank))
    shape2 = tuple(draw(st.integers(1, hi)) for _ in range(rank))
    mode = draw(st.sampled_from(["full", "same", "valid"]))
    if mode == "valid" and not (
        all(m >= n for m, n in zip(shape1, shape2, strict=True))
        or all(m <= n for m, n in zip(shape1, shape2, strict=True))
    ):
        shape2 = tuple(min(m, n) for m, n in zip(shape1, shape2, strict=True))
    return {
        "shapes": (shape1, shape2),
        "mode": mode,
        "op": draw(st.sampled_from(["convolve", "correlate"])),
        "method": draw(st.sampled_from(["direct", "fft", "auto"])),
        "complex": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def test_hypothesis_shapes(backend: Any) -> None:
    @settings(
        max_examples=_examples(backend),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(problem=_problems())
    def run(problem: dict[str, Any]) -> None:
        (shape1, shape2), op = problem["shapes"], problem["op"]
        a = _random(shape1, problem["complex"], problem["seed"])
        b = _random(shape2, problem["complex"], problem["seed"] + 1)
        expected = getattr(scipy_signal, op)(a, b, mode=problem["mode"], method="direct")
        x, w = backend.asarray(a), backend.asarray(b)
        got = getattr(signal, op)(x, w, mode=problem["mode"], method=problem["method"])
        _check(backend, got, expected, like=x, dtype=x.dtype, rtol=RTOL[problem["method"]])

    run()


@st.composite
def _problems_2d(draw: Any) -> dict[str, Any]:
    shape1 = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    shape2 = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    mode = draw(st.sampled_from(["full", "same", "valid"]))
    if mode == "valid" and not (
        all(m >= n for m, n in zip(shape1, shape2, strict=True))
        or all(m <= n for m, n in zip(shape1, shape2, strict=True))
    ):
        shape2 = tuple(min(m, n) for m, n in zip(shape1, shape2, strict=True))
    return {
        "shapes": (shape1, shape2),
        "mode": mode,
        "op": draw(st.sampled_from(["convolve2d", "correlate2d"])),
        "boundary": draw(st.sampled_from(["fill", "wrap", "symm"])),
        "fillvalue": draw(st.sampled_from([0.0, -2.5])),
        "method": draw(st.sampled_from(["direct", "fft"])),
        "complex": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def test_hypothesis_2d_boundaries(backend: Any) -> None:
    """Kernels larger than the image too: 'wrap' and 'symm' repeat their pattern."""

    @settings(
        max_examples=_examples(backend),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(problem=_problems_2d())
    def run(problem: dict[str, Any]) -> None:
        (shape1, shape2), op = problem["shapes"], problem["op"]
        a = _random(shape1, problem["complex"], problem["seed"])
        b = _random(shape2, problem["complex"], problem["seed"] + 1)
        args = (problem["mode"], problem["boundary"], problem["fillvalue"])
        expected = getattr(scipy_signal, op)(a, b, *args)
        x, w = backend.asarray(a), backend.asarray(b)
        got = getattr(signal, op)(x, w, *args, method=problem["method"])
        _check(backend, got, expected, like=x, dtype=x.dtype, rtol=RTOL[problem["method"]])

    run()


def test_reachable_as_an_attribute_and_imported_on_first_use() -> None:
    """``import xpconv`` then ``xpconv.signal.convolve``, as with ``xpconv.nn``;
    neither is imported by ``import xpconv`` itself."""
    script = (
        "import sys, numpy as np, xpconv\n"
        "assert 'xpconv.signal' not in sys.modules and 'xpconv.nn' not in sys.modules\n"
        "assert {'signal', 'nn'} <= set(dir(xpconv))\n"
        "y = xpconv.signal.convolve(np.array([1.0, 2.0]), np.ones(2))\n"
        "print(y.tolist(), xpconv.nn.ReLU.__name__)\n"
        "try:\n"
        "    xpconv.sgnal\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    run = [sys.executable, "-c", script]
    done = subprocess.run(run, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "[1.0, 3.0, 2.0] ReLU",
        "module 'xpconv' has no attribute 'sgnal'",
    ]


@pytest.mark.parametrize("name", ["convolve", "correlate", "convolve2d", "correlate2d"])
def test_array_likes_as_scipy_takes_them(name: str) -> None:
    """Lists, tuples and numbers are arrays of the other input's library, else NumPy's."""
    rows = name.endswith("2d")
    in1 = [[1, 2, 3], [4, 5, 6]] if rows else [1, 2, 3, 4]
    in2 = [[0.5, -1.0]] if rows else (0.5, -1.0)
    ours, theirs = getattr(signal, name)(in1, in2), getattr(scipy_signal, name)(in1, in2)
    assert isinstance(ours, np.ndarray)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    torch = pytest.importorskip("torch")
    mixed = getattr(signal, name)(torch.asarray(in1, dtype=torch.float64), in2)
    assert isinstance(mixed, torch.Tensor)
    np.testing.assert_allclose(mixed.numpy(), theirs, rtol=1e-12)
    assert signal.choose_conv_method(in1, in2) == "direct"
