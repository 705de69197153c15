"""Test matrix and project tasks: ``nox`` runs the default sessions, ``nox -l`` lists all.

CPU sessions pin ``torch==2.13.0``: PyTorch is the oracle for every backend's
results, and an unpinned ``torch`` would pull a multi-GB CUDA build.
"""

from __future__ import annotations

import os
import shutil

import nox

nox.needs_version = ">=2024.4.15"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
# The default run (`nox`) stays under 10 minutes on 2 cores. JAX and Dask run
# the same suite more slowly (eager JAX compiles every new shape, Dask builds a
# graph per call): `nox -t extra` runs them, and .ci/run runs both after the
# default sessions.
nox.options.sessions = [
    "tests(backend='numpy')",
    "tests(backend='array_api_strict')",
    "tests(backend='torch')",
    "lint",
    "typecheck",
    "docs",
]

PYPROJECT = nox.project.load_toml("pyproject.toml")
TORCH_CPU = "torch==2.13.0"
BACKEND_PACKAGES = {
    "numpy": [],
    "array_api_strict": [],
    "torch": [],
    "jax": ["jax[cpu]"],
    "dask": ["dask[array]", "distributed"],
}


def _install_tests(session: nox.Session, *extra: str) -> None:
    # The demo extra too: the demo's training step and the CLI are part of the suite.
    session.install("-e", ".[demo]", *nox.project.dependency_groups(PYPROJECT, "test"), *extra)


@nox.session
@nox.parametrize(
    "backend",
    [
        nox.param(name, tags=["extra"] if name in ("jax", "dask") else [])
        for name in BACKEND_PACKAGES
    ],
)
def tests(session: nox.Session, backend: str) -> None:
    """The whole suite on one CPU backend (PyTorch CPU installed as the oracle)."""
    _install_tests(session, TORCH_CPU, *BACKEND_PACKAGES[backend])
    session.run("pytest", *session.posargs, env={"XPCONV_TEST_BACKENDS": backend})


@nox.session
def gpu(session: nox.Session) -> None:
    """The suite on CuPy and torch CUDA; skipped cleanly on a machine without a GPU."""
    if shutil.which("nvidia-smi") is None or os.system("nvidia-smi -L >/dev/null 2>&1") != 0:
        session.skip("skipped: no GPU (nvidia-smi finds no device)")
    _install_tests(session, "cupy-cuda13x", "torch")
    probe = "from xpconv._backend import gpu_available as g; print(g('cupy') and g('torch'))"
    if session.run("python", "-c", probe, silent=True).strip() != "True":
        session.skip("skipped: no GPU (CuPy or torch cannot run a kernel here)")
    session.run("pytest", *session.posargs, env={"XPCONV_TEST_BACKENDS": "cupy,torch-cuda"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    paths = ("src", "tests", "benchmarks", "docs", "noxfile.py")
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on the library."""
    session.install("-e", ".", *nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx site with warnings as errors and run the docstring examples."""
    session.install("-e", ".[demo]", *nox.project.dependency_groups(PYPROJECT, "docs"))
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("sphinx-build", "-W", "-b", "doctest", "docs", "docs/_build/doctest")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against PyTorch and the seed formulation: ``nox -s bench -- --help``."""
    session.install("-e", ".[bench]", TORCH_CPU)
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: train the demo CNN."""
    session.install("-e", ".[demo]")
    session.run("xpconv", "demo", *session.posargs)
