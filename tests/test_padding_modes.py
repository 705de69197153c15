"""Padding modes ('reflect', 'replicate', 'circular', 'symmetric') and padding='full'.

Oracles: for D <= 3, PyTorch — ``F.pad`` with the mode (torch's own
reflect/replicate/circular) then ``F.conv1d/2d/3d`` with padding 0, and
autograd for the gradients; 'symmetric', which torch lacks, pads by an index
gather (``index_select`` with the indices ``numpy.pad(mode='symmetric')``
gives), which autograd differentiates too. For D = 4 the same index gather
in NumPy, the loop reference, and ``np.add.at`` for the adjoint. The
``torch.nn.ConvNd`` module classes check the layers' ``padding_mode``.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference as ref
import xpconv
from reference import assert_close, is_slow, thin
from xpconv import _engine, _padding
from xpconv._backend import capabilities
from xpconv._geometry import conv_geometry

torch = pytest.importorskip("torch")
F = torch.nn.functional

MODES = ["reflect", "replicate", "circular", "symmetric"]
NUMPY_MODE = {
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
    "symmetric": "symmetric",
}
TORCH_MODES = ("reflect", "replicate", "circular")

# (input shape, weight shape, keyword arguments); the name starts with the rank.
CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "1d_pad2_s2": ((2, 3, 7), (4, 3, 3), {"padding": 2, "stride": 2}),
    "1d_same_s3_d2": ((1, 2, 8), (3, 2, 3), {"padding": "same", "stride": 3, "dilation": 2}),
    "1d_full": ((2, 2, 5), (2, 2, 4), {"padding": "full"}),
    "1d_unbatched": ((3, 6), (2, 3, 3), {"padding": 1}),
    "2d_tuple_groups": ((2, 4, 5, 6), (6, 2, 3, 2), {"padding": (2, 1), "groups": 2}),
    "2d_same_s2": ((1, 2, 5, 6), (3, 2, 3, 4), {"padding": "same", "stride": 2}),
    "2d_depthwise": ((1, 3, 6, 5), (3, 1, 3, 3), {"padding": 1, "groups": 3}),
    "1d_depthwise_same_d2": ((2, 4, 9), (4, 1, 3), {"padding": "same", "dilation": 2, "groups": 4}),
    "3d_depthwise": ((1, 2, 4, 5, 4), (2, 1, 3, 3, 2), {"padding": (1, 2, 1), "groups": 2}),
    "2d_dilated_pad_at_size": ((1, 2, 4, 4), (2, 2, 3, 3), {"padding": (3, 4), "dilation": 3}),
    "3d_mixed": ((1, 2, 4, 5, 3), (2, 2, 3, 2, 2), {"padding": (1, 2, 1), "stride": (2, 1, 1)}),
    "3d_same": ((2, 2, 4, 3, 5), (3, 2, 2, 3, 3), {"padding": "same"}),
    "4d_same_s2": ((1, 2, 3, 4, 3, 4), (2, 2, 2, 3, 2, 2), {"padding": "same", "stride": 2}),
    "4d_pad1": ((1, 1, 3, 3, 4, 3), (2, 1, 2, 2, 2, 2), {"padding": 1}),
}
SLOW_CASES = ["1d_pad2_s2", "2d_same_s2", "3d_same"]


def _data(shape: tuple[int, ...], seed: int, dtype: str = "float64") -> np.ndarray:
    # Values exactly representable in the dtype: the float64 oracle sees the same numbers.
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype).astype(np.float64)


def _pads(x_shape: tuple[int, ...], w_shape: tuple[int, ...], kw: dict[str, Any]) -> ref.Pads:
    rank = len(w_shape) - 2
    size, kernel = x_shape[-rank:], w_shape[2:]
    stride, dilation = (
        ref._ntuple(kw.get("stride", 1), rank),
        ref._ntuple(kw.get("dilation", 1), rank),
    )
    if kw.get("padding") == "full":
        return tuple((d * (k - 1), d * (k - 1)) for k, d in zip(kernel, dilation, strict=True))
    return ref.padding_pairs(kw.get("padding", 0), size, kernel, stride, dilation)


def _gather_indices(n: int, pad: tuple[int, int], mode: str) -> np.ndarray:
    """The input index behind each padded position, as numpy.pad defines the mode."""
    return np.pad(np.arange(n), pad, mode=NUMPY_MODE[mode])  # type: ignore[call-overload]


def _torch_pad(xt: Any, pads: ref.Pads, mode: str) -> Any:
    if mode in TORCH_MODES:
        return F.pad(xt, [v for pair in reversed(pads) for v in pair], mode=mode)
    rank = len(pads)
    for axis, pad in enumerate(pads):
        index = torch.from_numpy(_gather_indices(xt.shape[xt.ndim - rank + axis], pad, mode))
        xt = torch.index_select(xt, xt.ndim - rank + axis, index)
    return xt


def torch_oracle(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    gy: np.ndarray | None,
    mode: str,
    kw: dict[str, Any],
) -> tuple[np.ndarray, ...]:
    """(y, dL/dx, dL/dW, dL/db): pad with the mode, convolve with padding 0, autograd."""
    rank = w.ndim - 2
    pads = _pads(x.shape, w.shape, kw)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    batched = xt if x.ndim == rank + 2 else xt[None]
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
    args = {k: v for k, v in kw.items() if k != "padding"}
    y = conv(_torch_pad(batched, pads, mode), wt, bt, **args)
    y = y if x.ndim == rank + 2 else y[0]
    if gy is None:
        return (y.detach().numpy(),)
    y.backward(torch.from_numpy(gy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def numpy_oracle(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    gy: np.ndarray | None,
    mode: str,
    kw: dict[str, Any],
) -> tuple[np.ndarray, ...]:
    """Any rank: gather with numpy.pad's indices, the loop reference, np.add.at for the adjoint."""
    rank = w.ndim - 2
    pads = _pads(x.shape, w.shape, kw)
    index = np.ix_(
        *(_gather_indices(n, p, mode) for n, p in zip(x.shape[-rank:], pads, strict=True))
    )
    padded = x[(..., *index)]
    args = {k: v for k, v in kw.items() if k != "padding"}
    y = ref.conv(padded, w, b, **args)
    if gy is None:
        return (y,)
    g_padded, gw, gb = ref.conv_backward(gy, padded, w, **args)
    gx = np.zeros_like(x)
    np.add.at(gx, (..., *index), g_padded)
    return y, gx, gw, gb


