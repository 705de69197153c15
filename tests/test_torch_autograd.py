"""xpconv.torch: xpconv's explicit backward inside torch.autograd.

Oracles: ``torch.nn.functional.conv2d`` with autograd, and
``torch.autograd.gradcheck`` (finite differences) in float64.
"""

from __future__ import annotations

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
    assert "Conv2dFunction" in type(y.grad_fn).__name__


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
