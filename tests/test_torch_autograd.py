"""xpconv.torch: xpconv's explicit backward inside torch.autograd.

Oracles: ``torch.nn.functional.conv1d/2d/3d`` with autograd, and
``torch.autograd.gradcheck`` (finite differences) in float64, for the 4-D
generic ``conv`` too.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
F = pytest.importorskip("torch.nn.functional")

import xpconv  # noqa: E402
import xpconv.torch  # noqa: E402

# (x shape, weight shape, stride, padding, dilation, groups)
CASES = [
    ((2, 3, 8, 8), (4, 3, 3, 3), 1, 0, 1, 1),
    ((2, 4, 9, 7), (6, 2, 3, 2), (2, 1), (1, 2), 1, 2),
    ((1, 4, 10, 10), (4, 1, 3, 3), 1, "same", 1, 4),
    ((2, 2, 9, 8), (3, 2, 3, 3), 2, 1, (2, 1), 1),
    ((2, 2, 7, 7), (5, 2, 1, 1), 3, "valid", 1, 1),
]


def _inputs(x_shape, w_shape, dtype, *, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(x_shape, generator=g, dtype=dtype)
    w = torch.randn(w_shape, generator=g, dtype=dtype)
    b = torch.randn(w_shape[0], generator=g, dtype=dtype)
    return [t.requires_grad_(requires_grad) for t in (x, w, b)]


def _conv_args(case):
    _, _, stride, padding, dilation, groups = case
    return {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}


def _tols(dtype):
    return (
        {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_backward_matches_native(case, dtype):
    kwargs = _conv_args(case)
    ours = _inputs(case[0], case[1], dtype)
    native = _inputs(case[0], case[1], dtype)
    y = xpconv.torch.conv2d(*ours, **kwargs)
    y_ref = F.conv2d(*native, **kwargs)
    torch.testing.assert_close(y, y_ref, **_tols(dtype))
    # A non-linear loss, so the incoming gradient is not constant.
    (y.sin() ** 2).sum().backward()
    (y_ref.sin() ** 2).sum().backward()
    for a, e in zip(ours, native, strict=True):
        assert a.grad is not None
        assert a.grad.dtype == dtype
        torch.testing.assert_close(a.grad, e.grad, **_tols(dtype))


@pytest.mark.parametrize("fast_mode", [False, True], ids=["full", "fast"])
@pytest.mark.parametrize("case", CASES[1:4], ids=str)
def test_gradcheck_float64(case, fast_mode):
    # Small shapes: the full gradcheck perturbs every element of every input and
    # runs one backward per output element; the fast one checks random projections.
    x_shape = (1, case[0][1], 5, 5)
    w_shape = (case[1][0] if fast_mode else case[5], *case[1][1:])
    x, w, b = _inputs(x_shape, w_shape, torch.float64)
    kwargs = _conv_args(case)
    assert torch.autograd.gradcheck(
        lambda x, w, b: xpconv.torch.conv2d(x, w, b, **kwargs), (x, w, b), fast_mode=fast_mode
    )


def test_gradgradcheck_float64():
    """The backward is made of torch ops, so double backward works too."""
    x, w, b = _inputs((1, 2, 5, 5), (2, 1, 2, 2), torch.float64)
    assert torch.autograd.gradgradcheck(
        lambda x, w, b: xpconv.torch.conv2d(x, w, b, stride=2, padding=1, groups=2), (x, w, b)
    )


def test_only_some_inputs_require_grad():
    x, w, b = _inputs((2, 3, 6, 6), (4, 3, 3, 3), torch.float64, requires_grad=False)
    w.requires_grad_(True)
    xpconv.torch.conv2d(x, w, b, padding=1).sum().backward()
    x_ref, w_ref, b_ref = (t.detach().clone() for t in (x, w, b))
    w_ref.requires_grad_(True)
    F.conv2d(x_ref, w_ref, b_ref, padding=1).sum().backward()
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=1e-10, atol=1e-12)
    assert x.grad is None
    assert b.grad is None


def test_no_bias_and_unbatched():
    x, w, _ = _inputs((3, 7, 7), (2, 3, 3, 3), torch.float64)
    y = xpconv.torch.conv2d(x, w, stride=2)
    assert y.shape == (2, 3, 3)
    y.square().sum().backward()
    x_ref, w_ref = (t.detach().clone().requires_grad_(True) for t in (x, w))
    F.conv2d(x_ref, w_ref, stride=2).square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w.grad, w_ref.grad, rtol=1e-10, atol=1e-12)


def test_grad_fn_is_xpconvs():
    x, w, b = _inputs((1, 2, 4, 4), (2, 2, 2, 2), torch.float64)
    y = xpconv.torch.conv2d(x, w, b)
    assert "ConvFunction" in type(y.grad_fn).__name__


def test_module_matches_nn_conv2d():
    torch.manual_seed(0)
    layer = xpconv.torch.Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2, rng=3)
    native = torch.nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2)
    with torch.no_grad():
        native.weight.copy_(layer.weight)
        native.bias.copy_(layer.bias)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert layer.weight.dtype == torch.get_default_dtype()
    # Same initial weights as the core layer with the same seed.
    core = xpconv.Conv2d(4, 6, (3, 2), stride=2, padding=1, groups=2, rng=3, xp=torch)
    torch.testing.assert_close(layer.weight.detach(), core.weight)
    x = torch.randn(3, 4, 9, 9)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    opt_ref = torch.optim.SGD(native.parameters(), lr=0.1)
    for module, optimizer in ((layer, opt), (native, opt_ref)):
        optimizer.zero_grad()
        module(x).square().mean().backward()
        optimizer.step()
    torch.testing.assert_close(layer.weight, native.weight, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(layer.bias, native.bias, rtol=1e-4, atol=1e-5)
    assert "kernel_size=(3, 2)" in repr(layer)


def test_module_without_bias():
    layer = xpconv.torch.Conv2d(2, 3, 3, bias=False, rng=0, dtype=torch.float64)
    assert layer.bias is None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    layer(x).sum().backward()
    assert layer.weight.grad is not None
    assert x.grad is not None


def test_errors():
    x, w, _ = _inputs((2, 3, 5, 5), (4, 3, 3, 3), torch.float64)
    with pytest.raises(ValueError, match="stride"):
        xpconv.torch.conv2d(x, w, stride=0)
    with pytest.raises(TypeError, match="xp must be"):
        xpconv.torch.conv2d(x, w, xp=xpconv)
    with pytest.raises(TypeError, match="dtype"):
        xpconv.torch.conv2d(x, w.float())


# ----------------------------------------------------------------- any rank: conv1d, conv3d, conv

# (function name, x shape, weight shape, conv arguments)
ND_CASES = [
    ("conv1d", (2, 4, 9), (6, 2, 3), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}),
    ("conv1d", (3, 7), (2, 3, 4), {"padding": "same"}),
    ("conv3d", (2, 2, 4, 5, 3), (3, 2, 2, 3, 2), {"stride": (1, 2, 1), "padding": (1, 0, 1)}),
    ("conv3d", (1, 3, 4, 4, 3), (3, 1, 3, 3, 2), {"padding": "same", "groups": 3}),
    ("conv", (1, 2, 4, 5, 3), (4, 1, 2, 2, 2), {"stride": 2, "padding": "valid", "groups": 2}),
]


def _native(name, x, w, b, kwargs):
    rank = w.ndim - 2
    function = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank] if name == "conv" else getattr(F, name)
    with warnings.catch_warnings():  # torch copies the input for 'same' with even kernels
        warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)
        return function(x, w, b, **kwargs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(("name", "x_shape", "w_shape", "kwargs"), ND_CASES, ids=str)
def test_nd_backward_matches_native(name, x_shape, w_shape, kwargs, dtype):
    ours = _inputs(x_shape, w_shape, dtype)
    native = _inputs(x_shape, w_shape, dtype)
    y = getattr(xpconv.torch, name)(*ours, **kwargs)
    y_ref = _native(name, *native, kwargs)
    torch.testing.assert_close(y, y_ref, **_tols(dtype))
    (y.sin() ** 2).sum().backward()
    (y_ref.sin() ** 2).sum().backward()
    assert "ConvFunction" in type(y.grad_fn).__name__
    for a, e in zip(ours, native, strict=True):
        assert a.grad is not None
        assert a.grad.dtype == dtype
        torch.testing.assert_close(a.grad, e.grad, **_tols(dtype))


@pytest.mark.parametrize(
    ("name", "x_shape", "w_shape", "kwargs"),
    [
        ("conv1d", (1, 4, 6), (4, 2, 3), {"stride": 2, "padding": 1, "dilation": 2, "groups": 2}),
        ("conv1d", (2, 5), (2, 2, 2), {"padding": "same"}),
        ("conv3d", (1, 2, 3, 3, 3), (2, 1, 2, 2, 2), {"stride": 2, "padding": 1, "groups": 2}),
        ("conv3d", (1, 1, 3, 2, 3), (2, 1, 2, 1, 2), {"padding": "same", "dilation": (1, 1, 2)}),
        (
            "conv",
            (1, 1, 3, 2, 2, 3),
            (2, 1, 2, 1, 2, 2),
            {"stride": (2, 1, 1, 1), "padding": (0, 1, 0, 0)},
        ),
    ],
    ids=str,
)
def test_nd_gradcheck_float64(name, x_shape, w_shape, kwargs):
    """Finite differences of xpconv's forward against xpconv's backward, D = 1, 3 and 4."""
    x, w, b = _inputs(x_shape, w_shape, torch.float64)
    function = getattr(xpconv.torch, name)
    assert torch.autograd.gradcheck(lambda x, w, b: function(x, w, b, **kwargs), (x, w, b))


@pytest.mark.parametrize(
    ("name", "args", "kwargs", "x_shape"),
    [
        ("Conv1d", (4, 6, 3), {"stride": 2, "padding": 1, "groups": 2}, (3, 4, 11)),
        ("Conv3d", (2, 4, (3, 2, 2)), {"stride": (2, 1, 1), "padding": "same"}, (2, 2, 5, 4, 3)),
    ],
    ids=["Conv1d", "Conv3d"],
)
def test_nd_module_matches_nn_through_an_optimizer_step(name, args, kwargs, x_shape):
    torch.manual_seed(0)
    layer = getattr(xpconv.torch, name)(*args, **kwargs, rng=3, dtype=torch.float64)
    # torch.nn takes 'same' at stride 1 only: the twin gets the stride-1 equivalent below.
    padding = kwargs.get("padding")
    t_kwargs = {**kwargs, "padding": 0} if padding == "same" else kwargs
    native = getattr(torch.nn, name)(*args, **t_kwargs, dtype=torch.float64)
    with torch.no_grad():
        native.weight.copy_(layer.weight)
        native.bias.copy_(layer.bias)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert tuple(layer.weight.shape) == tuple(native.weight.shape)
    core = getattr(xpconv, name)(*args, **kwargs, rng=3, xp=torch, dtype=torch.float64)
    torch.testing.assert_close(layer.weight.detach(), core.weight)
    x = torch.randn(*x_shape, dtype=torch.float64)
    x_native = x
    if padding == "same":
        # TensorFlow/JAX 'same' for size (5, 4, 3), kernel (3, 2, 2), stride (2, 1, 1):
        # pads (1, 1), (0, 1), (0, 1), the odd zero at the end (F.pad lists the last axis first).
        x_native = F.pad(x, [0, 1, 0, 1, 1, 1])
    opt = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    opt_ref = torch.optim.SGD(native.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        for module, optimizer, inp in ((layer, opt, x), (native, opt_ref, x_native)):
            optimizer.zero_grad()
            module(inp).square().mean().backward()
            optimizer.step()
        torch.testing.assert_close(layer.weight.grad, native.weight.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(layer.bias.grad, native.bias.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.weight, native.weight, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.bias, native.bias, rtol=1e-10, atol=1e-12)
    assert f"kernel_size={layer.kernel_size}" in repr(layer)


def test_nd_errors():
    x, w, _ = _inputs((2, 3, 5), (4, 3, 3), torch.float64)
    with pytest.raises(ValueError, match=r"^conv1d expects a 3-D weight"):
        xpconv.torch.conv1d(x, w[..., None])
    with pytest.raises(ValueError, match=r"^conv3d expects a 5-D \(N, C, D, H, W\) or 4-D"):
        xpconv.torch.conv3d(x, w[..., None, None])
    with pytest.raises(ValueError, match=r"^stride must be an int or a tuple of 3 ints"):
        xpconv.torch.conv3d(x[..., None, None], w[..., None, None], stride=(1, 2))
