"""Save and load (state_dict, pickle) and the layers' conveniences: torch's
positional order, dtype names, and errors that say how to fix the input."""

from __future__ import annotations

import pickle
import re
from typing import Any

import numpy as np
import pytest

import xpconv
from xpconv import nn

try:
    import torch
except ImportError:
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch.nn is the oracle")

LAYERS = {
    "Conv1d": (xpconv.Conv1d, (2, 4, 3), {"padding": 1}, (2, 2, 7)),
    "Conv2d": (xpconv.Conv2d, (2, 4, 3), {"stride": 2, "bias": False}, (2, 2, 7, 6)),
    "Conv3d": (xpconv.Conv3d, (2, 4, 2), {"groups": 2}, (1, 2, 3, 4, 3)),
    "ConvTranspose2d": (xpconv.ConvTranspose2d, (2, 4, 3), {"stride": 2}, (2, 2, 3, 3)),
}


def _layer(name: str, backend: Any) -> tuple[Any, Any]:
    cls, args, kw, x_shape = LAYERS[name]
    layer = cls(*args, **kw, xp=backend.xp, device=backend.device, rng=0)
    x = backend.asarray(np.random.default_rng(1).standard_normal(x_shape), dtype=np.float32)
    return layer, backend.xp.astype(x, layer.dtype)


@pytest.mark.parametrize("name", list(LAYERS))
def test_pickle_round_trip(backend: Any, name: str) -> None:
    layer, x = _layer(name, backend)
    y = layer(x)
    layer.backward(backend.xp.ones_like(y))
    copy = pickle.loads(pickle.dumps(layer))
    assert copy.xp is layer.xp
    assert copy.dtype == layer.dtype
    assert copy._input is None  # the forward cache is not part of the model
    np.testing.assert_array_equal(backend.to_numpy(copy(x)), backend.to_numpy(y))
    np.testing.assert_array_equal(
        backend.to_numpy(copy.grad_weight), backend.to_numpy(layer.grad_weight)
    )


@pytest.mark.parametrize("name", list(LAYERS))
def test_state_dict_round_trip(backend: Any, name: str) -> None:
    layer, x = _layer(name, backend)
    cls, args, kw, _ = LAYERS[name]
    other = cls(*args, **kw, xp=backend.xp, device=backend.device, rng=7)
    state = layer.state_dict()
    assert list(state) == (["weight"] if layer.bias is None else ["weight", "bias"])
    other.load_state_dict(state)
    np.testing.assert_array_equal(backend.to_numpy(other(x)), backend.to_numpy(layer(x)))


def test_state_dict_from_numpy_into_any_backend(backend: Any) -> None:
    """Arrays of another library are copied into the layer's library and dtype."""
    source = xpconv.Conv2d(2, 3, 3, rng=0)  # NumPy float64
    target = xpconv.Conv2d(2, 3, 3, xp=backend.xp, device=backend.device, dtype="float32")
    target.load_state_dict(source.state_dict())
    assert target.weight.dtype == backend.xp.float32
    np.testing.assert_allclose(backend.to_numpy(target.weight), source.weight, rtol=1e-7)


def test_sequential_state_dict_and_pickle(backend: Any) -> None:
    kw = {"xp": backend.xp, "device": backend.device}
    model = nn.Sequential(
        xpconv.Conv2d(1, 2, 3, rng=0, **kw), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3, rng=0, **kw)
    )
    assert list(model.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]
    x = backend.xp.astype(backend.asarray(np.ones((2, 1, 4, 4))), model[0].dtype)
    fresh = nn.Sequential(
        xpconv.Conv2d(1, 2, 3, rng=5, **kw), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3, rng=5, **kw)
    )
    fresh.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(backend.to_numpy(fresh(x)), backend.to_numpy(model(x)))
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(backend.to_numpy(copy(x)), backend.to_numpy(model(x)))


@needs_torch
@pytest.mark.parametrize("bias", [True, False])
def test_torch_state_dict_both_ways(bias: bool) -> None:
    theirs = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=bias, dtype=torch.float64)
    ours = xpconv.Conv2d(3, 4, 3, stride=2, padding=1, bias=bias, xp=torch, dtype="float64")
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x).detach(), rtol=1e-12, atol=1e-12)
    # and back, from a differently initialised xpconv layer
    ours = xpconv.Conv2d(3, 4, 3, 2, 1, bias=bias, xp=torch, dtype=torch.float64, rng=3)
    theirs.load_state_dict(ours.state_dict())
    torch.testing.assert_close(theirs(x).detach(), ours(x), rtol=1e-12, atol=1e-12)
    # a torch state dict into a NumPy layer
    numpy_layer = xpconv.Conv2d(3, 4, 3, stride=2, padding=1, bias=bias)
    numpy_layer.load_state_dict(theirs.state_dict())
    np.testing.assert_allclose(numpy_layer(x.numpy()), theirs(x).detach().numpy(), rtol=1e-12)


