"""xpconv.jax: the explicit backward as a jax.custom_vjp, under grad, jit and vmap.

The oracle is ``jax.lax.conv_general_dilated`` differentiated by JAX itself.
The generic path (``xpconv.conv2d`` on JAX arrays) is tested by the whole suite
through the ``backend`` fixture; the last tests here cover what that fixture
does not: jit with static arguments and closed-over parameters.
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

import xpconv  # noqa: E402
import xpconv.jax  # noqa: E402

# (x shape, weight shape, stride, padding, dilation, groups)
CASES = [
    ((2, 3, 8, 8), (4, 3, 3, 3), 1, 0, 1, 1),
    ((2, 4, 9, 7), (6, 2, 3, 2), (2, 1), (1, 2), 1, 2),
    ((1, 4, 10, 10), (4, 1, 3, 3), 2, "same", 1, 4),
    ((2, 2, 9, 8), (3, 2, 3, 3), 2, "same", (2, 1), 1),
    ((2, 2, 7, 7), (5, 2, 1, 1), 3, "valid", 1, 1),
]


@pytest.fixture(scope="module", autouse=True)
def _x64():
    """float64 tests need JAX's x64 mode (the backend fixture turns it on too)."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", previous)


def _lax_padding(padding, x_shape, w_shape, stride, dilation):
    if isinstance(padding, str):
        return padding.upper()
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return [(ph, ph), (pw, pw)]


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def lax_conv2d(x, w, b, stride, padding, dilation, groups):
    y = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=_pair(stride),
        padding=_lax_padding(padding, x.shape, w.shape, stride, dilation),
        rhs_dilation=_pair(dilation),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=groups,
        precision=jax.lax.Precision.HIGHEST,
    )
    return y if b is None else y + b[:, None, None]


def _inputs(x_shape, w_shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(x_shape), dtype=dtype)
    w = jnp.asarray(rng.standard_normal(w_shape), dtype=dtype)
    b = jnp.asarray(rng.standard_normal(w_shape[0]), dtype=dtype)
    return x, w, b


def _loss(conv, args):
    # A non-linear loss so that the cotangent is not a constant.
    def loss(x, w, b):
        return jnp.sum(jnp.sin(conv(x, w, b, *args)) ** 2)

    return loss


def _xpconv(x, w, b, stride, padding, dilation, groups):
    return xpconv.jax.conv2d(
        x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups
    )


def _assert_close(actual, expected, dtype):
    rtol, atol = (1e-10, 1e-12) if dtype == jnp.float64 else (2e-4, 2e-5)
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=rtol, atol=atol)


def _check_grads(case, dtype, *, jit):
    x_shape, w_shape, *args = case
    x, w, b = _inputs(x_shape, w_shape, dtype)
    y = _xpconv(x, w, b, *args)
    assert y.dtype == dtype
    _assert_close(y, lax_conv2d(x, w, b, *args), dtype)
    ours = jax.grad(_loss(_xpconv, args), argnums=(0, 1, 2))
    theirs = jax.grad(_loss(lax_conv2d, args), argnums=(0, 1, 2))
    if jit:  # one compilation instead of many small eager ones: faster on small CPUs
        ours, theirs = jax.jit(ours), jax.jit(theirs)
    for a, e in zip(ours(x, w, b), theirs(x, w, b), strict=True):
        assert a.shape == e.shape
        assert a.dtype == dtype
        _assert_close(a, e, dtype)


@pytest.mark.parametrize("case", CASES[:4], ids=str)
def test_grad_matches_lax_under_jit(case):
    _check_grads(case, jnp.float64, jit=True)


@pytest.mark.parametrize("case", [CASES[1], CASES[4]], ids=str)
def test_grad_matches_lax_float32(case):
    _check_grads(case, jnp.float32, jit=True)


def test_grad_matches_lax_eager():
    _check_grads(CASES[2], jnp.float64, jit=False)


