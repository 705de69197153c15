"""Complex (complex64, complex128) and half precision (float16, bfloat16) on every backend.

Oracles: PyTorch's complex convolutions (``F.conv1d/2d/3d``,
``F.conv_transpose*``, ``F.unfold``/``F.fold``, ``torch.nn.Conv*d``) and
autograd, whose gradient for complex tensors is the conjugate Wirtinger
derivative: for a convolution that is the adjoint, which is what xpconv's
backward returns. complex128 agrees to 1e-10, complex64 to 1e-4 (relative
to the largest magnitude). JAX's own ``lax.conv_general_dilated`` checks
the JAX adapter, whose VJP convention (the transpose, not the adjoint)
differs from torch's.

Half precision is computed in float32 and narrowed: each result must come
back in the input's dtype and lie within 1e-2 (float16) or 4e-2 (bfloat16)
of the float64 result on the same (rounded) inputs, relative to its largest
magnitude.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import xpconv
from reference import assert_close, thin

torch = pytest.importorskip("torch")
F = torch.nn.functional

COMPLEX = ["complex128", "complex64"]
RTOL = {"complex128": 1e-10, "complex64": 1e-4}
HALF_RTOL = {"float16": 1e-2, "bfloat16": 4e-2}

CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "1d_s2_pad": ((2, 3, 9), (4, 3, 3), {"stride": 2, "padding": 1}),
    "1d_groups_dil": ((1, 4, 10), (6, 2, 3), {"groups": 2, "dilation": 2, "padding": 2}),
    "2d_same": ((2, 2, 6, 5), (3, 2, 3, 2), {"padding": "same"}),
    "2d_depthwise_s2": ((1, 3, 7, 6), (3, 1, 3, 3), {"groups": 3, "stride": 2, "padding": 1}),
    "2d_pointwise": ((2, 3, 4, 4), (5, 3, 1, 1), {}),
    "3d_mixed": ((1, 2, 4, 5, 3), (2, 2, 2, 3, 2), {"stride": (1, 2, 1), "padding": (1, 0, 1)}),
}
SLOW = ["1d_s2_pad", "2d_same"]


def _complex(shape: tuple[int, ...], seed: int, dtype: str = "complex128") -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return z.astype(dtype).astype(np.complex128)  # values exact in the dtype


def _torch_conv(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, gy: np.ndarray | None, kw: dict[str, Any]
) -> tuple[Any, ...]:
    rank = w.ndim - 2
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    with warnings.catch_warnings():  # torch pads a copy for 'same' with even kernels: fine here
        warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)
        y = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank](xt, wt, bt, **kw)
    if gy is None:
        return (y.detach().numpy(),)
    y.backward(torch.from_numpy(gy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def _rel_close(got: np.ndarray, want: np.ndarray, rtol: float) -> None:
    scale = float(np.max(np.abs(want)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(scale, 1e-300))


# --------------------------------------------------------------------------- complex


@pytest.mark.parametrize("dtype", thin(COMPLEX, ["complex128"]))
@pytest.mark.parametrize("case", thin(CASES, SLOW))
def test_complex_conv_and_backward_match_torch(backend: Any, case: str, dtype: str) -> None:
    xs, ws, kw = CASES[case]
    x, w, b = _complex(xs, 1, dtype), _complex(ws, 2, dtype), _complex((ws[0],), 3, dtype)
    (y_ref,) = _torch_conv(x, w, b, None, kw)
    gy = _complex(y_ref.shape, 4, dtype)
    _, gx, gw, gb = _torch_conv(x, w, b, gy, kw)
    xb, wb, bb, gyb = (backend.asarray(a, dtype) for a in (x, w, b, gy))
    y = xpconv.conv(xb, wb, bb, **kw)
    assert_close(backend, y, y_ref, like=xb, rtol=RTOL[dtype])
    grads = xpconv.conv_backward(gyb, xb, wb, **kw)
    for got, want in zip(grads, (gx, gw, gb), strict=True):
        assert_close(backend, got, want, like=xb, rtol=RTOL[dtype])


@pytest.mark.parametrize("mode", ["reflect", "circular"])
def test_complex_with_padding_mode(backend: Any, mode: str) -> None:
    x, w, b = _complex((2, 2, 5, 6), 5), _complex((3, 2, 3, 3), 6), _complex((3,), 7)
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    yt = F.conv2d(F.pad(xt, (2, 2, 1, 1), mode=mode), wt, bt, stride=2)
    gy = _complex(tuple(yt.shape), 8)
    yt.backward(torch.from_numpy(gy))
    xb, wb, bb, gyb = (backend.asarray(a) for a in (x, w, b, gy))
    kw = {"padding": (1, 2), "stride": 2, "padding_mode": mode}
    assert_close(backend, xpconv.conv2d(xb, wb, bb, **kw), yt.detach().numpy(), like=xb)
    grads = xpconv.conv2d_backward(gyb, xb, wb, **kw)
    for got, want in zip(grads, (xt.grad, wt.grad, bt.grad), strict=True):
        assert_close(backend, got, want.numpy(), like=xb)


@pytest.mark.parametrize("dtype", thin(COMPLEX, ["complex128"]))
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_complex_transpose_and_its_backward_match_torch(
    backend: Any, rank: int, dtype: str
) -> None:
    x = _complex((2, 4, *(4, 3, 3)[:rank]), 9, dtype)
    w = _complex((4, 3, *(3, 2, 2)[:rank]), 10, dtype)
    b = _complex((6,), 11, dtype)
    kw = {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2}
    xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    f = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[rank]
    yt = f(xt, wt, bt, **kw)
    gy = _complex(tuple(yt.shape), 12, dtype)
    yt.backward(torch.from_numpy(gy))
    xb, wb, bb, gyb = (backend.asarray(a, dtype) for a in (x, w, b, gy))
    y = xpconv.conv_transpose(xb, wb, bb, **kw)
    assert_close(backend, y, yt.detach().numpy(), like=xb, rtol=RTOL[dtype])
    grads = xpconv.conv_transpose_backward(gyb, xb, wb, **kw)
    for got, want in zip(grads, (xt.grad, wt.grad, bt.grad), strict=True):
        assert_close(backend, got, want.numpy(), like=xb, rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", thin(COMPLEX, ["complex128"]))
def test_complex_unfold_fold_match_torch(backend: Any, dtype: str) -> None:
    x = _complex((2, 3, 6, 5), 13, dtype)
    kw = {"stride": (2, 1), "padding": 1, "dilation": (1, 2)}
    cols_ref = F.unfold(torch.from_numpy(x), (3, 2), **kw).numpy()
    xb = backend.asarray(x, dtype)
    cols = xpconv.unfold(xb, (3, 2), **kw)
    assert_close(backend, cols, cols_ref, like=xb, rtol=RTOL[dtype])
    back_ref = F.fold(torch.from_numpy(cols_ref), (6, 5), (3, 2), **kw).numpy()
    assert_close(
        backend, xpconv.fold(cols, (6, 5), (3, 2), **kw), back_ref, like=xb, rtol=RTOL[dtype]
    )


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_complex_layers_match_torch_modules(backend: Any, rank: int) -> None:
    """Conv{rank}d(dtype=complex128) trains like torch.nn.Conv{rank}d with the same weights."""
    dtype = backend.dtype("complex128")
    layer = getattr(xpconv, f"Conv{rank}d")(
        2, 4, 3, stride=2, padding=1, xp=backend.xp, device=backend.device, dtype=dtype, rng=3
    )
    assert layer.weight.dtype == dtype
    weight, bias = (np.array(backend.to_numpy(p)) for p in (layer.weight, layer.bias))
    # torch's initialisation: real and imaginary parts each in U(-1/sqrt(fan_in), +).
    bound = 1 / np.sqrt(2 * 3**rank)
    assert np.abs(weight.imag).max() <= bound
    assert np.abs(weight.imag).max() > bound / 2
    module = getattr(torch.nn, f"Conv{rank}d")(2, 4, 3, stride=2, padding=1, dtype=torch.complex128)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(weight))
        module.bias.copy_(torch.from_numpy(bias))
    x = _complex((2, 2, *(6, 5, 4)[:rank]), 14)
    xt = torch.from_numpy(x).requires_grad_()
    yt = module(xt)
    xb = backend.asarray(x)
    y = layer(xb)
    assert_close(backend, y, yt.detach().numpy(), like=xb)
    gy = _complex(tuple(yt.shape), 15)
    yt.backward(torch.from_numpy(gy))
    assert_close(backend, layer.backward(backend.asarray(gy)), xt.grad.numpy(), like=xb)
    assert_close(backend, layer.grad_weight, module.weight.grad.numpy(), like=xb)
    assert_close(backend, layer.grad_bias, module.bias.grad.numpy(), like=xb)
    layer.step(0.1)
    with torch.no_grad():
        module.weight -= 0.1 * module.weight.grad
    assert_close(backend, layer.weight, module.weight.detach().numpy(), like=xb)


def test_complex_torch_adapter_autograd_matches_torch() -> None:
    import xpconv.torch as xtorch

    x, w, b = _complex((2, 2, 6, 5), 16), _complex((4, 1, 3, 3), 17), _complex((4,), 18)
    results = []
    for conv in (F.conv2d, xtorch.conv2d):
        xt, wt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        loss = conv(xt, wt, bt, stride=2, padding=1, groups=2).abs().square().sum()
        loss.backward()
        results.append((xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()))
    for ours, theirs in zip(*results, strict=True):
        _rel_close(ours, theirs, 1e-10)


def test_complex_jax_adapter_matches_lax_conv() -> None:
    """The JAX adapter's VJP is JAX's (the transpose), checked against lax.conv_general_dilated."""
    jax = pytest.importorskip("jax")
    import xpconv.jax as xjax

    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    x, w, b = (
        jnp.asarray(a)
        for a in (_complex((2, 2, 6, 5), 19), _complex((3, 2, 3, 2), 20), _complex((3,), 21))
    )

    def lax_conv(x_: Any, w_: Any, b_: Any) -> Any:
        y = jax.lax.conv_general_dilated(x_, w_, (2, 1), [(1, 1), (0, 0)])
        return y + b_[:, None, None]

    def ours(x_: Any, w_: Any, b_: Any) -> Any:
        return xjax.conv2d(x_, w_, b_, stride=(2, 1), padding=(1, 0))

    y_ref, vjp_ref = jax.vjp(lax_conv, x, w, b)
    y, vjp = jax.vjp(ours, x, w, b)
    _rel_close(np.asarray(y), np.asarray(y_ref), 1e-10)
    ct = jnp.asarray(_complex(tuple(y.shape), 22))
    for got, want in zip(vjp(ct), vjp_ref(ct), strict=True):
        _rel_close(np.asarray(got), np.asarray(want), 1e-10)


def test_complex_dask_adapter() -> None:
    da = pytest.importorskip("dask.array")
    import xpconv.dask as xdask

    xs, ws, kw = CASES["2d_same"]
    x, w, b = _complex(xs, 23), _complex(ws, 24), _complex((ws[0],), 25)
    y_ref, *_ = _torch_conv(x, w, b, None, kw)
    gy = _complex(y_ref.shape, 26)
    _, *grads_ref = _torch_conv(x, w, b, gy, kw)
    xd = da.from_array(x, chunks=1)
    _rel_close(xdask.conv2d(xd, w, b, **kw).compute(), y_ref, 1e-10)
    grads = xdask.conv_backward(da.from_array(gy, chunks=1), xd, w, **kw)
    for got, want in zip(grads, grads_ref, strict=True):
        _rel_close(got.compute(), want, 1e-10)


def test_real_mixed_with_complex_is_a_type_error(backend: Any) -> None:
    x = backend.asarray(_complex((1, 1, 4, 4), 27))
    w = backend.asarray(np.ones((1, 1, 2, 2)))
    with pytest.raises(
        TypeError, match=r"arrays must share one dtype, got x: .*complex128, weight: .*float64"
    ):
        xpconv.conv2d(x, w)
    with pytest.raises(TypeError, match=r"arrays must share one dtype"):
        xpconv.conv2d_backward(
            backend.asarray(np.ones((1, 1, 3, 3))), x, backend.asarray(_complex((1, 1, 2, 2), 28))
        )


def test_dtype_error_lists_the_supported_dtypes(backend: Any) -> None:
    x = backend.asarray(np.ones((1, 1, 4, 4), dtype=np.int32))
    msg = (
        r"x must have a floating dtype "
        r"\(float16, bfloat16, float32, float64, complex64 or complex128"
    )
    with pytest.raises(TypeError, match=msg):
        xpconv.conv2d(x, backend.asarray(np.ones((1, 1, 2, 2), dtype=np.int32)))


# --------------------------------------------------------------------------- half precision


def _half(backend: Any, name: str) -> Any:
    """The backend's half dtype, or skip (array-api-strict has none; NumPy has no bfloat16)."""
    if backend.backend.value == "dask" and name == "float16":
        return np.float16  # NumPy blocks
    dtype = getattr(backend.xp, name, None)
    if dtype is None:
        pytest.skip(f"{backend} has no {name}")
    return dtype