@needs_torch
def test_sequential_keys_match_torch() -> None:
    ours = nn.Sequential(xpconv.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    theirs = torch.nn.Sequential(
        torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 3)
    )
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 1, 4, 4)
    np.testing.assert_allclose(ours(x.double().numpy()), theirs(x).detach().numpy(), rtol=1e-5)


def test_load_state_dict_errors() -> None:
    layer = xpconv.Conv2d(2, 3, 3)
    before = layer.weight.copy()
    with pytest.raises(ValueError, match=r"missing keys \['bias'\], unexpected keys \['b'\]"):
        layer.load_state_dict({"weight": np.zeros((3, 2, 3, 3)), "b": np.zeros(3)})
    with pytest.raises(ValueError, match=r"state\['bias'\] must have shape \(3,\), got \(4,\)"):
        layer.load_state_dict({"weight": np.zeros((3, 2, 3, 3)), "bias": np.zeros(4)})
    np.testing.assert_array_equal(layer.weight, before)  # nothing loaded from a bad state
    with pytest.raises(TypeError, match=r"state must be a dict"):
        layer.load_state_dict([np.zeros((3, 2, 3, 3))])  # type: ignore[arg-type]
    layer.load_state_dict({"weight": np.zeros((3, 2, 3, 3))}, strict=False)
    assert not layer.weight.any()
    model = nn.Sequential(layer, nn.ReLU())
    with pytest.raises(ValueError, match=r"missing keys \['0.bias'\]"):
        model.load_state_dict({"0.weight": np.zeros((3, 2, 3, 3))})


def test_torch_positional_order() -> None:
    """``Conv2d(3, 8, 3, 1, 1)`` means what it means in torch.nn."""
    layer = xpconv.Conv2d(3, 8, 3, 2, 1, 2, 1, False)
    assert (layer.stride, layer.padding) == ((2, 2), (1, 1))
    assert (layer.dilation, layer.groups) == ((2, 2), 1)
    assert layer.bias is None
    # ConvTranspose's torch order puts groups and bias before dilation.
    layer = xpconv.ConvTranspose2d(4, 8, 3, 2, 1, 1, 2, False, 3)
    assert layer.output_padding == (1, 1)
    assert (layer.groups, layer.bias, layer.dilation) == (2, None, (3, 3))


def test_channels_last_hint() -> None:
    layer = xpconv.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match=r"looks channels-last.*moveaxis\(x, -1, 1\)"):
        layer(np.ones((2, 5, 5, 3)))
    with pytest.raises(ValueError, match=r"expects 3 input channels") as info:
        layer(np.ones((2, 4, 5, 5)))
    assert "channels-last" not in str(info.value)
    with pytest.raises(ValueError, match=r"looks channels-last.*moveaxis\(x, -1, 0\)"):
        xpconv.Conv1d(3, 8, 3)(np.ones((7, 3)))  # unbatched (L, C)


def test_dtype_mismatch_says_pass_dtype() -> None:
    layer = xpconv.Conv2d(3, 8, 3)  # NumPy float64
    with pytest.raises(TypeError, match=re.escape("dtype='float32'")):
        layer(np.ones((2, 3, 5, 5), dtype=np.float32))
    # The channel check comes first: a wrong layout is the more useful error.
    with pytest.raises(ValueError, match=r"channels-last"):
        layer(np.ones((2, 5, 5, 3), dtype=np.float32))
    layer = xpconv.Conv2d(3, 8, 3, dtype="float32")
    assert layer(np.ones((2, 3, 5, 5), dtype=np.float32)).dtype == np.float32


@needs_torch
def test_dtype_of_another_library() -> None:
    layer = xpconv.Conv2d(3, 8, 3, xp=torch, dtype=np.float64)
    assert layer.weight.dtype == torch.float64
    linear = nn.Linear(4, 2, xp=torch, dtype="float64")
    assert linear.weight.dtype == torch.float64