def test_jit_with_static_argnames():
    x, w, b = _inputs((2, 4, 9, 9), (6, 2, 3, 3), jnp.float64)
    f = jax.jit(xpconv.jax.conv2d, static_argnames=("stride", "padding", "dilation", "groups"))
    args = (2, "same", 1, 2)
    y = f(x, w, b, stride=2, padding="same", groups=2)
    _assert_close(y, lax_conv2d(x, w, b, *args), jnp.float64)
    # A list padding is normalised to a hashable tuple.
    y2 = xpconv.jax.conv2d(x, w, b, stride=2, padding=[1, 1], groups=2)
    _assert_close(y2, lax_conv2d(x, w, b, 2, 1, 1, 2), jnp.float64)


def test_closed_over_parameters_under_jit_and_vmap():
    """Concrete weights next to traced inputs: the usual ``jit(lambda x: f(x, params))``."""
    x, w, b = _inputs((3, 2, 6, 6), (4, 2, 3, 3), jnp.float64)
    expected = lax_conv2d(x, w, b, 1, 1, 1, 1)

    def f(x):
        return xpconv.jax.conv2d(x, w, b, padding=1)

    _assert_close(jax.jit(f)(x), expected, jnp.float64)
    _assert_close(jax.vmap(f)(x[:, None])[:, 0], expected, jnp.float64)
    gx = jax.jit(jax.grad(lambda x: jnp.sum(f(x) ** 2)))(x)
    gx_ref = jax.grad(lambda x: jnp.sum(lax_conv2d(x, w, b, 1, 1, 1, 1) ** 2))(x)
    _assert_close(gx, gx_ref, jnp.float64)


def test_without_bias_and_unbatched():
    x, w, _ = _inputs((3, 7, 7), (2, 3, 3, 3), jnp.float64)
    gx, gw = jax.grad(lambda x, w: jnp.sum(xpconv.jax.conv2d(x, w) ** 2), argnums=(0, 1))(x, w)
    gx_ref, gw_ref = jax.grad(
        lambda x, w: jnp.sum(lax_conv2d(x[None], w, None, 1, 0, 1, 1) ** 2), argnums=(0, 1)
    )(x, w)
    assert gx.shape == (3, 7, 7)
    _assert_close(gx, gx_ref, jnp.float64)
    _assert_close(gw, gw_ref, jnp.float64)


def test_backward_is_xpconvs(monkeypatch):
    """The reverse pass goes through xpconv.conv_backward, not JAX's autodiff of im2col."""
    calls = []
    real = xpconv.jax.conv_backward

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(xpconv.jax, "conv_backward", spy)
    # A shape used nowhere else, so the jitted backward is traced afresh.
    x, w, b = _inputs((1, 3, 13, 11), (5, 3, 2, 4), jnp.float64)
    jax.grad(lambda w: jnp.sum(xpconv.jax.conv2d(x, w, b, stride=(1, 2))))(w)
    assert len(calls) == 1
    assert calls[0]["stride"] == (1, 2)
    assert calls[0]["bias"] is True


def test_value_and_grad_of_a_small_cnn():
    """Two layers and a training step, as a JAX user would write them."""
    rng = np.random.default_rng(1)
    params = {
        "w1": jnp.asarray(rng.standard_normal((4, 1, 3, 3)) * 0.3),
        "w2": jnp.asarray(rng.standard_normal((2, 4, 3, 3)) * 0.3),
    }
    x = jnp.asarray(rng.standard_normal((5, 1, 8, 8)))

    def net(conv, params):
        h = jnp.tanh(conv(x, params["w1"], None, 1, 1, 1, 1))
        return jnp.mean(conv(h, params["w2"], None, 2, 0, 1, 1) ** 2)

    step = jax.jit(jax.value_and_grad(lambda p: net(_xpconv, p)))
    loss, grads = step(params)
    loss_ref, grads_ref = jax.value_and_grad(lambda p: net(lax_conv2d, p))(params)
    _assert_close(loss, loss_ref, jnp.float64)
    for k in params:
        _assert_close(grads[k], grads_ref[k], jnp.float64)


