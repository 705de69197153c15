"""``xpconv demo``: train a small CNN on scikit-learn's handwritten digits.

The network is built only from xpconv pieces with explicit backward passes::

    Conv2d(1, 16, 3, padding=1) -> ReLU -> Conv2d(16, 32, 3, padding=1) -> ReLU
    -> MaxPool2d(2) -> Flatten -> Linear(32*4*4, 10) -> softmax cross-entropy

and trained with Adam on the 1,797 8x8 images that ship inside scikit-learn
(``sklearn.datasets.load_digits``; nothing is downloaded). Everything after
data loading is array API code, so the same run works on NumPy, PyTorch, CuPy,
JAX, Dask and array-api-strict. The same seed gives the same losses on a CPU.

Use it from the command line (``xpconv demo --help``) or from Python:

>>> from xpconv.demo import DemoConfig, run_demo
>>> result = run_demo(DemoConfig(epochs=1, progress=False, plot=False), stream=None)
>>> 0.0 < result.test_accuracy <= 1.0
True
"""

from __future__ import annotations

import contextlib
import importlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import array_api_compat

from xpconv import _registry, nn
from xpconv._backend import gpu_available, synchronize, to_numpy
from xpconv.layers import Conv2d

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "BACKENDS",
    "DemoConfig",
    "DemoError",
    "DemoResult",
    "build_model",
    "evaluate",
    "get_backend",
    "load_digits_split",
    "plot_results",
    "run_demo",
    "train_epoch",
]

Array = Any
Namespace = Any

#: Backends the demo (and ``xpconv info``) knows, with the package that provides each
#: (the rows of :mod:`xpconv._registry` that the command line accepts).
BACKENDS: dict[str, str] = {
    spec.name: spec.distributions[0] for spec in _registry.BACKENDS if spec.cli
}
#: Seeds scikit-learn accepts for the split (``random_state``): 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1
DEMO_INSTALL = 'pip install "xpconv[demo]"'
IMAGE_NAME = "xpconv-demo.png"
_BAR_FORMAT = "{desc}: {bar:16} {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class DemoError(Exception):
    """A problem the user can fix (missing package, no GPU, bad option): one line, no traceback."""


# --------------------------------------------------------------------------- backends


def get_backend(name: str, device: str | None = None) -> tuple[Namespace, Any]:
    """The array API namespace and device for a backend name such as ``"torch"``.

    ``device`` is only meaningful for torch (``"cpu"``, ``"cuda"``, ``"cuda:1"``);
    by default torch uses the GPU when one works, every other backend its
    default device. Raises :class:`DemoError` with an installation hint when
    the library is missing, and for CuPy when no GPU works.
    """
    if name not in BACKENDS:
        msg = f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}"
        raise DemoError(msg)
    if name == "torch" and device is None:
        device = "cuda" if gpu_available("torch") else "cpu"
    try:
        return _registry.load(name, device)
    except _registry.BackendError as exc:
        raise DemoError(str(exc)) from None


