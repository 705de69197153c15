"""xpconv.Conv2d against torch.nn.Conv2d + autograd + a manual SGD step."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
import numpy as np
import pytest

import reference as ref
import xpconv
from reference import assert_close, thin

LAYER_CASES: dict[str, tuple[tuple[int, int, Any], dict[str, Any], tuple[int, ...]]] = {
    "plain": ((3, 4, 3), {}, (2, 3, 6, 5)),
    "stride_padding": ((2, 3, (3, 2)), {"stride": 2, "padding": (1, 0)}, (2, 2, 7, 6)),
    "same_stride2": ((2, 2, 3), {"stride": 2, "padding": "same"}, (1, 2, 5, 6)),
    "dilation": ((2, 2, 2), {"dilation": 2, "padding": "valid"}, (2, 2, 6, 6)),
    "groups_nobias": ((4, 6, 3), {"groups": 2, "padding": 1, "bias": False}, (2, 4, 5, 5)),
    "depthwise": ((3, 3, 3), {"groups": 3, "padding": 1}, (1, 3, 4, 5)),
}


def _layer(backend: Any, case: str, dtype: str = "float64", rng: Any = 0) -> xpconv.Conv2d:
    args, kwargs, _ = LAYER_CASES[case]
    return xpconv.Conv2d(
        *args, **kwargs, xp=backend.xp, device=backend.device, dtype=backend.dtype(dtype), rng=rng
    )


@pytest.mark.parametrize("case", LAYER_CASES)
def test_shapes_and_init_bounds(backend: Any, case: str) -> None:
    (c_in, c_out, k), kwargs, _ = LAYER_CASES[case]
    layer = _layer(backend, case)
    kh, kw = (k, k) if isinstance(k, int) else k
    groups = kwargs.get("groups", 1)
    assert tuple(layer.weight.shape) == (c_out, c_in // groups, kh, kw)
    assert array_api_compat.array_namespace(layer.weight) is backend.xp
    assert layer.weight.dtype == backend.dtype("float64")
    bound = 1 / math.sqrt(c_in // groups * kh * kw)
    w = backend.to_numpy(layer.weight)
    assert np.all(np.abs(w) <= bound)
    if kwargs.get("bias", True):
        assert tuple(layer.bias.shape) == (c_out,)
        assert np.all(np.abs(backend.to_numpy(layer.bias)) <= bound)
    else:
        assert layer.bias is None
    assert layer.grad_weight is None
    assert layer.grad_bias is None


def test_init_is_uniform_over_the_whole_range() -> None:
    """PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C/groups*KH*KW."""
    layer = xpconv.Conv2d(16, 64, 3, groups=2, rng=1)
    bound = 1 / math.sqrt(8 * 9)
    w = layer.weight.ravel() / bound
    assert np.all(np.abs(w) <= 1)
    # 4608 samples: the extremes come within 1% of the bound, and the mean/variance
    # match U(-1, 1) (mean 0, variance 1/3) within a few standard errors.
    assert w.min() < -0.99
    assert w.max() > 0.99
    assert abs(w.mean()) < 4 * math.sqrt(1 / 3 / w.size)
    assert abs(w.var() - 1 / 3) < 0.03
    b = layer.bias / bound
    assert np.all(np.abs(b) <= 1)
    assert np.unique(b).size == 64


def test_init_bound_matches_torch() -> None:
    """Both libraries fill the same interval: their extremes agree to within 1%."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tl = torch.nn.Conv2d(32, 64, (3, 2), groups=4)
    ours = xpconv.Conv2d(32, 64, (3, 2), groups=4, rng=0)
    t_w, t_b = tl.weight.detach().numpy(), tl.bias.detach().numpy()
    # 3072 weights each: the largest |w| is within 1% of the common bound.
    assert np.max(np.abs(ours.weight)) == pytest.approx(np.max(np.abs(t_w)), rel=0.01)
    assert np.max(np.abs(ours.weight)) <= 1 / math.sqrt(8 * 3 * 2)
    assert np.max(np.abs(ours.bias)) <= np.max(np.abs(t_w)) * 1.01
    assert np.max(np.abs(t_b)) <= 1 / math.sqrt(8 * 3 * 2)


def test_rng_reproducibility(backend: Any) -> None:
    a, b = _layer(backend, "plain", rng=42), _layer(backend, "plain", rng=42)
    np.testing.assert_array_equal(backend.to_numpy(a.weight), backend.to_numpy(b.weight))
    np.testing.assert_array_equal(backend.to_numpy(a.bias), backend.to_numpy(b.bias))
    c = _layer(backend, "plain", rng=43)
    assert not np.array_equal(backend.to_numpy(a.weight), backend.to_numpy(c.weight))
    # A Generator is accepted and advanced like a seed's generator.
    d = _layer(backend, "plain", rng=np.random.default_rng(42))
    np.testing.assert_array_equal(backend.to_numpy(a.weight), backend.to_numpy(d.weight))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_same_weights_on_every_backend(backend: Any, dtype: str) -> None:
    """The seed fixes the weights independently of the backend (NumPy layer as the reference)."""
    on_numpy = xpconv.Conv2d(3, 4, 3, rng=7, dtype=np.dtype(dtype))
    here = _layer(backend, "plain", dtype=dtype, rng=7)
    np.testing.assert_array_equal(backend.to_numpy(here.weight), on_numpy.weight)
    np.testing.assert_array_equal(backend.to_numpy(here.bias), on_numpy.bias)
    assert backend.to_numpy(here.weight).dtype == np.dtype(dtype)


