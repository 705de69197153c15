"""Backend matrix for the test suite.

Every test that takes the ``xp`` (or ``backend``) fixture runs once per usable
array library. ``XPCONV_TEST_BACKENDS=numpy,torch`` narrows the set; a backend
named there that cannot run here fails loudly instead of being skipped, so a
CI matrix cannot silently test nothing.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from hypothesis import settings

from xpconv import _registry
from xpconv._backend import to_numpy

if TYPE_CHECKING:
    from collections.abc import Callable

# CI replays the same Hypothesis examples on every run, so that a red CI means a
# change broke something, not that a new random draw found an old corner; local
# runs keep drawing fresh examples (and store any failure in .hypothesis/).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


# xpconv needs __array_namespace_info__().default_dtypes(), new in the 2023.12
# standard; array-api-strict is run at that version to keep the claim honest.
OLDEST_API_VERSION = "2023.12"


class _Backend(enum.Enum):
    def __str__(self) -> str:
        return str(self.value)


#: One member per row of xpconv's backend registry (``xpconv._registry``):
#: ``Backend.NUMPY``, ``Backend.ARRAY_API_STRICT``, ..., ``Backend.TORCH_CUDA``,
#: whose values are the names ``XPCONV_TEST_BACKENDS`` and the markers use.
Backend = _Backend(
    "Backend", [(name.upper().replace("-", "_"), name) for name in _registry.names()]
)

#: Eager backends (JAX, Dask) where the suite runs a representative subset of
#: the parametrized cases (``tests/reference.py`` thins on these).
SLOW_BACKENDS: tuple[str, ...] = _registry.slow_names()


@dataclass(frozen=True)
class BackendCase:
    """A backend under test: its namespace, a device, and converters to and from NumPy."""

    backend: Backend
    xp: Any
    device: Any
    _to_numpy: Callable[[Any], np.ndarray]

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """A NumPy array (or nested list) as an array of this backend."""
        a = np.asarray(a)
        if dtype is not None:
            a = a.astype(dtype)
        return self.xp.asarray(a, device=self.device)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(self._to_numpy(a))

    def dtype(self, name: str) -> Any:
        return getattr(self.xp, name)

    def __str__(self) -> str:
        return self.backend.value


def _make(backend: Backend) -> BackendCase:
    """The namespace and device from the registry, with the test suite's settings."""
    if backend is Backend.JAX:
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 tests need it
    xp, device = _registry.load(backend.value)
    if backend is Backend.ARRAY_API_STRICT:
        # Test the oldest standard version xpconv claims (see OLDEST_API_VERSION).
        xp.set_array_api_strict_flags(api_version=OLDEST_API_VERSION)
    return BackendCase(backend, xp, device, to_numpy)


def _usable(backend: Backend) -> bool:
    return _registry.usable(backend.value)


def selected_backends() -> list[Backend]:
    requested = os.environ.get("XPCONV_TEST_BACKENDS", "").strip()
    if not requested:
        return [b for b in Backend if _usable(b)]
    chosen = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in _registry.names()]
    if unknown:
        msg = (
            f"XPCONV_TEST_BACKENDS names unknown backend(s) {unknown}; "
            f"choose from {', '.join(_registry.names())}"
        )
        raise pytest.UsageError(msg)
    return [Backend(name) for name in chosen]


BACKENDS = selected_backends()


def pytest_report_header(config: pytest.Config) -> str:
    return "xpconv backends: " + ", ".join(b.value for b in BACKENDS)


def _apply_markers(request: pytest.FixtureRequest, backend: Backend) -> None:
    for marker in request.node.iter_markers("skip_xp_backend"):
        if Backend(marker.args[0]) is backend:
            pytest.skip(marker.kwargs.get("reason", f"not supported on {backend}"))
    for marker in request.node.iter_markers("xfail_xp_backend"):
        if Backend(marker.args[0]) is backend:
            request.applymarker(
                pytest.mark.xfail(reason=marker.kwargs.get("reason", ""), strict=True)
            )


@pytest.fixture(params=BACKENDS, ids=str)
def backend(request: pytest.FixtureRequest) -> BackendCase:
    """The backend under test; fails (not skips) when a requested backend is unusable."""
    chosen: Backend = request.param
    _apply_markers(request, chosen)
    if not _usable(chosen):
        pytest.fail(f"backend {chosen} was requested in XPCONV_TEST_BACKENDS but cannot run here")
    return _make(chosen)


@pytest.fixture
def xp(backend: BackendCase) -> Any:
    """The array API namespace of the backend under test."""
    return backend.xp