def _require(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        msg = f"xpconv demo needs {package}, which is not installed: {DEMO_INSTALL}"
        raise DemoError(msg) from None


# --------------------------------------------------------------------------- data


def load_digits_split(seed: int = 0, test_fraction: float = 0.2) -> tuple[Any, Any, Any, Any]:
    """scikit-learn's 8x8 digits as NumPy arrays, split stratified by class.

    Returns ``(x_train, y_train, x_test, y_test)``: images (N, 1, 8, 8) as
    float64 in [0, 1] and int64 labels 0-9. The split depends only on ``seed``.
    """
    np = _require("numpy", "numpy")
    datasets = _require("sklearn.datasets", "scikit-learn")
    model_selection = _require("sklearn.model_selection", "scikit-learn")
    digits = datasets.load_digits()
    images = np.asarray(digits.images, dtype=np.float64)[:, None, :, :] / 16.0
    labels = np.asarray(digits.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------- model


def build_model(
    xp: Namespace,
    *,
    device: Any = None,
    dtype: Any = None,
    rng: Any = 0,
    channels: tuple[int, int] = (16, 32),
    image_size: int = 8,
    num_classes: int = 10,
) -> nn.Sequential:
    """conv -> ReLU -> conv -> ReLU -> 2x2 max-pool -> dense, initialised like PyTorch.

    ``rng`` (a seed or ``numpy.random.Generator``) fixes the initial weights,
    which are the same on every backend.
    """
    np = _require("numpy", "numpy")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    c1, c2 = channels
    kw = {"xp": xp, "device": device, "dtype": dtype, "rng": gen}
    pooled = image_size // 2
    return nn.Sequential(
        Conv2d(1, c1, 3, padding=1, **kw),
        nn.ReLU(),
        Conv2d(c1, c2, 3, padding=1, **kw),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * pooled * pooled, num_classes, **kw),
    )


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    # Stops never run past n: array-api-strict rejects such slices.
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def train_epoch(
    model: nn.Sequential,
    loss_fn: nn.SoftmaxCrossEntropy,
    optimizer: nn.Adam | nn.SGD,
    x: Array,
    y: Array,
    *,
    batch_size: int,
    order: Any,
    on_batch: Callable[[float, float], None] | None = None,
) -> tuple[float, float]:
    """One pass over ``(x, y)`` in the order given by ``order`` (a NumPy permutation).

    Returns the epoch's mean training loss and accuracy (each batch measured
    before its update). ``on_batch(loss, accuracy)`` is called after each step.
    """
    xp = array_api_compat.array_namespace(x, y)
    index = xp.asarray(order, device=array_api_compat.device(x))
    total_loss = 0.0
    total_correct = 0.0
    n = x.shape[0]
    for start, stop in _batches(n, batch_size):
        idx = index[start:stop]
        xb = xp.take(x, idx, axis=0)
        yb = xp.take(y, idx, axis=0)
        logits = model(xb)
        loss = loss_fn(logits, yb)
        model.backward(loss_fn.backward())
        optimizer.step()
        batch_loss = float(loss)
        batch_acc = nn.accuracy(logits, yb)
        total_loss += batch_loss * (stop - start)
        total_correct += batch_acc * (stop - start)
        if on_batch is not None:
            on_batch(batch_loss, batch_acc)
    return total_loss / n, total_correct / n


def evaluate(
    model: nn.Sequential,
    loss_fn: nn.SoftmaxCrossEntropy,
    x: Array,
    y: Array,
    *,
    batch_size: int = 512,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``; no parameter changes."""
    n = x.shape[0]
    total_loss = 0.0
    total_correct = 0.0
    for start, stop in _batches(n, batch_size):
        logits = model(x[start:stop, ...])
        total_loss += float(loss_fn(logits, y[start:stop])) * (stop - start)
        total_correct += nn.accuracy(logits, y[start:stop]) * (stop - start)
    return total_loss / n, total_correct / n


# --------------------------------------------------------------------------- the run


@dataclass
class DemoConfig:
    """Options of :func:`run_demo` (the defaults reach >= 97 % test accuracy)."""

    backend: str = "numpy"
    epochs: int = 12
    batch_size: int = 32
    seed: int = 0
    lr: float = 3e-3
    out: str | Path = "."
    dtype: str = "float32"
    device: str | None = None
    channels: tuple[int, int] = (16, 32)
    threads: int | None = 1  # BLAS/OpenMP threads while training; None: the libraries' own
    progress: bool = True
    plot: bool = True
    max_train: int | None = None  # train on the first N training images only (tests)


@dataclass
class DemoResult:
    """What a demo run measured."""

    backend: str
    device: str
    dtype: str
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy_history: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    test_accuracy: float = math.nan
    test_correct: int = 0
    test_size: int = 0
    train_size: int = 0
    total_seconds: float = 0.0
    image: Path | None = None
    filters: Any = None  # first-layer weights as a NumPy array (O, 1, KH, KW)

    def record_epoch(
        self, train_loss: float, train_acc: float, test_loss: float, test_acc: float
    ) -> None:
        """One epoch's losses and accuracies, appended to the histories."""
        self.train_loss.append(train_loss)
        self.train_accuracy.append(train_acc)
        self.test_loss.append(test_loss)
        self.test_accuracy_history.append(test_acc)


def _check_config(config: DemoConfig) -> None:
    for name in ("epochs", "batch_size"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            msg = f"{name.replace('_', '-')} must be a positive integer, got {value!r}"
            raise DemoError(msg)
    if not (isinstance(config.lr, int | float) and math.isfinite(config.lr) and config.lr > 0):
        msg = f"lr must be a positive finite number, got {config.lr!r}"
        raise DemoError(msg)
    if config.threads is not None and (
        isinstance(config.threads, bool)
        or not isinstance(config.threads, int)
        or config.threads < 1
    ):
        msg = f"threads must be a positive integer or None, got {config.threads!r}"
        raise DemoError(msg)
    seed = config.seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        msg = f"seed must be an integer from 0 to {MAX_SEED}, got {seed!r}"
        raise DemoError(msg)
    if config.dtype not in ("float32", "float64"):
        msg = f"dtype must be 'float32' or 'float64', got {config.dtype!r}"
        raise DemoError(msg)


def _describe(model: nn.Sequential) -> str:
    parts = []
    for layer in model.layers:
        if isinstance(layer, Conv2d):
            kh, kw = layer.kernel_size
            parts.append(f"Conv2d({layer.in_channels}, {layer.out_channels}, {kh}x{kw})")
        elif isinstance(layer, nn.Linear):
            parts.append(f"Linear({layer.in_features}, {layer.out_features})")
        elif isinstance(layer, nn.MaxPool2d):
            parts.append(f"MaxPool{layer.size}x{layer.size}")
        elif not isinstance(layer, nn.Flatten):
            parts.append(type(layer).__name__)
    return " -> ".join(parts)


def _thread_limit(threads: int | None) -> Any:
    """Limit BLAS/OpenMP threads with threadpoolctl when it is installed.

    The demo's matrices are small (at most 32 x 144 by 144 x 2048): a second
    thread buys little, and on a busy machine its spin-waiting costs several
    times the work (measured here: NumPy 4 s instead of 0.7 s per epoch,
    torch 20 s instead of 1.1 s, on 2 shared cores).
    """
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads)


def _epoch_bar(tqdm: Any, epoch: int, epochs: int, n_batches: int) -> Any:
    """The progress bar of one epoch on stderr, or None without tqdm."""
    if tqdm is None:
        return None
    return tqdm(
        total=n_batches,
        desc=f"epoch {epoch:{len(str(epochs))}d}/{epochs}",
        unit="batch",
        file=sys.stderr,  # looked up now, not at import (pytest's capsys swaps it)
        leave=True,
        bar_format=_BAR_FORMAT,
    )


def _train(
    config: DemoConfig,
    *,
    model: nn.Sequential,
    loss_fn: nn.SoftmaxCrossEntropy,
    optimizer: nn.Adam,
    order_rng: Any,
    data: tuple[Array, Array, Array, Array],
    result: DemoResult,
    tqdm: Any,
    say: Callable[[str], None],
) -> None:
    """The epochs of :func:`run_demo`; fills ``result``."""
    x_train, y_train, x_test, y_test = data
    n_batches = len(_batches(result.train_size, config.batch_size))
    width = len(str(config.epochs))  # for the lines that replace the bars
    start_all = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        bar = _epoch_bar(tqdm, epoch, config.epochs, n_batches)
        running = [0.0, 0.0, 0]

        def on_batch(loss: float, acc: float, bar: Any = bar, running: list = running) -> None:
            running[0] += loss
            running[1] += acc
            running[2] += 1
            if bar is not None:
                bar.set_postfix_str(
                    f"loss {running[0] / running[2]:.3f}, acc {100 * running[1] / running[2]:.1f}%",
                    refresh=False,
                )
                bar.update(1)

        # Cosine learning-rate decay: full rate in the first epoch, small at the end.
        optimizer.lr = config.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / config.epochs))
        t0 = time.perf_counter()
        train_loss, train_acc = train_epoch(
            model,
            loss_fn,
            optimizer,
            x_train,
            y_train,
            batch_size=config.batch_size,
            order=order_rng.permutation(result.train_size),
            on_batch=on_batch,
        )
        synchronize(model[0].weight)
        result.epoch_seconds.append(time.perf_counter() - t0)
        test_loss, test_acc = evaluate(model, loss_fn, x_test, y_test)
        result.record_epoch(train_loss, train_acc, test_loss, test_acc)
        summary = (
            f"loss {train_loss:.3f}, acc {100 * train_acc:.1f}% | "
            f"held-out loss {test_loss:.3f}, acc {100 * test_acc:.1f}%"
        )
        if bar is not None:
            bar.set_postfix_str(summary)
            bar.close()
        else:
            say(f"epoch {epoch:{width}d}/{config.epochs}: {summary}")
    result.total_seconds = time.perf_counter() - start_all
    result.test_accuracy = result.test_accuracy_history[-1]
    result.test_correct = round(result.test_accuracy * result.test_size)
    result.filters = to_numpy(model[0].weight)