def test_errors():
    x, w, b = _inputs((2, 3, 5, 5), (4, 3, 3, 3), jnp.float64)
    with pytest.raises(ValueError, match="stride"):
        xpconv.jax.conv2d(x, w, stride=0)
    with pytest.raises(TypeError, match="groups"):
        xpconv.jax.conv2d(x, w, groups=1.0)
    with pytest.raises(TypeError, match="xp must be"):
        xpconv.jax.conv2d(x, w, xp=np)
    with pytest.raises(ValueError, match="bias"):
        xpconv.jax.conv2d(x, w, b[:2])
    with pytest.raises(TypeError, match="dtype"):
        xpconv.jax.conv2d(x, w.astype(jnp.float32))


# ----------------------------------------------------------------- generic core path on JAX


def test_core_functions_under_jit_with_static_args():
    x, w, b = _inputs((2, 4, 9, 9), (6, 2, 3, 3), jnp.float64)
    static = ("stride", "padding", "dilation", "groups")
    f = jax.jit(xpconv.conv2d, static_argnames=static)
    y = f(x, w, b, stride=2, padding="same", groups=2)
    _assert_close(y, lax_conv2d(x, w, b, 2, "same", 1, 2), jnp.float64)
    fb = jax.jit(xpconv.conv2d_backward, static_argnames=(*static, "bias"))
    gy = jnp.ones_like(y)
    grads = fb(gy, x, w, stride=2, padding="same", groups=2)
    _, vjp = jax.vjp(lambda x, w, b: lax_conv2d(x, w, b, 2, "same", 1, 2), x, w, b)
    for a, e in zip(grads, vjp(gy), strict=True):
        _assert_close(a, e, jnp.float64)


def test_core_autodiff_matches_lax():
    """jax.grad straight through xpconv.conv2d's array code (no custom_vjp)."""
    x, w, b = _inputs((2, 4, 8, 8), (4, 2, 3, 3), jnp.float64)
    args = (2, 1, 1, 2)

    def core(x, w, b, stride, padding, dilation, groups):
        return xpconv.conv2d(
            x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups
        )

    ours = jax.jit(jax.grad(_loss(core, args), argnums=(0, 1, 2)))(x, w, b)
    theirs = jax.grad(_loss(lax_conv2d, args), argnums=(0, 1, 2))(x, w, b)
    for a, e in zip(ours, theirs, strict=True):
        _assert_close(a, e, jnp.float64)


def test_core_layer_on_jax():
    layer = xpconv.Conv2d(4, 6, 3, padding="same", groups=2, xp=jnp, rng=0, dtype=jnp.float64)
    x, _, _ = _inputs((2, 4, 7, 7), (6, 2, 3, 3), jnp.float64)
    y = layer(x)
    _assert_close(y, lax_conv2d(x, layer.weight, layer.bias, 1, "same", 1, 2), jnp.float64)
    gx = layer.backward(jnp.ones_like(y))
    assert isinstance(gx, jax.Array)
    assert isinstance(layer.grad_weight, jax.Array)
    before = layer.weight
    layer.step(0.1)
    _assert_close(layer.weight, before - 0.1 * layer.grad_weight, jnp.float64)


def test_core_conv2d_with_closed_over_weight_under_jit():
    # A tracer has no device (None); device_of must not call that a mismatch.
    x, w, b = _inputs((2, 3, 6, 6), (4, 3, 3, 3), jnp.float64)
    y = jax.jit(lambda x: xpconv.conv2d(x, w, b, padding=1))(x)
    _assert_close(y, lax_conv2d(x, w, b, 1, 1, 1, 1), jnp.float64)


# ----------------------------------------------------------------- any rank: conv1d, conv3d, conv


