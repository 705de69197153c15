"""The demo network: its pieces' gradients, one training epoch per backend, the picture."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpconv
from xpconv import nn
from xpconv.demo import (
    DemoConfig,
    DemoError,
    build_model,
    evaluate,
    get_backend,
    load_digits_split,
    run_demo,
    train_epoch,
)

RNG_SEED = 20261127


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    pytest.importorskip("sklearn")
    return load_digits_split(seed=0)


@pytest.fixture
def demo_extra() -> None:
    """run_demo needs scikit-learn (and matplotlib for the picture)."""
    pytest.importorskip("sklearn")


# --------------------------------------------------------------------------- data


def test_digits_split_is_stratified_and_scaled(digits):
    x_train, y_train, x_test, y_test = digits
    assert x_train.shape == (1437, 1, 8, 8)
    assert x_test.shape == (360, 1, 8, 8)
    assert x_train.min() >= 0.0
    assert x_train.max() == 1.0
    assert y_train.dtype == np.int64
    # Stratified: every class has about a fifth of its images in the test split.
    for label in range(10):
        share = np.sum(y_test == label) / (np.sum(y_test == label) + np.sum(y_train == label))
        assert 0.18 < share < 0.22


def test_split_depends_on_seed_only(digits):
    again = load_digits_split(seed=0)
    for a, b in zip(digits, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = load_digits_split(seed=1)
    assert not np.array_equal(digits[1], other[1])


# --------------------------------------------------------------------------- training per backend


def test_one_epoch_on_a_small_subset_learns(backend, digits):
    """The demo's model and training step, 1 epoch (6 steps of 10 images): loss falls,
    accuracy beats chance. Few steps, because Dask and eager JAX pay per operation
    (float64 and batches of 10 as in the gradient test below, so that JAX compiles once)."""
    xp = backend.xp
    n, batch = 60, 10
    x = backend.asarray(digits[0][:n], dtype=np.float64)
    y = backend.asarray(digits[1][:n])
    model = build_model(xp, device=backend.device, dtype=xp.float64, rng=0)
    loss_fn = nn.SoftmaxCrossEntropy()
    optimizer = nn.Adam(model, lr=1e-2)

    loss_before, _ = evaluate(model, loss_fn, x, y, batch_size=batch)
    seen = []
    loss_train, acc_train = train_epoch(
        model,
        loss_fn,
        optimizer,
        x,
        y,
        batch_size=batch,
        order=np.random.default_rng(0).permutation(n),
        on_batch=lambda loss, acc: seen.append(loss),
    )
    loss_after, acc_after = evaluate(model, loss_fn, x, y, batch_size=batch)

    assert len(seen) == n // batch
    assert all(math.isfinite(v) for v in seen)
    assert math.isfinite(loss_train)
    assert 0.0 <= acc_train <= 1.0
    # NumPy goes from 2.32 to 1.94 and from 12% to 45% correct.
    assert loss_after < loss_before - 0.15
    assert acc_after > 0.2  # chance is 0.1
    # Parameters stay in the backend's namespace, dtype and device.
    weight = model[0].weight
    assert type(weight) is type(x)
    assert weight.dtype == xp.float64
    assert backend.to_numpy(weight).shape == (16, 1, 3, 3)


@pytest.mark.usefixtures("demo_extra")
def test_same_seed_gives_identical_losses():
    config = DemoConfig(epochs=2, max_train=256, progress=False, plot=False)
    first = run_demo(config, stream=None)
    second = run_demo(config, stream=None)
    assert first.train_loss == second.train_loss
    assert first.test_loss == second.test_loss
    np.testing.assert_array_equal(first.filters, second.filters)
    config.seed = 1
    other = run_demo(config, stream=None)
    assert other.train_loss != first.train_loss


@pytest.mark.usefixtures("demo_extra")
def test_backends_give_the_same_losses():
    """Same seed and float64: numpy, torch and array-api-strict train identically (to rounding)."""
    reference = run_demo(
        DemoConfig(epochs=1, max_train=128, dtype="float64", progress=False, plot=False),
        stream=None,
    )
    for name in ("torch", "array_api_strict"):
        try:
            get_backend(name)
        except DemoError:
            continue
        result = run_demo(
            DemoConfig(
                backend=name, epochs=1, max_train=128, dtype="float64", progress=False, plot=False
            ),
            stream=None,
        )
        np.testing.assert_allclose(result.train_loss, reference.train_loss, rtol=1e-10)
        np.testing.assert_allclose(result.filters, reference.filters, rtol=1e-9, atol=1e-12)


@pytest.mark.usefixtures("demo_extra")
def test_run_demo_writes_a_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    result = run_demo(DemoConfig(epochs=1, max_train=128, out=tmp_path / "new", progress=False))
    path = tmp_path / "new" / "xpconv-demo.png"
    assert result.image == path
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(data) > 10_000
    out = capsys.readouterr().out
    assert "test accuracy:" in out
    assert "time per epoch:" in out
    assert str(path) in out
    assert len(result.epoch_seconds) == 1
    assert result.test_size == 360


def test_default_config_is_what_the_readme_promises():
    config = DemoConfig()
    assert (config.backend, config.dtype, config.batch_size, config.seed) == (
        "numpy",
        "float32",
        32,
        0,
    )
    assert config.epochs <= 15


# --------------------------------------------------------------------------- gradients vs torch


def _rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def _torch_grad(fn, *arrays):
    """Value and gradients of ``fn`` (on float64 torch tensors) at the NumPy ``arrays``."""
    torch = pytest.importorskip("torch")
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    value = fn(*tensors)
    value.backward()
    return value.detach().numpy(), [t.grad.numpy() for t in tensors]


def _close(backend, actual, expected):
    np.testing.assert_allclose(backend.to_numpy(actual), expected, rtol=1e-10, atol=1e-12)


def test_relu_backward_matches_torch(backend):
    x = _rng().normal(size=(2, 3, 4, 5))
    g = _rng().normal(size=x.shape)
    _, (expected,) = _torch_grad(lambda t: (t.relu() * _as_torch(g)).sum(), x)
    layer = nn.ReLU()
    y = layer(backend.asarray(x))
    _close(backend, y, np.maximum(x, 0))
    _close(backend, layer.backward(backend.asarray(g)), expected)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 5, 7)])
def test_maxpool_backward_matches_torch(backend, shape):
    torch = pytest.importorskip("torch")
    x = _rng().normal(size=shape)  # no ties: every window has one maximum
    pooled_shape = (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    g = _rng().normal(size=pooled_shape)
    value, (expected,) = _torch_grad(
        lambda t: (torch.nn.functional.max_pool2d(t, 2) * _as_torch(g)).sum(), x
    )
    layer = nn.MaxPool2d(2)
    y = layer(backend.asarray(x))
    assert tuple(y.shape) == pooled_shape
    np.testing.assert_allclose(np.sum(backend.to_numpy(y) * g), value, rtol=1e-12)
    _close(backend, layer.backward(backend.asarray(g)), expected)


def test_maxpool_splits_the_gradient_of_ties(backend):
    layer = nn.MaxPool2d(2)
    layer(backend.asarray(np.zeros((1, 1, 2, 2))))
    grad = layer.backward(backend.asarray(np.ones((1, 1, 1, 1))))
    _close(backend, grad, np.full((1, 1, 2, 2), 0.25))


def test_flatten_roundtrip(backend):
    x = _rng().normal(size=(3, 2, 4, 4))
    layer = nn.Flatten()
    y = layer(backend.asarray(x))
    assert tuple(y.shape) == (3, 32)
    _close(backend, layer.backward(y), x)


def test_linear_backward_matches_torch(backend):
    torch = pytest.importorskip("torch")
    layer = nn.Linear(6, 4, xp=backend.xp, device=backend.device, dtype=backend.xp.float64, rng=1)
    w, b = backend.to_numpy(layer.weight), backend.to_numpy(layer.bias)
    assert np.all(np.abs(w) <= 1 / math.sqrt(6))
    x = _rng().normal(size=(5, 6))
    g = _rng().normal(size=(5, 4))
    _, (gx, gw, gb) = _torch_grad(
        lambda tx, tw, tb: (torch.nn.functional.linear(tx, tw, tb) * _as_torch(g)).sum(), x, w, b
    )
    y = layer(backend.asarray(x))
    _close(backend, y, x @ w.T + b)
    _close(backend, layer.backward(backend.asarray(g)), gx)
    _close(backend, layer.grad_weight, gw)
    _close(backend, layer.grad_bias, gb)


def test_softmax_cross_entropy_matches_torch(backend):
    torch = pytest.importorskip("torch")
    logits = 3 * _rng().normal(size=(7, 10))
    labels = np.array([0, 3, 9, 9, 2, 5, 1])
    value, (expected,) = _torch_grad(
        lambda t: torch.nn.functional.cross_entropy(t, torch.tensor(labels)), logits
    )
    loss_fn = nn.SoftmaxCrossEntropy()
    loss = loss_fn(backend.asarray(logits), backend.asarray(labels))
    _close(backend, loss, value)
    _close(backend, loss_fn.backward(), expected)
    assert nn.accuracy(backend.asarray(logits), backend.asarray(labels)) == pytest.approx(
        np.mean(np.argmax(logits, axis=1) == labels)
    )


def test_softmax_cross_entropy_is_stable_for_large_logits(backend):
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 800.0, 800.0]])
    labels = np.array([0, 1])
    loss_fn = nn.SoftmaxCrossEntropy()
    loss = loss_fn(backend.asarray(logits, dtype=np.float32), backend.asarray(labels))
    np.testing.assert_allclose(backend.to_numpy(loss), math.log(2) / 2, rtol=1e-6)
    grad = backend.to_numpy(loss_fn.backward())
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0, 0, 0], [0, -0.25, 0.25]], atol=1e-7)


def _as_torch(a):
    torch = pytest.importorskip("torch")
    return torch.tensor(a, dtype=torch.float64)


def test_whole_network_gradients_match_torch(backend):
    """conv -> ReLU -> conv -> ReLU -> pool -> dense -> CE, every gradient against autograd."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xp = backend.xp
    model = build_model(xp, device=backend.device, dtype=xp.float64, rng=3)
    params = [backend.to_numpy(p) for p in model.parameters()]
    x = _rng().uniform(size=(10, 1, 8, 8))
    labels = np.array([1, 0, 7, 7, 3, 9, 2, 2, 5, 4])

    def reference(tx, w1, b1, w2, b2, w3, b3):
        h = F.relu(F.conv2d(tx, w1, b1, padding=1))
        h = F.relu(F.conv2d(h, w2, b2, padding=1))
        h = F.max_pool2d(h, 2).flatten(1)
        return F.cross_entropy(F.linear(h, w3, b3), torch.tensor(labels))

    value, grads = _torch_grad(reference, x, *params)
    loss_fn = nn.SoftmaxCrossEntropy()
    loss = loss_fn(model(backend.asarray(x)), backend.asarray(labels))
    grad_x = model.backward(loss_fn.backward())
    np.testing.assert_allclose(backend.to_numpy(loss), value, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(grad_x), grads[0], rtol=1e-9, atol=1e-13)
    actual = [getattr(layer, f"grad_{name}") for layer, name in model.named_parameters()]
    for got, want in zip(actual, grads[1:], strict=True):
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-9, atol=1e-13)