def _digits(
    config: DemoConfig, xp: Any, device: Any, dtype: Any
) -> tuple[Array, Array, Array, Array]:
    """The digits split (training set capped at ``config.max_train``) as the backend's arrays."""
    x_train, y_train, x_test, y_test = load_digits_split(config.seed)
    if config.max_train is not None:
        x_train, y_train = x_train[: config.max_train], y_train[: config.max_train]
    return (
        xp.asarray(x_train, dtype=dtype, device=device),
        xp.asarray(y_train, device=device),
        xp.asarray(x_test, dtype=dtype, device=device),
        xp.asarray(y_test, device=device),
    )


def _report(result: DemoResult, config: DemoConfig, say: Callable[[str], None]) -> None:
    """The closing lines: held-out accuracy and time per epoch."""
    per_epoch = sum(result.epoch_seconds) / len(result.epoch_seconds)
    say(
        f"test accuracy: {100 * result.test_accuracy:.1f}% "
        f"({result.test_correct}/{result.test_size} held-out images)"
    )
    say(
        f"time per epoch: {per_epoch:.2f} s (mean of {config.epochs}; "
        f"first {result.epoch_seconds[0]:.2f} s); total {result.total_seconds:.1f} s"
    )


def run_demo(
    config: DemoConfig | None = None, *, stream: TextIO | str | None = "stdout"
) -> DemoResult:
    """Train the demo network and report; see :class:`DemoConfig` for the options.

    Progress bars go to stderr (``config.progress`` on a terminal), the summary
    to ``stream``: standard output by default, ``None`` for silence. Raises
    :class:`DemoError` for problems the user can fix (missing packages, unknown
    backend, no GPU, unwritable ``out``).
    """
    config = DemoConfig() if config is None else config
    _check_config(config)

    def say(text: str) -> None:
        if stream is not None:
            # "stdout" is looked up now, not at import (pytest's capsys swaps it).
            out = sys.stdout if isinstance(stream, str) else stream
            print(text, file=out, flush=True)

    # Check everything the user can fix before the work starts: the backend, then
    # the demo extra's packages, then the output folder.
    xp, device = get_backend(config.backend, config.device)
    np = _require("numpy", "numpy")
    _require("sklearn", "scikit-learn")
    # A bar on a terminal; on a pipe or a log file one line per epoch instead.
    show_bar = config.progress and sys.stderr.isatty()
    tqdm = _require("tqdm", "tqdm").tqdm if show_bar else None
    if config.plot:
        _require("matplotlib", "matplotlib")
        _make_folder(Path(config.out))
    dtype = getattr(xp, config.dtype)
    x_train, y_train, x_test, y_test = _digits(config, xp, device, dtype)

    init_seq, order_seq = np.random.SeedSequence(config.seed).spawn(2)
    model = build_model(
        xp,
        device=device,
        dtype=dtype,
        rng=np.random.default_rng(init_seq),
        channels=config.channels,
    )
    order_rng = np.random.default_rng(order_seq)
    loss_fn = nn.SoftmaxCrossEntropy()
    optimizer = nn.Adam(model, lr=config.lr)

    device_name = str(array_api_compat.device(x_train))
    result = DemoResult(config.backend, device_name, config.dtype)
    result.train_size, result.test_size = int(x_train.shape[0]), int(x_test.shape[0])
    n_params = sum(math.prod(p.shape) for p in model.parameters())
    threads_note = (
        f"BLAS threads: {'library default' if config.threads is None else config.threads}"
    )
    say(
        f"xpconv demo: {config.backend} backend on {device_name}, {config.dtype}, "
        f"{threads_note}; "
        f"{result.train_size} training / {result.test_size} held-out 8x8 digit images"
    )
    say(f"model: {_describe(model)}; {n_params:,} parameters; Adam, lr {config.lr:g}, cosine decay")

    with _thread_limit(config.threads):
        data = (x_train, y_train, x_test, y_test)
        _train(
            config,
            model=model,
            loss_fn=loss_fn,
            optimizer=optimizer,
            order_rng=order_rng,
            data=data,
            result=result,
            tqdm=tqdm,
            say=say,
        )

    _report(result, config, say)
    if config.plot:
        result.image = plot_results(result, Path(config.out) / IMAGE_NAME)
        say(f"wrote {result.image}")
    return result