def lax_conv(x, w, b, stride, padding, dilation, groups):
    """conv_general_dilated for any rank (default NC*/OI* layouts); unbatched x too."""
    rank = w.ndim - 2
    unbatched = x.ndim == rank + 1
    if unbatched:
        x = x[None]
    pad = padding.upper() if isinstance(padding, str) else [(p, p) for p in _ntuple(padding, rank)]
    y = jax.lax.conv_general_dilated(
        x,
        w,
        window_strides=_ntuple(stride, rank),
        padding=pad,
        rhs_dilation=_ntuple(dilation, rank),
        feature_group_count=groups,
        precision=jax.lax.Precision.HIGHEST,
    )
    if b is not None:
        y = y + b.reshape(-1, *(1,) * rank)
    return y[0] if unbatched else y


def _ntuple(v, rank):
    return (v,) * rank if isinstance(v, int) else tuple(v)


# (function, x shape, weight shape, stride, padding, dilation, groups)
ND_CASES = [
    ("conv1d", (4, 11), (6, 2, 3), 2, "same", 2, 2),
    ("conv3d", (2, 2, 5, 4, 3), (3, 2, 2, 3, 2), (2, 1, 1), (1, 0, 1), 1, 1),
    ("conv", (1, 2, 3, 4, 3, 3), (2, 1, 2, 2, 1, 2), 1, "same", (1, 2, 1, 1), 2),
]


@pytest.mark.parametrize("case", ND_CASES, ids=str)
def test_nd_grad_matches_lax_under_jit(case):
    name, x_shape, w_shape, *args = case
    x, w, b = _inputs(x_shape, w_shape, jnp.float64)

    def ours(x, w, b, stride, padding, dilation, groups):
        function = getattr(xpconv.jax, name)
        return function(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)

    y = ours(x, w, b, *args)
    assert y.dtype == jnp.float64
    _assert_close(y, lax_conv(x, w, b, *args), jnp.float64)
    grads = jax.jit(jax.grad(_loss(ours, args), argnums=(0, 1, 2)))(x, w, b)
    expected = jax.jit(jax.grad(_loss(lax_conv, args), argnums=(0, 1, 2)))(x, w, b)
    for a, e in zip(grads, expected, strict=True):
        assert a.shape == e.shape
        assert a.dtype == jnp.float64
        _assert_close(a, e, jnp.float64)


@pytest.mark.parametrize("name", ["conv1d", "conv3d", "conv"])
def test_nd_backward_is_xpconvs(monkeypatch, name):
    """The reverse pass of every rank goes through xpconv.conv_backward."""
    calls = []
    real = xpconv.jax.conv_backward

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(xpconv.jax, "conv_backward", spy)
    # Shapes used nowhere else, so the jitted backward is traced afresh.
    rank = {"conv1d": 1, "conv3d": 3, "conv": 4}[name]
    x, w, b = _inputs((1, 3, *(5,) * (rank - 1), 13), (2, 3, *(1,) * (rank - 1), 3), jnp.float64)
    stride = (*(1,) * (rank - 1), 2)
    jax.grad(lambda w: jnp.sum(getattr(xpconv.jax, name)(x, w, b, stride=list(stride))))(w)
    assert len(calls) == 1
    assert calls[0]["stride"] == stride
    assert calls[0]["bias"] is True


def test_nd_errors():
    x, w, _ = _inputs((2, 3, 5), (4, 3, 3), jnp.float64)
    with pytest.raises(ValueError, match=r"^conv3d expects a 5-D weight"):
        xpconv.jax.conv3d(x, w)
    with pytest.raises(ValueError, match=r"^stride must be an int or a tuple of 1 ints?, got"):
        xpconv.jax.conv1d(x, w, stride=(1, 1))
    with pytest.raises(
        ValueError, match=r"^conv expects a 3-D \(N, C, L\) or 2-D \(C, L\) input x"
    ):
        xpconv.jax.conv(x[..., None], w)
