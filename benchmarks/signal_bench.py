"""xpconv.signal against scipy.signal on the CPU, with NumPy arrays, in one run.

``python benchmarks/signal_bench.py --json benchmarks/results/signal/cpu-numpy.json``

Two blocks of cases, each in float64 and float32:

* ``direct``: ``scipy.signal.convolve(..., method='direct')`` (``np.convolve``
  for 1-D, SciPy's C loop otherwise) against
  ``xpconv.signal.convolve(..., method='direct')`` (the polyphase matrix
  products for 1-D kernels of 8 taps and more, the im2col engine otherwise),
  mode 'same', small and large kernels;
* ``fft``: ``scipy.signal.fftconvolve`` against ``method='fft'``, mode
  'full', including a batch of signals along ``axes=-1``.

Both libraries run on the same number of threads (``--threads``, default 1:
SciPy's direct loops and its FFTs use one thread unless told otherwise):
BLAS and OpenMP pools limited with threadpoolctl, xpconv's own threads with
:func:`xpconv.thread_limit`. Each case alternates SciPy and xpconv for
``--rounds`` rounds after a short pause and reports the medians and their
ratio (xpconv / SciPy: below 1 is faster). The machine this ran on, its BLAS
and the library versions go into the JSON. Timings on a shared machine are
noisy; compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt_
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy
import scipy.signal
import threadpoolctl

import xpconv
from xpconv import signal

if TYPE_CHECKING:
    from collections.abc import Callable

#: name -> (block, in1 shape, in2 shape, mode, axes)
CASES: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], str, int | None]] = {
    "1d-k16": ("direct", (100_000,), (16,), "same", None),
    "1d-k256": ("direct", (100_000,), (256,), "same", None),
    "2d-k5": ("direct", (256, 256), (5, 5), "same", None),
    "2d-k15": ("direct", (128, 128), (15, 15), "same", None),
    "3d-k3": ("direct", (48, 48, 48), (3, 3, 3), "same", None),
    "1d-2^15x2^15": ("fft", (2**15,), (2**15,), "full", None),
    "1d-1e6-k1000": ("fft", (1_000_000,), (1000,), "full", None),
    "2d-k64": ("fft", (512, 512), (64, 64), "full", None),
    "batch64-1d-k1024": ("fft", (64, 8192), (1, 1024), "full", -1),
}
DTYPES = ("float64", "float32")
PAUSE_S = 0.5


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _calls(
    block: str, a: np.ndarray, b: np.ndarray, mode: str, axes: int | None
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    if block == "direct":
        return (
            lambda: scipy.signal.convolve(a, b, mode=mode, method="direct"),
            lambda: signal.convolve(a, b, mode=mode, method="direct"),
        )
    return (
        lambda: scipy.signal.fftconvolve(a, b, mode=mode, axes=axes),
        lambda: signal.convolve(a, b, mode=mode, method="fft", axes=axes),
    )


def run_case(name: str, dtype: str, rounds: int) -> dict[str, Any]:
    block, shape1, shape2, mode, axes = CASES[name]
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape1).astype(dtype)
    b = rng.standard_normal(shape2).astype(dtype)
    ref_fn, ours_fn = _calls(block, a, b, mode, axes)
    ref, ours = ref_fn(), ours_fn()  # warm-up, and the results agree
    assert ours.dtype == ref.dtype or block == "direct", (ours.dtype, ref.dtype)
    error = float(np.max(np.abs(ours - ref)) / np.max(np.abs(ref)))
    time.sleep(PAUSE_S)
    ref_s, ours_s = [], []
    for _ in range(rounds):  # alternate, so that drift hits both alike
        ref_s.append(_time(ref_fn))
        ours_s.append(_time(ours_fn))
    scipy_ms = statistics.median(ref_s) * 1e3
    xpconv_ms = statistics.median(ours_s) * 1e3
    return {
        "case": name,
        "method": block,
        "dtype": dtype,
        "in1": list(shape1),
        "in2": list(shape2),
        "mode": mode,
        "axes": axes,
        "scipy_ms": round(scipy_ms, 4),
        "xpconv_ms": round(xpconv_ms, 4),
        "ratio": round(xpconv_ms / scipy_ms, 3),
        "auto_picks": signal.choose_conv_method(a, b, mode, axes=axes),
        "max_rel_error": error,
    }


def _meta(threads: int) -> dict[str, Any]:
    blas = [
        {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
        for p in threadpoolctl.threadpool_info()
    ]
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "date": dt_.datetime.now(dt_.UTC).isoformat(timespec="seconds"),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "xpconv": xpconv.__version__,
        "threads": threads,
        "thread_pools": blas,
        "note": "medians of alternating rounds; ratio = xpconv / scipy (below 1: xpconv faster)",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for both (default 1)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds per case")
    parser.add_argument("--cases", help=f"comma-separated subset of {', '.join(CASES)}")
    parser.add_argument("--dtype", choices=DTYPES, help="one dtype only")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    names = args.cases.split(",") if args.cases else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {', '.join(CASES)}")
    dtypes = [args.dtype] if args.dtype else list(DTYPES)
    rows: list[dict[str, Any]] = []
    header = f"{'case':18s} {'method':6s} {'dtype':8s} {'scipy ms':>10s} {'xpconv ms':>10s} ratio"
    print(header + "  auto")
    with threadpoolctl.threadpool_limits(limits=args.threads), xpconv.thread_limit(args.threads):
        for name in names:
            for dtype in dtypes:
                row = run_case(name, dtype, args.rounds)
                rows.append(row)
                print(
                    f"{name:18s} {row['method']:6s} {dtype:8s} {row['scipy_ms']:10.3f} "
                    f"{row['xpconv_ms']:10.3f} {row['ratio']:5.2f}  {row['auto_picks']}"
                )
        meta = _meta(args.threads)  # inside the limits: the thread counts used
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        out = {"meta": meta, "results": rows}
        args.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