# --------------------------------------------------------------------------- picture


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        msg = f"--out must be a folder that can be created, got {str(folder)!r}: {reason}"
        raise DemoError(msg) from None


def _filter_mosaic(filters: Any) -> Any:
    """(O, 1, K, K) filters -> one 2-D image with a 1-pixel NaN gap between tiles."""
    import numpy as np

    o, _, kh, kw = filters.shape
    cols = math.ceil(math.sqrt(o))
    rows = math.ceil(o / cols)
    mosaic = np.full((rows * (kh + 1) - 1, cols * (kw + 1) - 1), np.nan)
    for k in range(o):
        r, c = divmod(k, cols)
        mosaic[r * (kh + 1) : r * (kh + 1) + kh, c * (kw + 1) : c * (kw + 1) + kw] = filters[k, 0]
    return mosaic


def plot_results(result: DemoResult, path: str | Path) -> Path:
    """Write a PNG: loss curves, accuracy curves and the learned first-layer filters."""
    import matplotlib

    matplotlib.use("Agg")  # headless; the demo never opens a window
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    epochs = np.arange(1, len(result.train_loss) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    ax = axes[0]
    ax.plot(epochs, result.train_loss, "o-", label="train (during the epoch)")
    ax.plot(epochs, result.test_loss, "s-", label="held-out")
    ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss", yscale="log")
    ax.legend()
    ax = axes[1]
    ax.plot(epochs, 100 * np.asarray(result.train_accuracy), "o-", label="train (during the epoch)")
    ax.plot(epochs, 100 * np.asarray(result.test_accuracy_history), "s-", label="held-out")
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax.legend(loc="lower right")
    for a in axes[:2]:
        a.grid(alpha=0.3)
        a.xaxis.get_major_locator().set_params(integer=True)
    ax = axes[2]
    filters = np.asarray(result.filters, dtype=np.float64)
    limit = float(np.max(np.abs(filters))) or 1.0
    image = ax.imshow(_filter_mosaic(filters), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(f"learned first-layer filters ({filters.shape[0]} x 3x3)")
    ax.set_axis_off()
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(
        f"xpconv demo on sklearn digits: {result.backend} ({result.dtype}), "
        f"held-out accuracy {100 * result.test_accuracy:.1f}%"
    )
    _make_folder(path.parent)
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        msg = f"cannot write the picture to {str(path)!r}: {exc.strerror or exc}"
        raise DemoError(msg) from None
    finally:
        plt.close(fig)
    return path
