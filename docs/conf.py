"""Sphinx configuration for the xpconv documentation.

Build (as ``nox -s docs`` does)::

    sphinx-build -W --keep-going -b html docs docs/_build/html
    sphinx-build -W -b doctest docs docs/_build/doctest

Everything that is derived from code or data is generated here, at every build,
so that it cannot go stale: the im2col pictures (2-D, 1-D and 3-D), the
padding-modes picture, the performance tables and plots (from
``benchmarks/results/*.json``), the API pages of the optional adapter modules
that import here, and the demo picture snippet.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT / "src"))

import xpconv  # noqa: E402

if TYPE_CHECKING:
    from types import ModuleType

GENERATED = DOCS / "_generated"  # Markdown/reST snippets included by pages (not pages)
STATIC_GENERATED = DOCS / "_static" / "generated"  # pictures
API_GENERATED = DOCS / "api" / "generated"  # autosummary stubs + the adapters page
logger = logging.getLogger(__name__)
OPTIONAL_MODULES = ("xpconv.nn", "xpconv.torch", "xpconv.jax", "xpconv.dask")

# -- Project ------------------------------------------------------------------

project = "xpconv"
author = "xpconv developers"
copyright = "2026, xpconv developers"
release = xpconv.__version__
version = ".".join(release.split(".")[:2])

# -- General ------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served from _static: the maths renders offline
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "scripts", "Thumbs.db", ".DS_Store", ".gitignore"]
templates_path = ["_templates"]
default_role = "py:obj"
pygments_style = "sphinx"

myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath", "deflist"]
myst_heading_anchors = 3

# -- API reference ------------------------------------------------------------

# The files holding autosummary directives (api_more.rst is included by api/index.md).
autosummary_generate = ["api/index.md", "api/generated/adapters.rst", "_generated/api_more.rst"]
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # keep e.g. torch.autograd.Function's docs out of ours
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_attributes_as_param_list = True

# -- Doctest ------------------------------------------------------------------
# The builder runs the `>>>` blocks of every page, including the docstring
# examples that autosummary pulls into the API pages. The flags below let
# examples on optional backends be skipped where they are not installed.

doctest_global_setup = f"""
import importlib.util as _util
import numpy as np
import xpconv
from xpconv._backend import gpu_available as _gpu_available
HAS_TORCH = _util.find_spec("torch") is not None
HAS_JAX = _util.find_spec("jax") is not None
HAS_DASK = _util.find_spec("dask") is not None
HAS_CUPY = _util.find_spec("cupy") is not None and _gpu_available("cupy")
SEED_LAYER_PATH = {str(DOCS / "scripts" / "seed_layer.py")!r}
"""
doctest_test_doctest_blocks = "default"

# -- HTML ---------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"xpconv {release}"
html_static_path = ["_static"]
html_show_sourcelink = False
html_theme_options = {
    "navigation_with_keys": False,
    "navbar_persistent": ["search-button"],
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_context = {"default_mode": "light"}
# The guide pages have no sub-pages: no empty navigation column beside them.
html_sidebars = {
    page: []
    for page in (
        "index",
        "getting-started",
        "nn",
        "how-it-works",
        "backends",
        "interop",
        "padding",
        "signal-processing",
        "performance",
    )
}


# -- Generated content --------------------------------------------------------


def _load_script(name: str) -> ModuleType:
    path = DOCS / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_xpconv_docs_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_if_changed(path: Path, text: str) -> None:
    """Keep mtimes of unchanged files, so incremental builds stay incremental."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _optional_modules() -> list[ModuleType]:
    """The adapter modules that exist and import here (they may need jax, torch, dask)."""
    found = []
    for name in OPTIONAL_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


def _adapters_page(modules: list[ModuleType]) -> str:
    title = "Adapters and extra modules"
    lines = [title, "=" * len(title), ""]
    missing = [n for n in OPTIONAL_MODULES if n not in {m.__name__ for m in modules}]
    lines += [
        "Modules that connect xpconv to a framework's own machinery (autograd,",
        "``custom_vjp``, blockwise Dask graphs) or build small networks on it.",
        "Each is documented when it imports in the environment that builds these docs.",
        "",
    ]
    if missing:
        lines += [
            "Not documented in this build, because they do not import here (their array",
            "library is not installed): " + ", ".join(f"``{n}``" for n in missing) + ".",
            "",
        ]
    for module in modules:
        heading = f"``{module.__name__}``"
        lines += [
            heading,
            "-" * len(heading),
            "",
            f".. automodule:: {module.__name__}",
            "   :no-members:",
            "",
            f".. currentmodule:: {module.__name__}",
            "",
        ]
        names = [n for n in getattr(module, "__all__", []) if not n.startswith("_")]
        if names:
            lines += [".. autosummary::", "   :toctree: .", ""]
            lines += [f"   {n}" for n in names]
            lines.append("")
    return "\n".join(lines) + "\n"


