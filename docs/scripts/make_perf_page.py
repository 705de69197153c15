"""Turn benchmark JSON files into the tables and plots of the Performance page.

Run by ``docs/conf.py`` at every build, or by hand::

    python docs/scripts/make_perf_page.py benchmarks/results OUT.md IMAGE_DIR [IMAGE_URL_PREFIX]

Every ``*.json`` in the results folder (except ``*.tmp.json``) is one benchmark
run written by ``benchmarks/run.py``, with the schema::

    {"meta": {"date", "machine", "python", "numpy", "torch", "blas", "threads",
              "backend", "compare", "device"},
     "results": [{"layer", "shape": [N, C, H, W, O, K, stride], "groups",
                  "dilation", "padding", "dtype",
                  "impl": "xpconv" | "torch" | "seed" | ...,
                  "forward_ms", "backward_ms", "total_ms", "gflops",
                  "peak_mem_mib", "rank", "x_shape", "w_shape", "stride"}]}

``total_ms`` is the median over the calls of forward + backward in one call
(``forward_ms`` and ``backward_ms`` are medians of their own). Runs written
before the 1-D and 3-D layers have no ``rank``, ``x_shape``, ``w_shape`` or
``stride``: their 2-D geometry is read from ``shape``. ``dilation`` and
``padding`` are an int, or a list with one entry per spatial axis.

The page opens with one picture: xpconv's time over PyTorch's per layer, on
the CPU and on the GPU side by side (the run of each kind of device with the
most layers compared). Then each run becomes a section named after its
machine and what it compares, with its environment in a sentence, a summary
table with the ratios, a chart of GFLOP/s and the full table. With no JSON
file the output says so: numbers are never invented.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from collections.abc import Iterable

NO_RESULTS = "No benchmark results recorded yet."
MISSING = "\u2013"  # an en dash in empty table cells
IMPL_ORDER = ("xpconv", "torch", "seed")
FP32_IMPL = "torch-fp32"
# Colour-blind-safe qualitative palette (Okabe and Ito): every bar of a chart
# gets a colour of its own, never one reused by another implementation.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
DTYPE_COLOURS = {"float32": "#0072B2", "float64": "#E69F00"}
LIBRARY_NAMES = {
    "numpy": "NumPy",
    "cupy": "CuPy",
    "torch": "PyTorch CPU",
    "torch-cuda": "PyTorch CUDA (cuDNN)",
    "jax": "JAX",
    "dask": "Dask",
    "array_api_strict": "array-api-strict",
}

Row = dict[str, Any]


def result_files(results_dir: Path) -> list[Path]:
    """The benchmark JSON files, newest name last (names usually start with a date)."""
    if not results_dir.is_dir():
        return []
    return sorted(p for p in results_dir.glob("*.json") if not p.name.endswith(".tmp.json"))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


def _fmt(value: Any, digits: int = 1) -> str:
    number = _number(value)
    return MISSING if number is None else f"{number:.{digits}f}"


def _cell(value: Any) -> str:
    """Text for a Markdown table cell."""
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    text = MISSING if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _clean(name: str) -> str:
    """A processor name without trademarks and filler: "Intel(R) Xeon(R) Processor" is
    "Intel Xeon", "... (2 CPUs)" is "2-core ..."."""
    cores = re.search(r"\s*\((\d+) CPUs?\)", name)
    if cores:
        name = f"{cores.group(1)}-core {name[: cores.start()]}{name[cores.end() :]}"
    name = re.sub(r"\((R|TM)\)|\bProcessor\b|\bCPU\b", "", name)
    return " ".join(name.split())


def machine_name(meta: dict[str, Any]) -> str:
    """The machine of a run in words: its GPU, or its cores and processor."""
    device = meta.get("device")
    if device and device != "cpu":
        return str(device)
    machine = meta.get("machine")
    if isinstance(machine, dict):
        cpu = _clean(str(machine.get("cpu") or "unnamed CPU"))
        cores = machine.get("cpu_count")
        return f"{cores}-core {cpu}" if cores else cpu
    return _clean(str(machine)) if machine else "unnamed machine"


def _library(name: Any) -> str:
    return LIBRARY_NAMES.get(str(name), str(name))


def _mib(n_bytes: Any) -> str:
    number = _number(n_bytes)
    if number is None:
        return MISSING
    return f"{number / 2**30:g} GiB" if number >= 2**30 else f"{number / 2**20:g} MiB"


def run_title(meta: dict[str, Any], fallback: str) -> str:
    """A section heading: the machine and what the run compares, not a timestamp."""
    if not meta:
        return fallback
    title = machine_name(meta)
    backend, compare = meta.get("backend"), meta.get("compare")
    if backend and compare and compare != "none":
        title += f": {_library(backend)} against {_library(compare)}"
    elif backend:
        title += f": {_library(backend)}"
    if meta.get("also_workspace_bytes") and not meta.get("workspace_bytes"):
        title += f", workspace study: a {_mib(meta['also_workspace_bytes'])} limit against none"
    return title


def _blas(meta: dict[str, Any]) -> str | None:
    libraries = (meta.get("blas") or {}).get("libraries") if isinstance(meta, dict) else None
    if not isinstance(libraries, list) or not libraries:
        return None
    lib = libraries[0]
    name = {"openblas": "OpenBLAS", "mkl": "MKL"}.get(lib.get("internal_api"), "a BLAS")
    version = ".".join(str(lib.get("version", "")).split(".")[:3])
    arch = lib.get("architecture")
    return f"{name} {version}" + (f" ({arch} kernels)" if arch else "")


def _threads(meta: dict[str, Any]) -> str | None:
    threads = meta.get("threads")
    if isinstance(threads, dict):
        counts = sorted({v for v in threads.values() if isinstance(v, int)})
        if len(counts) == 1:
            return f"{counts[0]} CPU thread{'s' if counts[0] != 1 else ''} for every library"
        return None
    return None if threads is None else f"{threads} threads"


def environment(meta: dict[str, Any]) -> str:
    """The versions, threads and settings of a run, in one sentence."""
    date = str(meta.get("date") or "")[:10]
    versions = [
        f"{label} {meta[key]}"
        for key, label in (
            ("python", "Python"),
            ("numpy", "NumPy"),
            ("cupy", "CuPy"),
            ("torch", "PyTorch"),
            ("xpconv", "xpconv"),
        )
        if meta.get(key)
    ]
    parts = [", ".join(versions)] if versions else []
    parts += [extra for extra in (_blas(meta), _threads(meta)) if extra]
    if "workspace_bytes" in meta:
        limit = meta["workspace_bytes"]
        parts.append("no workspace limit" if limit is None else f"a {_mib(limit)} workspace")
    if meta.get("repeat"):
        parts.append(f"at least {meta['repeat']} timed calls per block")
    text = "Measured" + (f" on {date}" if date else "") + f" on the {machine_name(meta)}"
    text += (" with " + "; ".join(parts)) if parts else ""
    return text + "."


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _hashable(value: Any) -> Any:
    """Lists (a per-axis dilation or padding) as tuples, so that they can key a dict."""
    return tuple(_hashable(v) for v in value) if isinstance(value, list | tuple) else value


def _case_key(row: Row) -> tuple[Any, ...]:
    """Rows of one layer configuration, whatever the implementation."""
    return (
        str(row.get("layer", "?")),
        _hashable(row.get("shape") or ()),
        row.get("groups", 1),
        _hashable(row.get("dilation", 1)),
        str(row.get("dtype", "?")),
    )


def _uniform(value: Any, default: int) -> bool:
    """Whether a dilation (int or per-axis tuple) is ``default`` on every axis."""
    if value is None:
        return True
    values = value if isinstance(value, tuple) else (value,)
    return all(v == default for v in values)


def _case_label(key: tuple[Any, ...]) -> str:
    layer, _, groups, dilation, _ = key
    extras = []
    if groups not in (None, 1):
        extras.append(f"groups={groups}")
    if not _uniform(dilation, 1):
        extras.append(f"dilation={_cell(dilation)}")
    return layer + (f" ({', '.join(extras)})" if extras else "")


def _geometry(row: Row) -> tuple[Any, Any, Any, Any]:
    """(input shape, weight shape, stride, padding) of a row; older 2-D rows from ``shape``."""
    if "x_shape" in row and "w_shape" in row:
        return row["x_shape"], row["w_shape"], row.get("stride"), row.get("padding")
    shape = row.get("shape") or []
    if len(shape) != 7:
        return None, None, None, row.get("padding")
    n, c, h, w, o, k, stride = shape
    groups = row.get("groups") or 1
    return [n, c, h, w], [o, c // groups, k, k], stride, row.get("padding")


def _impls(rows: list[Row]) -> list[str]:
    found = {str(r.get("impl", "?")) for r in rows}
    return [i for i in IMPL_ORDER if i in found] + sorted(found - set(IMPL_ORDER))


def _ratio(numerator: Any, denominator: Any, digits: int = 2) -> str:
    num, den = _number(numerator), _number(denominator)
    if num is None or den is None or den == 0:
        return MISSING
    return f"{num / den:.{digits}f}"


def _cases(rows: list[Row]) -> dict[tuple[Any, ...], dict[str, Row]]:
    cases: dict[tuple[Any, ...], dict[str, Row]] = {}
    for row in rows:
        cases.setdefault(_case_key(row), {})[str(row.get("impl", "?"))] = row
    return cases


def layer_table(rows: list[Row]) -> list[str]:
    """The layers measured: name, input and weight shapes, stride, padding, groups, dilation."""
    seen: dict[str, Row] = {}
    for key, by_impl in _cases(rows).items():
        seen.setdefault(_case_label(key), next(iter(by_impl.values())))
    body = []
    for label, row in seen.items():
        x_shape, w_shape, stride, padding = _geometry(row)
        body.append(
            [label, x_shape, w_shape, stride, padding, row.get("groups"), row.get("dilation")]
        )
    header = ["layer", "input (N, C, *size)", "weight (O, C/groups, *kernel)", "stride"]
    return _table([*header, "padding", "groups", "dilation"], body)


def summary_table(rows: list[Row]) -> list[str]:
    """One line per layer and dtype: xpconv's times, and ratios against the others."""
    header = [
        "layer",
        "dtype",
        "xpconv ms (fwd + bwd)",
        "torch ms",
        "seed ms",
        "xpconv / torch",
        "seed / xpconv",
        "xpconv GFLOP/s",
        "xpconv MiB",
    ]
    # GPU runs also time cuDNN with TF32 off (float32 only): IEEE float32 like xpconv.
    fp32 = any(r.get("impl") == FP32_IMPL for r in rows)
    if fp32:
        header[5:5] = [f"xpconv / {FP32_IMPL}"]
    body = []
    for key, by_impl in _cases(rows).items():
        ours = by_impl.get("xpconv", {})
        torch_total = by_impl.get("torch", {}).get("total_ms")
        seed_total = by_impl.get("seed", {}).get("total_ms")
        times = f"{_fmt(ours.get('total_ms'))} ({_fmt(ours.get('forward_ms'))} + "
        times += f"{_fmt(ours.get('backward_ms'))})"
        line = [
            _case_label(key),
            key[4],
            times,
            _fmt(torch_total),
            _fmt(seed_total),
            _ratio(ours.get("total_ms"), torch_total),
            _ratio(seed_total, ours.get("total_ms"), 1),
            _fmt(ours.get("gflops")),
            _fmt(ours.get("peak_mem_mib")),
        ]
        if fp32:
            line[5:5] = [_ratio(ours.get("total_ms"), by_impl.get(FP32_IMPL, {}).get("total_ms"))]
        body.append(line)
    return _table(header, body)