def _to_half(backend: Any, a: np.ndarray, dtype: Any) -> tuple[Any, np.ndarray]:
    """The backend array in ``dtype`` and its values (rounded to the half dtype) in float64."""
    half = backend.xp.astype(backend.asarray(a, "float32"), dtype)
    return half, _values(backend, half)


def _values(backend: Any, a: Any) -> np.ndarray:
    return backend.to_numpy(backend.xp.astype(a, backend.xp.float32)).astype(np.float64)


def _check_half(backend: Any, got: Any, want: np.ndarray, dtype: Any, name: str) -> None:
    assert got.dtype == dtype, f"dtype {got.dtype} != {dtype}"
    _rel_close(_values(backend, got), want, HALF_RTOL[name])


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
@pytest.mark.parametrize("case", thin(CASES, SLOW))
def test_half_conv_and_backward(backend: Any, case: str, name: str) -> None:
    dtype = _half(backend, name)
    xs, ws, kw = CASES[case]
    rng = np.random.default_rng(29)
    xb, x = _to_half(backend, rng.standard_normal(xs), dtype)
    wb, w = _to_half(backend, rng.standard_normal(ws), dtype)
    bb, b = _to_half(backend, rng.standard_normal(ws[0]), dtype)
    (y_ref,) = _torch_conv(x, w, b, None, kw)
    gyb, gy = _to_half(backend, rng.standard_normal(y_ref.shape), dtype)
    _, *grads_ref = _torch_conv(x, w, b, gy, kw)
    _check_half(backend, xpconv.conv(xb, wb, bb, **kw), y_ref, dtype, name)
    grads = xpconv.conv_backward(gyb, xb, wb, **kw)
    for got, want in zip(grads, grads_ref, strict=True):
        _check_half(backend, got, want, dtype, name)


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_half_transpose_unfold_fold_and_layer(backend: Any, name: str) -> None:
    dtype = _half(backend, name)
    rng = np.random.default_rng(30)
    xb, x = _to_half(backend, rng.standard_normal((2, 4, 5, 4)), dtype)
    wb, w = _to_half(backend, rng.standard_normal((4, 3, 3, 3)), dtype)
    kw = {"stride": 2, "padding": 1, "output_padding": 1}
    want = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), **kw).numpy()
    _check_half(backend, xpconv.conv_transpose2d(xb, wb, **kw), want, dtype, name)
    cols = xpconv.unfold(xb, 3, padding=1)
    cols_ref = F.unfold(torch.from_numpy(x), 3, padding=1).numpy()
    _check_half(backend, cols, cols_ref, dtype, name)
    folded_ref = F.fold(torch.from_numpy(cols_ref), (5, 4), 3, padding=1).numpy()
    _check_half(backend, xpconv.fold(cols, (5, 4), 3, padding=1), folded_ref, dtype, name)
    if backend.backend.value == "dask":
        return  # layers hold their parameters in one array library, not Dask
    layer = xpconv.Conv2d(
        4, 2, 3, padding=1, xp=backend.xp, device=backend.device, dtype=dtype, rng=4
    )
    weight, bias = _values(backend, layer.weight), _values(backend, layer.bias)
    y_ref, gx_ref, gw_ref, gb_ref = _torch_conv(
        x, weight, bias, np.ones((2, 2, 5, 4)), {"padding": 1}
    )
    y = layer(xb)
    _check_half(backend, y, y_ref, dtype, name)
    grad_x = layer.backward(backend.xp.astype(backend.xp.ones_like(y), dtype))
    _check_half(backend, grad_x, gx_ref, dtype, name)
    _check_half(backend, layer.grad_weight, gw_ref, dtype, name)
    _check_half(backend, layer.grad_bias, gb_ref, dtype, name)