def _demo_snippet() -> str:
    if (DOCS / "_static" / "demo.png").is_file():
        return (
            "```{figure} /_static/demo.png\n:alt: xpconv demo: loss and accuracy curves "
            "and the learned first-layer filters\n:width: 100%\n\n"
            "What `xpconv demo` draws: training loss and accuracy per epoch, and the "
            "learned first-layer filters.\n```\n"
        )
    return (
        "`xpconv demo --out DIR` also writes a PNG with the loss and accuracy curves and "
        "the learned first-layer filters into `DIR`.\n"
    )


def _more_api() -> str:
    """autosummary entries for public names that docs/api/index.md does not list yet.

    The page groups the names by hand; a name added to ``xpconv.__all__`` later
    still gets its page here instead of being left out.
    """
    text = (DOCS / "api" / "index.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\s{3}(\w+)\s*$", text, flags=re.MULTILINE))
    missing = [n for n in xpconv.__all__ if n not in listed and n != "__version__"]
    if not missing:
        return ""
    # The toctree path is written relative to both this file (for autosummary's
    # stub generator, which scans it) and api/index.md (which includes it).
    lines = [
        ".. currentmodule:: xpconv",
        "",
        ".. rubric:: More",
        "",
        ".. autosummary::",
        "   :toctree: ../api/generated",
        "",
    ]
    return "\n".join(lines + [f"   {n}" for n in missing]) + "\n"


def generate() -> None:
    # Stubs are regenerated every build; dropping old ones keeps a removed
    # name from leaving an orphan page behind (an orphan is a warning).
    shutil.rmtree(API_GENERATED, ignore_errors=True)
    STATIC_GENERATED.mkdir(parents=True, exist_ok=True)
    _write_if_changed(GENERATED / "api_more.rst", _more_api())

    figure = _load_script("make_im2col_figure")
    figure.draw(STATIC_GENERATED / "im2col.png")
    _load_script("make_unfold_nd_figures").draw(STATIC_GENERATED)  # unfold-1d.png, unfold-3d.png
    _load_script("make_padding_figure").draw(STATIC_GENERATED / "padding-modes.png")
    _write_if_changed(
        GENERATED / "padding_results.md",
        _load_script("make_padding_results").render(ROOT / "benchmarks" / "results" / "padding"),
    )

    perf = _load_script("make_perf_page")
    _write_if_changed(
        GENERATED / "performance_results.md",
        perf.render(ROOT / "benchmarks" / "results", STATIC_GENERATED, "/_static/generated"),
    )
    _write_if_changed(GENERATED / "demo_figure.md", _demo_snippet())
    _write_if_changed(API_GENERATED / "adapters.rst", _adapters_page(_optional_modules()))


generate()


def _drop_missing_toctree_entries(app: Any, docname: str, source: list[str]) -> None:
    """interop.md is written separately; keep the index valid until it lands."""
    if docname == "index" and not (DOCS / "interop.md").is_file():
        source[0] = re.sub(r"^interop\n", "", source[0], flags=re.MULTILINE)


def _nox_sessions() -> list[str]:
    """Session names as nox lists them: one tests(backend=...) per CPU backend of the
    registry (which noxfile.py reads too), then the noxfile's other sessions."""
    from xpconv import _registry

    names = [spec.nox_session for spec in _registry.nox_backends()]
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    names += [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and node.name != "tests"
        and any("session" in ast.unparse(d) for d in node.decorator_list)
    ]
    return names


def _check_backend_matrix(app: Any) -> None:
    """Warn (an error under -W) when docs/backends.md misses a nox session, or a
    package that the registry says a backend's session installs."""
    from xpconv import _registry

    text = (DOCS / "backends.md").read_text(encoding="utf-8")
    for name in _nox_sessions():
        if f"`{name}`" not in text:
            logger.warning("docs/backends.md does not describe the nox session %s", name)
    for spec in _registry.BACKENDS:
        for package in spec.nox_packages:
            if f"`{package}`" not in text:
                logger.warning(
                    "docs/backends.md does not name %s, which the %s session installs for %s",
                    package,
                    spec.nox_session,
                    spec.name,
                )


def setup(app: Any) -> None:
    app.connect("source-read", _drop_missing_toctree_entries)
    app.connect("builder-inited", _check_backend_matrix)