def _has_nd(rows: list[Row]) -> bool:
    """Whether some rows are of a 1-D or 3-D layer."""
    return any(r.get("rank", 2) != 2 for r in rows)


def col2im_section(results_dir: Path) -> list[str]:
    """The col2im strategy timings (``benchmarks/col2im_strategies.py``), if any."""
    lines: list[str] = []
    for path in sorted((results_dir / "col2im").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        meta, rows = data.get("meta", {}), data.get("results", [])
        lines += [
            f"## col2im on {_library(meta.get('backend'))}: slices or scatter-add (batch "
            f"{meta.get('batch') or 'as listed'})",
            "",
            f"Source: `benchmarks/results/col2im/{path.name}`.",
            "",
            "Summing the columns of each layer back into an image: the default *slices* "
            "(one strided-slice addition per kernel offset) against the backend's "
            "scatter-add with atomics; medians in ms.",
            "",
            *_table(
                ["layer", "dtype", "slices ms", "scatter ms", "scatter / slices", "largest diff."],
                [
                    [
                        r["layer"],
                        r["dtype"],
                        _fmt(r["slices_ms"], 2),
                        _fmt(r["scatter_ms"], 2),
                        _ratio(r["scatter_ms"], r["slices_ms"], 1),
                        f"{r['max_abs_diff']:.1e}",
                    ]
                    for r in rows
                ],
            ),
            "",
        ]
    return lines


def floor_section(results_dir: Path) -> list[str]:
    """The products-and-copies floor (``benchmarks/gemm_floor.py``), if measured."""
    lines: list[str] = []
    for path in sorted((results_dir / "floor").glob("*.json")):
        meta, rows = load(path)
        routes = any("route" in r for r in rows)
        lines += [
            f"## How close im2col can get on {machine_name(meta)}: products and copies alone",
            "",
            f"{environment(meta)} Source: `benchmarks/results/floor/{path.name}`.",
            "",
            "The three matrix products of xpconv's route (forward, weight gradient, input "
            "gradient) timed alone with NumPy's `matmul` on operands of the same shapes, "
            "and one contiguous copy per im2col matrix the route writes or reads, against "
            "xpconv and PyTorch fwd + bwd in the same run (medians in ms; each block "
            "after a pause, so that one library's spinning threads do not slow the next). "
            "*gemm / torch* is a floor for any formulation built on these products: no "
            "ordering, chunking or copy trick of im2col goes below it with this BLAS on "
            "this machine. *(gemm + copies) / torch* is the cost when every column goes "
            "out to memory; chunks that stay in cache can pay less.",
            "",
            *_table(
                [
                    "layer",
                    "dtype",
                    "xpconv",
                    "torch",
                    "gemm",
                    "copies",
                    "xpconv / torch",
                    "gemm / torch",
                    "(gemm + copies) / torch",
                    *(["xpconv's route"] if routes else []),
                ],
                [
                    [
                        r["layer"],
                        r["dtype"],
                        _fmt(r["xpconv_ms"]),
                        _fmt(r["torch_ms"]),
                        _fmt(r["gemm_ms"]),
                        _fmt(r["copies_ms"]),
                        _ratio(r["xpconv_ms"], r["torch_ms"]),
                        _ratio(r["gemm_ms"], r["torch_ms"]),
                        _ratio(r["gemm_ms"] + r["copies_ms"], r["torch_ms"]),
                        *([r.get("route")] if routes else []),
                    ]
                    for r in rows
                ],
            ),
            "",
        ]
    return lines


def release_section(results_dir: Path) -> list[str]:
    """This tree against an earlier release (``benchmarks/release_ab.py``), if measured."""
    lines: list[str] = []
    for path in sorted((results_dir / "release-ab").glob("*.json")):
        meta, rows = load(path)
        lines += [
            f"## Against the earlier release {meta.get('rev', '?')}",
            "",
            f"Source: `benchmarks/results/release-ab/{path.name}` "
            f"(`benchmarks/release_ab.py`, {meta.get('rounds', '?')} rounds, NumPy "
            f"{meta.get('numpy', '?')}, the machine's default threads). Both versions are "
            "imported in one process and timed in turn, one forward + backward call each "
            "per round (best of two), the order alternating; *this / previous* is the ratio "
            "of the medians, *median of round ratios* the median of each round's ratio. "
            "Layers of a few milliseconds move by several percent from run to run on a "
            "shared machine.",
            "",
            *_table(
                [
                    "layer",
                    "dtype",
                    "previous ms",
                    "this ms",
                    "this / previous",
                    "median of round ratios",
                ],
                [
                    [
                        r["layer"],
                        r["dtype"],
                        _fmt(r["previous_ms"]),
                        _fmt(r["this_ms"]),
                        _ratio(r["this_ms"], r["previous_ms"]),
                        f"{r['median_pair_ratio']:.2f}",
                    ]
                    for r in rows
                ],
            ),
            "",
        ]
    return lines


def workspace_table(rows: list[Row]) -> list[str]:
    """For ``--also-workspace`` runs: the limited run against the run beside it,
    and its peak memory against the bound (arrays + limit) * 1.1."""
    header = ["layer", "dtype", "limit", "time / xpconv", "peak MiB", "bound MiB", "within"]
    body = []
    for key, by_impl in _cases(rows).items():
        ours = by_impl.get("xpconv", {})
        for impl, row in by_impl.items():
            if not impl.startswith("xpconv-ws"):
                continue
            limit = impl.removeprefix("xpconv-ws")
            arrays = _number(row.get("array_mib"))
            peak = _number(row.get("peak_mem_mib"))
            limit_mib = _number(float(limit.removesuffix("MiB")))
            bound = None if arrays is None or limit_mib is None else 1.1 * (arrays + limit_mib)
            within = MISSING if peak is None or bound is None else str(peak <= bound).lower()
            body.append(
                [
                    _case_label(key),
                    key[4],
                    limit,
                    _ratio(row.get("total_ms"), ours.get("total_ms")),
                    _fmt(peak),
                    _fmt(bound),
                    within,
                ]
            )
    return _table(header, body) if body else []


def full_table(rows: list[Row]) -> list[str]:
    header = ["layer", "dtype", "impl", "fwd ms", "bwd ms", "total ms", "GFLOP/s", "MiB"]
    body = [
        [
            _case_label(key),
            key[4],
            impl,
            _fmt(row.get("forward_ms")),
            _fmt(row.get("backward_ms")),
            _fmt(row.get("total_ms")),
            _fmt(row.get("gflops")),
            _fmt(row.get("peak_mem_mib")),
        ]
        for key, by_impl in _cases(rows).items()
        for impl, row in by_impl.items()
    ]
    return _table(header, body)


def _short(value: float) -> str:
    """A bar's label: three significant digits, thousands as "k" (53.2k, not 5.32e+04)."""
    return f"{value / 1000:.3g}k" if value >= 1000 else f"{value:.3g}"


def _ratio_axis(ax: Any, values: Iterable[float | None]) -> None:
    """A log axis with plain ticks (0.25, 0.5, 1, 2, 4, ...) that cannot overlap."""
    found = [v for v in values if v]
    low, high = min([*found, 1.0]), max([*found, 1.0])
    ticks = [2.0**k for k in range(-6, 7) if low / 2 <= 2.0**k <= high * 2]
    ax.set_xlim(min(ticks) / 1.05, max(ticks) * 1.05)
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(mpl.ticker.NullLocator())


def _barh_panel(
    ax: Any, labels: list[str], series: dict[str, list[float | None]], colours: dict[str, str]
) -> None:
    """Horizontal grouped bars, one row of bars per label, each value written at its bar."""
    height = 0.8 / max(len(series), 1)
    for n, (name, values) in enumerate(series.items()):
        positions = [i + (n - (len(series) - 1) / 2) * height for i in range(len(labels))]
        widths = [math.nan if v is None else v for v in values]  # no bar when missing
        bars = ax.barh(positions, widths, height, label=name, color=colours[name])
        ax.bar_label(
            bars,
            labels=["" if v is None else _short(v) for v in values],
            fontsize=7,
            padding=2,
        )
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()  # first layer at the top
    ax.set_xscale("log")
    ax.margins(x=0.12)
    ax.grid(axis="x", which="both", alpha=0.25)
    ax.set_axisbelow(True)


def plot(rows: list[Row], path: Path) -> Path:
    """GFLOP/s per layer (log scale): one panel per dtype, one colour per implementation."""
    cases = _cases(rows)
    dtypes = sorted({key[4] for key in cases})
    impls = _impls(rows)
    colours = dict(zip(impls, PALETTE, strict=False))
    layers = list(dict.fromkeys(_case_label(key) for key in cases))
    height = 0.9 + 0.17 * len(layers) * max(len(impls), 2)
    fig, axes = plt.subplots(1, len(dtypes), figsize=(5.2 * len(dtypes) + 0.8, height))
    for ax, dtype in zip(list(getattr(axes, "flat", [axes])), dtypes, strict=True):
        by_label = {_case_label(k): v for k, v in cases.items() if k[4] == dtype}
        series = {
            impl: [_number(by_label.get(label, {}).get(impl, {}).get("gflops")) for label in layers]
            for impl in impls
        }
        _barh_panel(ax, layers, series, colours)
        ax.set_xlabel("GFLOP/s (forward + backward; log scale)")
        ax.set_title(dtype, fontsize=10)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=min(len(impls), 6), fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # no title: the section heading is above it
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _comparable_cases(rows: list[Row]) -> int:
    return sum(
        1
        for by_impl in _cases(rows).values()
        if _number(by_impl.get("xpconv", {}).get("total_ms"))
        and _number(by_impl.get("torch", {}).get("total_ms"))
    )


def overview_runs(files: list[Path]) -> list[tuple[Path, dict[str, Any], list[Row]]]:
    """For the CPU and for the GPU, the run that compares the most layers with PyTorch
    (the later file on a tie)."""
    best: dict[str, tuple[int, Path, dict[str, Any], list[Row]]] = {}
    for path in files:
        meta, rows = load(path)
        kind = "cpu" if meta.get("device") in (None, "cpu") else "gpu"
        count = _comparable_cases(rows)
        if count and count >= best.get(kind, (0,))[0]:
            best[kind] = (count, path, meta, rows)
    return [best[k][1:] for k in ("cpu", "gpu") if k in best]


def overview_plot(runs: list[tuple[Path, dict[str, Any], list[Row]]], path: Path) -> Path:
    """xpconv's time over PyTorch's per layer, one panel per run, one colour per dtype."""
    fig, axes = plt.subplots(1, len(runs), figsize=(5.4 * len(runs) + 0.6, 5.0), squeeze=False)
    # One order of layers for every panel: the first run's, then any others.
    order = list(dict.fromkeys(_case_label(k) for _, _, rows in runs for k in _cases(rows)))
    for ax, (_, meta, rows) in zip(axes[0], runs, strict=True):
        cases = _cases(rows)
        labels = {_case_label(key) for key in cases}
        layers = [label for label in order if label in labels]
        dtypes = sorted({key[4] for key in cases})
        series: dict[str, list[float | None]] = {}
        for dtype in dtypes:
            by_label = {_case_label(k): v for k, v in cases.items() if k[4] == dtype}
            ratios = []
            for label in layers:
                ours = _number(by_label.get(label, {}).get("xpconv", {}).get("total_ms"))
                ref = _number(by_label.get(label, {}).get("torch", {}).get("total_ms"))
                ratios.append(None if ours is None or not ref else ours / ref)
            series[dtype] = ratios
        colours = {d: DTYPE_COLOURS.get(d, PALETTE[2 + n]) for n, d in enumerate(dtypes)}
        _barh_panel(ax, layers, series, colours)
        _ratio_axis(ax, [v for values in series.values() for v in values])
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xlabel("xpconv time / PyTorch time (log scale; < 1: xpconv faster)")
        ax.set_title(
            f"{machine_name(meta)}\n{_library(meta.get('backend'))} against "
            f"{_library(meta.get('compare'))}",
            fontsize=9.5,
        )
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncols=len(names), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def load(path: Path) -> tuple[dict[str, Any], list[Row]]:
    """Read one results file; a file that does not follow the schema is an error."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        msg = f"{path}: expected an object with a 'results' list (see {__file__})"
        raise ValueError(msg)
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    rows = [r for r in data["results"] if isinstance(r, dict)]
    return meta, rows


def section(path: Path, image_dir: Path, image_url: str, *, seen: set[str]) -> list[str]:
    meta, rows = load(path)
    title = run_title(meta, path.stem)
    if title in seen:  # two runs of the same kind on one machine: tell the headings apart
        title = f"{title} ({path.stem})"
    seen.add(title)
    lines = [f"## {title}", ""]
    if meta:
        lines += [f"{environment(meta)} Source: `benchmarks/results/{path.name}`.", ""]
    else:
        lines += [f"Source: `benchmarks/results/{path.name}`.", ""]
    if meta.get("command"):
        lines += ["Command:", "", "```text", str(meta["command"]), "```", ""]
    if not rows:
        return [*lines, "This file holds no results.", ""]
    image = plot(rows, image_dir / f"perf-{path.stem}.png")
    lines += [
        "Times in milliseconds: the median over the timed calls of one forward + "
        "backward (input, weight and bias gradients), with the medians of the forward "
        "and of the backward in parentheses (medians need not add up exactly); "
        "*xpconv / torch* below 1 means xpconv is faster than PyTorch, "
        "*seed / xpconv* is the speed-up over the seed's formulation"
        + (" (a 2-D formulation: timed on the 2-D layers only)" if _has_nd(rows) else "")
        + "; MiB is the peak extra memory.",
        "",
        *summary_table(rows),
        "",
    ]
    if any(r.get("impl") == FP32_IMPL for r in rows):
        lines += [
            "On CUDA, *torch* is PyTorch's default, which lets cuDNN compute float32 "
            "convolutions with TF32 tensor cores (a 10-bit mantissa: errors near 1e-3, "
            "outside the 1e-4 float32 tolerance xpconv is tested to); *torch-fp32* turns "
            "TF32 off and does the same IEEE float32 arithmetic as xpconv.",
            "",
        ]
    limited = workspace_table(rows)
    if limited:
        base = meta.get("workspace_bytes")
        against = "an unlimited run" if base is None else f"the run under a {base}-byte limit"
        lines += [
            f"Workspace study: xpconv under a second workspace limit, timed in the same "
            f"rounds as {against}; the bound is (inputs + outputs + gradients + limit) * 1.1.",
            "",
            *limited,
            "",
        ]
    lines += [
        f"![GFLOP/s per layer and implementation, {title}]({image_url}/{image.name})",
        "",
        "The layers:",
        "",
        *layer_table(rows),
        "",
        "All measurements:",
        "",
        *full_table(rows),
        "",
    ]
    return lines


def render(results_dir: Path, image_dir: Path, image_url: str) -> str:
    """The Markdown for every results file, or the no-results notice."""
    files = result_files(results_dir)
    if not files:
        return (
            f"```{{note}}\n{NO_RESULTS} Run `nox -s bench` (or `python benchmarks/run.py`) "
            "and commit the JSON file it writes to `benchmarks/results/`.\n```\n"
        )
    for stale in image_dir.glob("perf-*.png"):
        stale.unlink()
    lines: list[str] = []
    runs = overview_runs(files)
    if runs:
        image = overview_plot(runs, image_dir / "perf-overview.png")
        lines += [
            "## At a glance",
            "",
            f"![xpconv time over PyTorch time per layer]({image_url}/{image.name})",
            "",
            "Each bar is xpconv's forward + backward time divided by PyTorch's on the same "
            "layer, in the same run: left of the line at 1.0 xpconv is faster, right of it "
            "slower (2 means twice PyTorch's time). On the GPU, PyTorch's default lets "
            "cuDNN compute float32 with TF32 tensor cores, a shorter mantissa than xpconv's "
            "IEEE float32: the tables below also compare with TF32 off (*torch-fp32*). "
            + " ".join(
                f"{machine_name(meta)}: `benchmarks/results/{path.name}`." for path, meta, _ in runs
            )
            + " The sections below give every number, per machine.",
            "",
        ]
    seen: set[str] = set()
    chosen = [path for path, _, _ in runs]
    for path in chosen + [p for p in reversed(files) if p not in chosen]:  # newest first
        lines += section(path, image_dir, image_url, seen=seen)
    lines += floor_section(results_dir)
    lines += release_section(results_dir)
    lines += col2im_section(results_dir)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    results_dir, out_md, image_dir = (Path(a) for a in args[:3])
    image_url = args[3] if len(args) == 4 else str(image_dir)
    text = render(results_dir, image_dir, image_url)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