def _oracle(*args: Any) -> tuple[np.ndarray, ...]:
    return torch_oracle(*args) if args[1].ndim <= 5 else numpy_oracle(*args)


def _problem(case: str, dtype: str) -> tuple[np.ndarray, ...]:
    xs, ws, _ = CASES[case]
    return _data(xs, 1, dtype), _data(ws, 2, dtype), _data((ws[0],), 3, dtype)


def _fits(case: str, mode: str) -> bool:
    """Whether the case's pads are allowed for the mode (reflect needs pad < size)."""
    xs, ws, kw = CASES[case]
    rank = len(ws) - 2
    sizes = xs[-rank:]
    limit = (lambda n: n - 1) if mode == "reflect" else (lambda n: n)
    return all(max(p) <= limit(n) for p, n in zip(_pads(xs, ws, kw), sizes, strict=True))


# --------------------------------------------------------------------------- oracles agree


def test_numpy_oracle_matches_torch_oracle() -> None:
    """The two oracles agree with each other, so either may stand in for D = 4."""
    for mode in MODES:
        x, w, b = _problem("2d_same_s2", "float64")
        kw = CASES["2d_same_s2"][2]
        (y,) = torch_oracle(x, w, b, None, mode, kw)
        gy = _data(y.shape, 4)
        for t, n in zip(
            torch_oracle(x, w, b, gy, mode, kw), numpy_oracle(x, w, b, gy, mode, kw), strict=True
        ):
            np.testing.assert_allclose(t, n, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- forward and backward


@pytest.mark.parametrize("dtype", thin(["float64", "float32"], ["float64"]))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", thin(CASES, SLOW_CASES))
def test_conv_and_gradients_match_oracle(backend: Any, case: str, mode: str, dtype: str) -> None:
    if not _fits(case, mode):
        pytest.skip(f"{case}'s padding is too large for {mode} (checked in test_pad_limits)")
    x, w, b = _problem(case, dtype)
    kw = CASES[case][2]
    rank = w.ndim - 2
    (y_ref,) = _oracle(x, w, b, None, mode, kw)
    gy = _data(y_ref.shape, 4, dtype)
    _, gx_ref, gw_ref, gb_ref = _oracle(x, w, b, gy, mode, kw)
    xb, wb, bb, gyb = (backend.asarray(a, dtype) for a in (x, w, b, gy))
    forward = getattr(xpconv, f"conv{rank}d") if rank <= 3 else xpconv.conv
    backward = getattr(xpconv, f"conv{rank}d_backward") if rank <= 3 else xpconv.conv_backward
    assert_close(backend, forward(xb, wb, bb, padding_mode=mode, **kw), y_ref, like=xb)
    assert_close(backend, xpconv.conv(xb, wb, bb, padding_mode=mode, **kw), y_ref, like=xb)
    grads = backward(gyb, xb, wb, padding_mode=mode, **kw)
    assert_close(backend, grads.input, gx_ref, like=xb)
    assert_close(backend, grads.weight, gw_ref, like=xb)
    assert_close(backend, grads.bias, gb_ref, like=xb)
    # The inputs are untouched (the adjoint may update the engine's gradient in place).
    np.testing.assert_array_equal(backend.to_numpy(xb), x.astype(dtype))
    np.testing.assert_array_equal(backend.to_numpy(gyb), gy.astype(dtype))


# The depthwise kernel pads its own copies of the planes with the mode; without
# a buffer (scratch=False, or a library without in-place slices) it pads a copy of
# each chunk; with planes too large for a chunk it works in bands of rows, and
# then the caller pads x with the mode first (the band's mirrored rows are in
# other bands). A workspace limit of 2 KiB forces the bands here.
DEPTHWISE_ROUTES = {
    "planes": ({}, None, True),
    "no_buffer": ({"scratch": False}, None, True),
    "bands": ({}, 2048, False),
}


def _route_matches_oracle(
    backend: Any,
    mode: str,
    forced: dict[str, Any],
    limit: int | None,
    shapes: tuple[tuple[int, ...], tuple[int, ...]],
    kw: dict[str, Any],
) -> _engine.Route:
    """Check conv and its gradients against the oracle under a forced route; return the route."""
    x_shape, w_shape = shapes
    x, w, b = _data(x_shape, 1), _data(w_shape, 2), _data((w_shape[0],), 3)
    (y_ref,) = _oracle(x, w, b, None, mode, kw)
    gy = _data(y_ref.shape, 4)
    _, *grads_ref = _oracle(x, w, b, gy, mode, kw)
    xb, wb, bb, gyb = (backend.asarray(a) for a in (x, w, b, gy))
    bounded = xpconv.workspace_limit(limit) if limit else contextlib.nullcontext()
    with _engine.forced_route(**forced), bounded:
        route = _engine.plan(conv_geometry(x.shape, w.shape, **kw), xb, padding_mode=mode)
        y = xpconv.conv(xb, wb, bb, padding_mode=mode, **kw)
        grads = xpconv.conv_backward(gyb, xb, wb, padding_mode=mode, **kw)
    assert_close(backend, y, y_ref, like=xb)
    for got, want in zip(grads, grads_ref, strict=True):
        assert_close(backend, got, want, like=xb)
    return route


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", DEPTHWISE_ROUTES)
def test_depthwise_kernel_pads_with_the_mode(backend: Any, mode: str, how: str) -> None:
    forced, limit, pads_itself = DEPTHWISE_ROUTES[how]
    kw = {"padding": (2, 3), "dilation": (2, 1), "groups": 3}
    shapes = ((2, 3, 12, 10), (3, 1, 3, 4))
    route = _route_matches_oracle(backend, mode, forced, limit, shapes, kw)
    assert route.kernel == "depthwise"
    assert route.padding_mode == (mode if pads_itself else "zeros")


# The im2col route pads each tile's copy of whole samples with the mode (on
# libraries with buffers of their own); tiles that are bands of a sample (a
# 2 KiB workspace here) or a library without buffers take a padded copy of x.
# One sample's columns here (37 rows x 280 positions x 8 bytes) fit in 120 kB
# but not in a worker's half of it.
GEMM_ROUTES = {
    "samples": ({}, None, True),
    "samples_on_workers": ({"workers": 2}, None, True),
    "samples_in_a_tight_limit": ({"workers": 1}, 120_000, True),
    "bands_on_workers": ({"workers": 2}, 120_000, False),
    "no_buffer": ({"scratch": False}, None, False),
    "bands": ({}, 2048, False),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", GEMM_ROUTES)
def test_im2col_tiles_pad_with_the_mode(backend: Any, mode: str, how: str) -> None:
    forced, limit, pads_itself = GEMM_ROUTES[how]
    kw = {"padding": (2, 1, 3), "stride": (1, 2, 1), "dilation": (1, 1, 2)}
    shapes = ((3, 2, 5, 6, 8), (4, 2, 3, 2, 3))
    route = _route_matches_oracle(backend, mode, forced, limit, shapes, kw)
    assert route.kernel == "gemm"
    if forced.get("workers", 1) > route.workers:
        pytest.skip("no xpconv workers with this library or on one CPU thread")
    pads_itself = pads_itself and capabilities(backend.asarray(np.zeros(1))).scratch
    assert route.padding_mode == (mode if pads_itself else "zeros")


@pytest.mark.parametrize("case", thin(CASES, ["1d_pad2_s2"]))
def test_zeros_mode_is_the_default(backend: Any, case: str) -> None:
    x, w, _ = _problem(case, "float64")
    kw = CASES[case][2]
    xb, wb = backend.asarray(x), backend.asarray(w)
    default = backend.to_numpy(xpconv.conv(xb, wb, **kw))
    zeros = backend.to_numpy(xpconv.conv(xb, wb, padding_mode="zeros", **kw))
    np.testing.assert_array_equal(default, zeros)


@pytest.mark.parametrize("mode", MODES)
def test_padding_adjoint_identity(backend: Any, mode: str) -> None:
    """<pad(x), g> == <x, pad_adjoint(g)> with asymmetric pads up to the mode's limit, D = 3."""
    top = 3 if mode == "reflect" else 4  # size 4 on the first axis: the largest pad allowed
    pads = ((top, 1), (0, 2 if mode != "reflect" else 1), (2, 0))
    _check_adjoint_identity(backend, mode, (2, 2, 4, 3, 5), pads)


@pytest.mark.parametrize("mode", MODES)
def test_last_axis_padded_a_column_at_a_time(
    backend: Any, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the host, the last axis's padding of an array with many rows is copied and
    folded one padded position at a time (``_padding.ROWS_PER_COLUMN``); forced here on
    small arrays: the padding, its adjoint, the depthwise kernel and the im2col tiles."""
    monkeypatch.setattr(_padding, "ROWS_PER_COLUMN", 1)
    shape = (2, 2, 3, 6)
    pads = ((1, 2), (2, 3) if mode != "reflect" else (3, 2))
    _check_adjoint_identity(backend, mode, shape, pads)
    caps = capabilities(backend.asarray(np.zeros(1)))
    host = caps.in_place and not caps.gpu
    assert _padding._by_columns(backend.asarray(np.zeros(shape)), shape, 2, 3) == host
    depthwise = {"padding": (2, 3), "dilation": (2, 1), "groups": 3}
    _route_matches_oracle(backend, mode, {}, None, ((2, 3, 12, 10), (3, 1, 3, 4)), depthwise)
    gemm = {"padding": (2, 1, 3), "stride": (1, 2, 1), "dilation": (1, 1, 2)}
    _route_matches_oracle(backend, mode, {}, None, ((3, 2, 5, 6, 8), (4, 2, 3, 2, 3)), gemm)


def _check_adjoint_identity(backend: Any, mode: str, shape: tuple[int, ...], pads: Any) -> None:
    x = _data(shape, 5)
    xb = backend.asarray(x)
    padded = _padding.pad(xb, pads, mode, backend.xp)
    g = _data(tuple(padded.shape), 6)
    # pad_adjoint may update its argument in place: give it its own copy.
    folded = _padding.pad_adjoint(backend.asarray(g.copy()), pads, mode, backend.xp)
    assert tuple(folded.shape) == shape
    lhs = float(np.vdot(backend.to_numpy(padded), g))
    rhs = float(np.vdot(x, backend.to_numpy(folded)))
    assert math.isclose(lhs, rhs, rel_tol=1e-12)
    index = np.ix_(*(_gather_indices(n, p, mode) for n, p in zip(shape[2:], pads, strict=True)))
    np.testing.assert_array_equal(backend.to_numpy(padded), x[(..., *index)])


# --------------------------------------------------------------------------- hypothesis


@st.composite
def problems(draw: st.DrawFn) -> dict[str, Any]:
    rank = draw(st.integers(1, 3))
    mode = draw(st.sampled_from(MODES))
    groups = draw(st.sampled_from([1, 2]))
    k = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(rank))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(rank))
    padding = draw(st.one_of(st.sampled_from(["same", "valid", "full"]), st.integers(0, 2)))
    reach = [d * (kk - 1) + 1 for kk, d in zip(k, dilation, strict=True)]
    sizes = []
    for a in range(rank):
        pad = {"same": reach[a] - 1, "full": reach[a] - 1, "valid": 0}.get(padding, padding)  # type: ignore[arg-type]
        # Big enough for the mode's limit and for the kernel to fit.
        low = max(pad + (mode == "reflect"), 1, reach[a] - 2 * pad)
        sizes.append(low + draw(st.integers(0, 3)))
    return {
        "mode": mode,
        "x_shape": (draw(st.integers(1, 2)), groups * draw(st.integers(1, 2)), *sizes),
        "groups": groups,
        "w_shape": (groups * draw(st.integers(1, 2)), k),
        "kw": {"stride": stride, "dilation": dilation, "padding": padding, "groups": groups},
        "seed": draw(st.integers(0, 2**16)),
    }


def test_hypothesis_modes_ranks_strides(backend: Any) -> None:
    examples = 4 if is_slow(backend) else 30

    @settings(
        deadline=None,
        derandomize=True,
        database=None,
        max_examples=examples,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(problem=problems())
    def run(problem: dict[str, Any]) -> None:
        xs, (o, k), kw, mode = (
            problem["x_shape"],
            problem["w_shape"],
            problem["kw"],
            problem["mode"],
        )
        ws = (o, xs[1] // problem["groups"], *k)
        seed = problem["seed"]
        x, w, b = _data(xs, seed), _data(ws, seed + 1), _data((o,), seed + 2)
        (y_ref,) = torch_oracle(x, w, b, None, mode, kw)
        gy = _data(y_ref.shape, seed + 3)
        _, gx, gw, gb = torch_oracle(x, w, b, gy, mode, kw)
        xb, wb, bb, gyb = (backend.asarray(a) for a in (x, w, b, gy))
        assert_close(backend, xpconv.conv(xb, wb, bb, padding_mode=mode, **kw), y_ref, like=xb)
        grads = xpconv.conv_backward(gyb, xb, wb, padding_mode=mode, **kw)
        for got, want in zip(grads, (gx, gw, gb), strict=True):
            assert_close(backend, got, want, like=xb)

    run()


# --------------------------------------------------------------------------- padding='full'


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_full_is_true_convolution_of_scipy(backend: Any, rank: int) -> None:
    """With the kernel flipped, padding='full' is scipy.signal.convolve(mode='full')."""
    signal = pytest.importorskip("scipy.signal")
    x = _data((1, 1, *(5, 4, 3)[:rank]), 7)
    w = _data((1, 1, *(3, 2, 2)[:rank]), 8)
    flipped = np.flip(w, axis=tuple(range(2, rank + 2))).copy()
    xb, wb = backend.asarray(x), backend.asarray(flipped)
    y = xpconv.conv(xb, wb, padding="full")
    assert_close(backend, y, signal.convolve(x, w, mode="full"), like=xb)


def test_full_with_dilation_and_backward(backend: Any) -> None:
    """'full' pads dilation*(k-1) per side; its gradients are torch's for that padding."""
    x, w = _data((2, 2, 6, 5), 9), _data((3, 2, 3, 2), 10)
    kw = {"stride": (2, 1), "dilation": (2, 3)}
    y_ref = ref.torch_conv(x, w, padding=(4, 3), **kw)
    gy = _data(y_ref.shape, 11)
    gx, gw, gb = ref.torch_conv_grads(gy, x, w, padding=(4, 3), **kw)
    xb, wb, gyb = (backend.asarray(a) for a in (x, w, gy))
    assert_close(backend, xpconv.conv2d(xb, wb, padding="full", **kw), y_ref, like=xb)
    grads = xpconv.conv2d_backward(gyb, xb, wb, padding="full", **kw)
    for got, want in zip(grads, (gx, gw, gb), strict=True):
        assert_close(backend, got, want, like=xb)


def test_layers_accept_full() -> None:
    layer = xpconv.Conv1d(2, 3, 4, padding="full", rng=0)
    assert layer.padding == "full"
    assert layer(np.ones((1, 2, 5))).shape == (1, 3, 8)


# --------------------------------------------------------------------------- layers and adapters


@pytest.mark.parametrize("mode", [*TORCH_MODES, "zeros"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_layers_match_torch_modules(mode: str, rank: int) -> None:
    """Conv1d/2d/3d(padding_mode=...) against torch.nn.Conv1d/2d/3d with the same weights."""
    layer = getattr(xpconv, f"Conv{rank}d")(2, 4, 3, stride=2, padding=2, padding_mode=mode, rng=1)
    module = getattr(torch.nn, f"Conv{rank}d")(2, 4, 3, stride=2, padding=2, padding_mode=mode)
    module = module.double()
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.weight))
        module.bias.copy_(torch.from_numpy(layer.bias))
    x = _data((2, 2, *(5, 4, 3)[:rank]), 12)
    xt = torch.from_numpy(x).requires_grad_()
    yt = module(xt)
    y = layer(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    gy = _data(y.shape, 13)
    yt.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(layer.backward(gy), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        layer.grad_weight, module.weight.grad.numpy(), rtol=1e-12, atol=1e-12
    )
    assert (f"padding_mode={mode!r}" in repr(layer)) == (mode != "zeros")


def test_torch_adapter_module_matches_torch() -> None:
    import xpconv.torch as xtorch

    ours = xtorch.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype=torch.float64, rng=2)
    theirs = torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.from_numpy(_data((1, 2, 5, 4), 14))
    for module in (ours, theirs):
        module(x).square().sum().backward()
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad, rtol=1e-12)
    assert "padding_mode='reflect'" in repr(ours)
    xt = x.clone().requires_grad_()
    (y,) = torch_oracle(
        x.numpy(),
        ours.weight.detach().numpy(),
        ours.bias.detach().numpy(),
        None,
        "symmetric",
        {"padding": 1},
    )
    out = xtorch.conv2d(xt, ours.weight, ours.bias, padding=1, padding_mode="symmetric")
    np.testing.assert_allclose(out.detach().numpy(), y, rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_torch_adapter_double_backward(mode: str) -> None:
    """gradcheck and gradgradcheck through the explicit backward and the padding's adjoint."""
    import xpconv.torch as xtorch

    x = torch.from_numpy(_data((1, 2, 4, 5), 30)).requires_grad_()
    w = torch.from_numpy(_data((3, 2, 3, 2), 31)).requires_grad_()

    def f(x_: Any, w_: Any) -> Any:
        return xtorch.conv2d(x_, w_, padding=(2, 1), stride=(2, 1), padding_mode=mode)

    assert torch.autograd.gradcheck(f, (x, w))
    assert torch.autograd.gradgradcheck(f, (x, w))


def test_jax_adapter_gradient() -> None:
    jax = pytest.importorskip("jax")
    import xpconv.jax as xjax

    jax.config.update("jax_enable_x64", True)
    x, w, b = _problem("2d_same_s2", "float64")
    kw = CASES["2d_same_s2"][2]
    (y_ref,) = torch_oracle(x, w, b, None, "circular", kw)
    gy = _data(y_ref.shape, 15)
    _, gx, gw, _ = torch_oracle(x, w, b, gy, "circular", kw)

    def loss(x_: Any, w_: Any) -> Any:
        return (xjax.conv2d(x_, w_, jax.numpy.asarray(b), padding_mode="circular", **kw) * gy).sum()

    got_x, got_w = jax.grad(loss, argnums=(0, 1))(jax.numpy.asarray(x), jax.numpy.asarray(w))
    np.testing.assert_allclose(np.asarray(got_x), gx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(got_w), gw, rtol=1e-10, atol=1e-12)


def test_dask_adapter_and_blockwise_layer() -> None:
    da = pytest.importorskip("dask.array")
    import xpconv.dask as xdask

    x, w, b = _problem("3d_same", "float64")
    kw = CASES["3d_same"][2]
    (y_ref,) = torch_oracle(x, w, b, None, "replicate", kw)
    gy = _data(y_ref.shape, 16)
    _, gx, gw, gb = torch_oracle(x, w, b, gy, "replicate", kw)
    xd = da.from_array(x, chunks=(1, 2, 4, 3, 5))
    y = xdask.conv3d(xd, w, b, padding_mode="replicate", **kw)
    np.testing.assert_allclose(y.compute(), y_ref, rtol=1e-10, atol=1e-12)
    grads = xdask.conv_backward(da.from_array(gy, chunks=1), xd, w, padding_mode="replicate", **kw)
    for got, want in zip(grads, (gx, gw, gb), strict=True):
        np.testing.assert_allclose(got.compute(), want, rtol=1e-10, atol=1e-12)
    layer = xdask.BlockwiseConv(xpconv.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", rng=0))
    x2 = _data((2, 2, 4, 4), 17)
    np.testing.assert_allclose(
        layer.forward(da.from_array(x2, chunks=1)).compute(), layer.layer(x2)
    )
    with pytest.raises(ValueError, match="spatial axis H of size 4"):
        xdask.conv2d(da.from_array(x2), np.ones((1, 2, 3, 3)), padding=4, padding_mode="reflect")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("mode", "size", "allowed"),
    [("reflect", 4, 3), ("symmetric", 4, 4), ("circular", 4, 4), ("replicate", 2, 9)],
)
def test_pad_limits(backend: Any, mode: str, size: int, allowed: int) -> None:
    """The largest pad each mode allows works; one more is a ValueError naming the axis."""
    x = backend.asarray(_data((1, 1, 5, size), 18))
    w = backend.asarray(np.ones((1, 1, 1, 1)))
    y = xpconv.conv2d(x, w, padding=(0, allowed), padding_mode=mode)
    assert tuple(y.shape) == (1, 1, 5, size + 2 * allowed)
    if mode == "replicate":
        return  # no limit: the edge repeats as often as needed
    words = "smaller than" if mode == "reflect" else "at most"
    msg = (
        f"padding_mode={mode!r} needs a padding {words} the input size on each side, "
        f"got padding ({allowed + 1}, {allowed + 1}) on spatial axis W of size {size}"
    )
    with pytest.raises(ValueError, match=re.escape(msg)):
        xpconv.conv2d(x, w, padding=(0, allowed + 1), padding_mode=mode)
    g = backend.asarray(np.ones((1, 1, 5, size + 2 * allowed + 2)))
    with pytest.raises(ValueError, match=re.escape(msg)):
        xpconv.conv2d_backward(g, x, w, padding=(0, allowed + 1), padding_mode=mode)


def test_pad_limit_names_axis_for_any_rank() -> None:
    x, w = np.ones((1, 1, 3, 3, 3, 2)), np.ones((1, 1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="on spatial axis S4 of size 2"):
        xpconv.conv(x, w, padding=2, padding_mode="reflect")


@pytest.mark.parametrize("bad", ["mirror", "Reflect", "", None, 0])
def test_unknown_mode_lists_the_valid_ones(bad: object) -> None:
    msg = (
        "padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular', 'symmetric', "
        f"got {bad!r}"
    )
    x, w = np.ones((1, 1, 4)), np.ones((1, 1, 2))
    for call in (
        lambda: xpconv.conv1d(x, w, padding_mode=bad),
        lambda: xpconv.conv_backward(np.ones((1, 1, 3)), x, w, padding_mode=bad),
        lambda: xpconv.Conv2d(1, 1, 2, padding_mode=bad),
    ):
        with pytest.raises(ValueError, match=re.escape(msg)):
            call()


def test_transposed_convolution_is_zeros_only() -> None:
    x, w = np.ones((1, 1, 4)), np.ones((1, 1, 2))
    msg = "supports only padding_mode='zeros'"
    with pytest.raises(
        ValueError, match=r"conv_transpose1d " + msg + ".*got padding_mode='reflect'"
    ):
        xpconv.conv_transpose1d(x, w, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"conv_transpose_backward " + msg):
        xpconv.conv_transpose_backward(np.ones((1, 1, 5)), x, w, padding_mode="circular")
    with pytest.raises(ValueError, match=r"ConvTranspose2d " + msg):
        xpconv.ConvTranspose2d(1, 1, 2, padding_mode="replicate")
    # 'zeros' is accepted, as torch's ConvTranspose accepts it.
    assert xpconv.conv_transpose1d(x, w, padding_mode="zeros").shape == (1, 1, 5)
    assert xpconv.ConvTranspose1d(1, 1, 2, padding_mode="zeros").padding_mode == "zeros"