def test_whole_network_gradient_matches_finite_differences():
    """Independent of torch: a central difference along a random direction (float64, NumPy)."""
    model = build_model(np, dtype=np.float64, rng=5, channels=(2, 3))
    x = _rng().uniform(size=(4, 1, 8, 8))
    labels = np.array([2, 4, 6, 8])
    loss_fn = nn.SoftmaxCrossEntropy()
    loss_fn(model(x), labels)
    model.backward(loss_fn.backward())
    slots = list(model.named_parameters())
    grads = [getattr(layer, f"grad_{name}") for layer, name in slots]
    base = [getattr(layer, name) for layer, name in slots]
    directions = [_rng().normal(size=p.shape) for p in base]
    eps = 1e-6

    def loss_at(t):
        for (layer, name), p, d in zip(slots, base, directions, strict=True):
            setattr(layer, name, p + t * d)
        return float(loss_fn(model(x), labels))

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    analytic = sum(float(np.sum(g * d)) for g, d in zip(grads, directions, strict=True))
    assert numeric == pytest.approx(analytic, rel=1e-6)


# --------------------------------------------------------------------------- optimizers vs torch


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_optimizers_match_torch(backend, kind):
    torch = pytest.importorskip("torch")
    xp = backend.xp
    layer = nn.Linear(5, 3, xp=xp, device=backend.device, dtype=xp.float64, rng=2)
    ref = torch.nn.Linear(5, 3, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(backend.to_numpy(layer.weight)))
        ref.bias.copy_(torch.tensor(backend.to_numpy(layer.bias)))
    if kind == "adam":
        ours = nn.Adam([(layer, "weight"), (layer, "bias")], lr=0.05)
        theirs = torch.optim.Adam(ref.parameters(), lr=0.05)
    else:
        ours = nn.SGD([(layer, "weight"), (layer, "bias")], lr=0.05, momentum=0.9)
        theirs = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    for step in range(4):
        x = np.random.default_rng(step).normal(size=(8, 5))
        g = np.random.default_rng(100 + step).normal(size=(8, 3))
        layer(backend.asarray(x))
        layer.backward(backend.asarray(g))
        ours.step()
        theirs.zero_grad()
        (ref(torch.tensor(x)) * torch.tensor(g)).sum().backward()
        theirs.step()
    _close(backend, layer.weight, ref.weight.detach().numpy())
    _close(backend, layer.bias, ref.bias.detach().numpy())


