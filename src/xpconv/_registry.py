"""The one registry of array backends: what each is, how to load it, who runs it.

:data:`BACKENDS` is a declarative table read by everything that names an
array library: ``xpconv demo``, ``xpconv bench`` and ``xpconv info`` (which
``--backend`` names they accept, the install hint when one is missing), the
test suite (``tests/conftest.py``: its ``Backend`` enum, the
``XPCONV_TEST_BACKENDS`` names, the slow backends that run a thinned set of
cases), ``noxfile.py`` (one ``tests(backend=...)`` session per CPU backend, the
packages each installs, which run by default, the ``gpu`` session's
backends) and ``docs/conf.py`` (the sessions ``docs/backends.md`` must
describe). Adding a backend is adding one row here.

nox reads this file without xpconv installed, by loading it from its path
(:func:`importlib.util.spec_from_file_location`): the module imports nothing
but the standard library at import time. Its helpers that do need xpconv or
an array library (:func:`usable`, :func:`load`) import them when called.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "BACKENDS",
    "BackendError",
    "BackendSpec",
    "cli_names",
    "get",
    "load",
    "names",
    "nox_backends",
    "slow_names",
    "usable",
    "version",
]

DeviceKind = Literal["cpu", "gpu"]


@dataclass(frozen=True)
class BackendSpec:
    """One array backend.

    Attributes
    ----------
    name
        The name everywhere: ``--backend``, ``XPCONV_TEST_BACKENDS``, test ids,
        ``tests(backend=...)`` sessions. ``torch-cuda`` is PyTorch on a GPU.
    label
        How the docs and ``xpconv info`` spell the library.
    module
        The module that must import for the backend to exist here; its array
        API namespace is the one array-api-compat gives for its arrays.
    distributions
        PyPI distributions that provide it, the first installed one gives the
        version shown by ``xpconv info``.
    install
        What a user installs to get it (the hint in "not installed" errors).
    device
        ``"cpu"`` or ``"gpu"``; a GPU backend also needs ``gpu_library``
        (``"cupy"`` or ``"torch"``) to run a kernel here.
    default_device
        The device arrays are created on (``None``: the library's default).
    device_option
        Whether ``--device`` picks the device (PyTorch only).
    cli
        Whether ``xpconv demo``/``xpconv bench`` accept it as ``--backend``.
    nox_packages
        Packages its nox session installs besides xpconv[demo], the ``test``
        group and PyTorch CPU (the oracle of every CPU session).
    nox_default
        Whether plain ``nox`` runs its session (the others: ``nox -t extra``
        or the ``gpu`` session).
    slow
        Eager backends where a fixed case costs seconds (JAX compiles every
        new shape, Dask builds a graph per call): the suite runs a
        representative subset of the parametrized cases there.
    """

    name: str
    label: str
    module: str
    distributions: tuple[str, ...]
    install: str
    device: DeviceKind = "cpu"
    gpu_library: str | None = None
    default_device: str | None = None
    device_option: bool = False
    cli: bool = True
    nox_packages: tuple[str, ...] = ()
    nox_default: bool = True
    slow: bool = False

    @property
    def nox_session(self) -> str:
        """The nox session that tests this backend, as ``nox -l`` lists it."""
        return "gpu" if self.device == "gpu" else f"tests(backend='{self.name}')"


#: Every backend, in the order of the test ids and ``xpconv info``.
BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec(
        "numpy", "NumPy", "numpy", ("numpy",), "xpconv[numpy]",
    ),
    BackendSpec(
        "array_api_strict", "array-api-strict", "array_api_strict", ("array-api-strict",),
        "array-api-strict",
    ),
    BackendSpec(
        "torch", "PyTorch", "torch", ("torch",), "xpconv[torch]",
        default_device="cpu", device_option=True,
    ),
    BackendSpec(
        "jax", "JAX", "jax.numpy", ("jax",), "xpconv[jax]",
        nox_packages=("jax[cpu]",), nox_default=False, slow=True,
    ),
    BackendSpec(
        "dask", "Dask", "dask.array", ("dask",), "xpconv[dask]",
        nox_packages=("dask[array]", "distributed"), nox_default=False, slow=True,
    ),
    BackendSpec(
        "cupy", "CuPy", "cupy", ("cupy-cuda13x", "cupy-cuda12x", "cupy"), "xpconv[cupy]",
        device="gpu", gpu_library="cupy", nox_packages=("cupy-cuda13x",),
    ),
    BackendSpec(
        "torch-cuda", "PyTorch CUDA", "torch", ("torch",), "torch (a CUDA build)",
        device="gpu", gpu_library="torch", default_device="cuda", cli=False,
        nox_packages=("torch",),
    ),
)  # fmt: skip

_BY_NAME = {spec.name: spec for spec in BACKENDS}


_DEVICES = "'cpu', 'cuda' or 'cuda:N' (N: a GPU index)"


class BackendError(Exception):
    """A backend that cannot be used here (unknown, not installed, no GPU, bad device)."""


def get(name: str) -> BackendSpec:
    """The row for ``name``; :class:`BackendError` names the choices otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        msg = f"unknown backend {name!r}; choose one of: {', '.join(_BY_NAME)}"
        raise BackendError(msg) from None


def names() -> tuple[str, ...]:
    """Every backend name (``XPCONV_TEST_BACKENDS`` accepts these)."""
    return tuple(_BY_NAME)


def cli_names() -> tuple[str, ...]:
    """The ``--backend`` choices of ``xpconv demo`` and ``xpconv bench``."""
    return tuple(spec.name for spec in BACKENDS if spec.cli)


def slow_names() -> tuple[str, ...]:
    """Backends where the suite runs a thinned set of cases."""
    return tuple(spec.name for spec in BACKENDS if spec.slow)


def nox_backends() -> tuple[BackendSpec, ...]:
    """The backends with a ``tests(backend=...)`` session of their own (the CPU ones)."""
    return tuple(spec for spec in BACKENDS if spec.device == "cpu")


def version(spec: BackendSpec) -> str | None:
    """The installed version of the backend's library, or None."""
    for distribution in spec.distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _gpu_available(library: str) -> bool:
    # Looked up at call time, so that tests can stand in for it.
    from xpconv import _backend

    return _backend.gpu_available(library)


def usable(name: str) -> bool:
    """Whether the backend imports here and, for a GPU backend, runs a kernel."""
    spec = get(name)
    try:
        importlib.import_module(spec.module)
    except ImportError:
        return False
    return spec.gpu_library is None or _gpu_available(spec.gpu_library)


def _torch_device(spec: BackendSpec, device: str | None) -> Any:
    import torch

    text = device or spec.default_device or "cpu"
    try:
        dev = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        msg = f"--device must be {_DEVICES}, got {text!r}"
        raise BackendError(msg)
    if dev.type == "cuda" and not _gpu_available("torch"):
        msg = f"--device {text} was requested but torch cannot use a CUDA GPU here"
        raise BackendError(msg)
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        msg = f"--device {text}: torch sees {torch.cuda.device_count()} CUDA GPU(s) here"
        raise BackendError(msg)
    return dev


def load(name: str, device: str | None = None) -> tuple[Any, Any]:
    """The array API namespace and device of a backend, checked to be usable here.

    ``device`` is only accepted for a backend with ``device_option`` (PyTorch:
    ``'cpu'``, ``'cuda'``, ``'cuda:1'``); the default is the row's
    ``default_device``. Raises :class:`BackendError` with a one-line message
    (and an installation hint for a missing library).
    """
    spec = get(name)
    if device is not None and not spec.device_option:
        accepting = ", ".join(s.name for s in BACKENDS if s.device_option and s.cli)
        msg = (
            f"--device {device!r} is only supported with --backend {accepting} "
            f"(where it takes {_DEVICES}), not with --backend {name}"
        )
        raise BackendError(msg)
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        msg = (
            f"backend {name!r} is not installed (cannot import {spec.module}); "
            f'install it with: pip install "{spec.install}"'
        )
        raise BackendError(msg) from None
    if spec.gpu_library is not None and not _gpu_available(spec.gpu_library):
        msg = f"backend {name!r} is installed but no working CUDA GPU was found here"
        raise BackendError(msg)
    from xpconv._backend import resolve_namespace

    xp = resolve_namespace(module)
    if spec.device_option:
        return xp, _torch_device(spec, device)
    return xp, spec.default_device