def test_default_dtype_numpy() -> None:
    layer = xpconv.Conv2d(2, 3, 3, rng=0)
    assert isinstance(layer.weight, np.ndarray)
    assert layer.weight.dtype == np.float64
    assert layer.bias.dtype == np.float64


def test_default_dtype_torch() -> None:
    torch = pytest.importorskip("torch")
    layer = xpconv.Conv2d(2, 3, 3, xp=torch, rng=0)
    assert isinstance(layer.weight, torch.Tensor)
    assert layer.weight.dtype == torch.float32
    assert layer.bias.dtype == torch.float32
    y = layer(torch.ones((1, 2, 4, 4)))
    assert y.dtype == torch.float32


def test_default_dtype_is_namespace_default(backend: Any) -> None:
    layer = xpconv.Conv2d(2, 3, 3, xp=backend.xp, device=backend.device, rng=0)
    info = backend.xp.__array_namespace_info__()
    expected = info.default_dtypes(device=backend.device)["real floating"]
    assert layer.weight.dtype == expected


@pytest.mark.parametrize("dtype", thin(["float64", "float32"], ["float64"]))
@pytest.mark.parametrize("case", thin(LAYER_CASES, ["same_stride2", "groups_nobias"]))
def test_forward_backward_step_match_torch(backend: Any, case: str, dtype: str) -> None:
    torch = pytest.importorskip("torch")
    args, kwargs, x_shape = LAYER_CASES[case]
    layer = _layer(backend, case, dtype=dtype, rng=3)
    w0 = backend.to_numpy(layer.weight).astype(np.float64)
    has_bias = kwargs.get("bias", True)
    b0 = backend.to_numpy(layer.bias).astype(np.float64) if has_bias else None

    t_kwargs = {k: v for k, v in kwargs.items() if k != "padding" or v != "same"}
    tl = torch.nn.Conv2d(*args, **t_kwargs, dtype=torch.float64)
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(w0))
        if has_bias:
            tl.bias.copy_(torch.from_numpy(b0))
    pad = (0, 0, 0, 0)
    if kwargs.get("padding") == "same":
        top, bottom, left, right = ref.explicit_padding(
            "same",
            x_shape[-2:],
            w0.shape[-2:],
            ref._pair(kwargs.get("stride", 1)),
            ref._pair(kwargs.get("dilation", 1)),
        )
        pad = (left, right, top, bottom)

    rng = np.random.default_rng(9)
    lr = 0.05
    for _ in range(2):  # two steps: the second forward sees the updated parameters
        x = rng.standard_normal(x_shape).astype(dtype).astype(np.float64)
        xt = torch.from_numpy(x).requires_grad_()
        yt = tl(torch.nn.functional.pad(xt, pad))
        g = rng.standard_normal(tuple(yt.shape)).astype(dtype).astype(np.float64)
        yt.backward(torch.from_numpy(g))

        xb = backend.asarray(x, dtype)
        y = layer(xb)
        assert_close(backend, y, yt.detach().numpy(), like=xb)
        gx = layer.backward(backend.asarray(g, dtype))
        assert_close(backend, gx, xt.grad.numpy(), like=xb)
        assert_close(backend, layer.grad_weight, tl.weight.grad.numpy(), like=xb)
        if has_bias:
            assert_close(backend, layer.grad_bias, tl.bias.grad.numpy(), like=xb)
        else:
            assert layer.grad_bias is None

        layer.step(lr)
        with torch.no_grad():
            for param in tl.parameters():
                param.sub_(lr * param.grad)
                param.grad = None
        assert_close(backend, layer.weight, tl.weight.detach().numpy(), like=xb)
        if has_bias:
            assert_close(backend, layer.bias, tl.bias.detach().numpy(), like=xb)
        np.testing.assert_array_equal(backend.to_numpy(xb), x)  # input untouched


def test_call_is_forward_and_parameters(backend: Any) -> None:
    layer = _layer(backend, "plain")
    x = backend.asarray(np.random.default_rng(0).standard_normal((2, 3, 6, 5)))
    np.testing.assert_array_equal(backend.to_numpy(layer(x)), backend.to_numpy(layer.forward(x)))
    params = layer.parameters()
    assert len(params) == 2
    assert params[0] is layer.weight
    assert params[1] is layer.bias
    assert len(_layer(backend, "groups_nobias").parameters()) == 1
    expected = ref.conv2d(
        backend.to_numpy(x), backend.to_numpy(layer.weight), backend.to_numpy(layer.bias)
    )
    assert_close(backend, layer(x), expected, like=x)


def test_backward_uses_the_last_forward_input(backend: Any) -> None:
    layer = _layer(backend, "stride_padding")
    rng = np.random.default_rng(1)
    x1, x2 = rng.standard_normal((2, 2, 7, 6)), rng.standard_normal((2, 2, 7, 6))
    layer(backend.asarray(x1))
    y = layer(backend.asarray(x2))
    g = rng.standard_normal(tuple(y.shape))
    layer.backward(backend.asarray(g))
    _, gw, _ = ref.conv2d_backward(g, x2, backend.to_numpy(layer.weight), stride=2, padding=(1, 0))
    assert_close(backend, layer.grad_weight, gw, like=layer.weight)


def test_repr() -> None:
    text = repr(xpconv.Conv2d(2, 4, (3, 1), stride=2, padding="same", groups=2, bias=False, rng=0))
    # Like torch.nn.Conv2d's repr (which also prints padding=same unquoted).
    assert text.startswith("Conv2d(2, 4, kernel_size=(3, 1), stride=(2, 2), padding=same")
    assert "groups=2, bias=False" in text
