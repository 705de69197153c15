"""Test matrix and project tasks: ``nox`` runs the default sessions, ``nox -l`` lists all.

CPU sessions pin ``torch==2.13.0``: PyTorch is the oracle for every backend's
results, and an unpinned ``torch`` would pull a multi-GB CUDA build.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import nox

if TYPE_CHECKING:
    from types import ModuleType


def _load_registry() -> ModuleType:
    """xpconv's backend registry, loaded from its file: nox runs without xpconv installed."""
    path = Path(__file__).resolve().parent / "src" / "xpconv" / "_registry.py"
    spec = importlib.util.spec_from_file_location("_xpconv_registry", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


REGISTRY = _load_registry()

nox.needs_version = ">=2024.4.15"
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
# One tests(backend=...) session per CPU backend of the registry
# (src/xpconv/_registry.py), with the packages it names. The default run
# (`nox`) stays under 10 minutes on 2 cores. JAX and Dask run the same suite
# more slowly (eager JAX compiles every new shape, Dask builds a graph per
# call): `nox -t extra` runs them, with the `package` session (the built wheel
# in fresh virtualenvs), and .ci/run runs them after the default sessions.
BACKEND_PACKAGES: dict[str, list[str]] = {
    spec.name: list(spec.nox_packages) for spec in REGISTRY.nox_backends()
}
DEFAULT_BACKENDS = [spec.name for spec in REGISTRY.nox_backends() if spec.nox_default]
GPU_BACKENDS = [spec for spec in REGISTRY.BACKENDS if spec.device == "gpu"]
nox.options.sessions = [
    *(f"tests(backend='{name}')" for name in DEFAULT_BACKENDS),
    "lint",
    "typecheck",
    "docs",
]

PYPROJECT = nox.project.load_toml("pyproject.toml")
TORCH_CPU = "torch==2.13.0"


def _install_tests(session: nox.Session, *extra: str) -> None:
    # The demo extra too: the demo's training step and the CLI are part of the suite.
    session.install("-e", ".[demo]", *nox.project.dependency_groups(PYPROJECT, "test"), *extra)


@nox.session
@nox.parametrize(
    "backend",
    [
        nox.param(name, tags=[] if name in DEFAULT_BACKENDS else ["extra"])
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
    packages = dict.fromkeys(p for spec in GPU_BACKENDS for p in spec.nox_packages)
    _install_tests(session, *packages)
    names = [spec.name for spec in GPU_BACKENDS]
    probe = f"from xpconv._registry import usable; print(all(map(usable, {names!r})))"
    if session.run("python", "-c", probe, silent=True).strip() != "True":
        session.skip("skipped: no GPU (CuPy or torch cannot run a kernel here)")
    session.run("pytest", *session.posargs, env={"XPCONV_TEST_BACKENDS": ",".join(names)})


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


SMOKE_TEST = Path(__file__).resolve().parent / "tests" / "smoke" / "check_installed.py"


@nox.session(tags=["extra"])
def package(session: nox.Session) -> None:
    """Build the sdist and wheel, check them with twine, and smoke-test the wheel in fresh
    virtualenvs: one with NumPy only, one with PyTorch CPU as the array library.

    Tagged ``extra`` (run by .ci/run, not by a plain ``nox``): installing torch into a
    fresh virtualenv takes about a minute more than the default run can spare.
    """
    session.install("build", "twine")
    tmp = Path(session.create_tmp()).resolve()
    dist = tmp / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist))
    session.run("twine", "check", "--strict", *map(str, sorted(dist.iterdir())))
    (wheel,) = dist.glob("*.whl")
    for library, extra in (("numpy", []), ("torch", [TORCH_CPU])):
        venv = tmp / f"venv-{library}"
        shutil.rmtree(venv, ignore_errors=True)
        session.run("python", "-m", "venv", str(venv))
        python = str(venv / "bin" / "python")
        session.run(python, "-m", "pip", "install", "-q", str(wheel), *extra, external=True)
        with session.chdir(tmp):  # away from src/: import the installed wheel
            session.run(python, str(SMOKE_TEST), library, external=True)


def _ensure_chromium(session: nox.Session) -> None:
    """Debian's chromium and chromium-driver, installed when missing and we may (root)."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        session.skip(
            "skipped: chromium and chromedriver are not installed, and installing them needs "
            "root and apt-get (apt-get install chromium chromium-driver)"
        )
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run("apt-get", "update", "-qq", external=True, env=env)
    session.run(
        "apt-get", "install", "-y", "-qq", "chromium", "chromium-driver", external=True, env=env
    )


@nox.session(tags=["extra"])
def docs_check(session: nox.Session) -> None:
    """Build the site and open the key pages in headless Chromium: fail on raw TeX left
    visible (MathJax not loaded) or an image that does not load."""
    _ensure_chromium(session)
    session.install(
        "-e", ".[demo]", *nox.project.dependency_groups(PYPROJECT, "docs"), "selenium>=4.20"
    )
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    checker = "docs/scripts/check_rendered.py"
    session.run("python", checker, "--self-test")  # the check can fail
    session.run("python", checker, "docs/_build/html")


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