# --------------------------------------------------------------------------- errors


def test_backward_before_forward_is_a_clear_error():
    for layer in (nn.ReLU(), nn.MaxPool2d(), nn.Flatten(), nn.Linear(2, 2)):
        with pytest.raises(RuntimeError, match="forward"):
            layer.backward(np.ones((1, 2)))
    with pytest.raises(RuntimeError, match="forward"):
        nn.SoftmaxCrossEntropy().backward()


def test_step_before_backward_is_a_clear_error():
    model = nn.Sequential(nn.Linear(2, 2, rng=0))
    with pytest.raises(RuntimeError, match="backward"):
        nn.Adam(model).step()


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: nn.Linear(0, 2), "in_features"),
        (lambda: nn.Linear(2, True), "out_features"),
        (lambda: nn.MaxPool2d(0), "size"),
        (lambda: nn.Adam([], lr=-1.0), "lr"),
        (lambda: nn.SGD([], lr=float("nan")), "lr"),
    ],
)
def test_bad_arguments_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_cross_entropy_checks_shapes():
    with pytest.raises(ValueError, match="labels"):
        nn.SoftmaxCrossEntropy()(np.zeros((3, 10)), np.zeros(4, dtype=np.int64))


def test_sequential_is_a_container():
    model = build_model(np, rng=0)
    assert len(model) == 7
    assert isinstance(model[0], xpconv.Conv2d)
    assert "MaxPool2d(2)" in repr(model)
    assert len(model.parameters()) == 6
