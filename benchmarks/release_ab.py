"""This tree against an earlier release, both imported in one process: 2-D fwd+bwd per layer.

``python benchmarks/release_ab.py --rev 9a55a3e --json benchmarks/results/release-ab/2d.json``

The earlier release's ``src/xpconv`` is taken from git (``git archive``) into
a temporary folder as a package named ``xpconv_prev`` (its own imports
renamed), so that both run on the same arrays, threads and memory state. Each
round times one forward + backward call of each (best of two), the order
alternating from round to round, after a short pause; the table gives the
medians, their ratio and the median of the per-round ratios. On a shared
machine the small layers are noisy: compare several runs.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import xpconv  # noqa: E402

# N, C, H, W, O, K, stride, padding, dilation, groups: xpconv bench's 2-D layers
LAYERS = {
    "mnist": (64, 1, 28, 28, 32, 3, 1, 1, 1, 1),
    "conv64": (32, 64, 32, 32, 64, 3, 1, 1, 1, 1),
    "conv128": (16, 128, 28, 28, 128, 3, 1, 1, 1, 1),
    "stem7x7": (8, 3, 224, 224, 64, 7, 2, 3, 1, 1),
    "pointwise": (32, 256, 14, 14, 64, 1, 1, 0, 1, 1),
    "depthwise": (32, 128, 28, 28, 128, 3, 1, 1, 1, 128),
    "dilated": (16, 64, 32, 32, 64, 3, 1, 2, 2, 1),
}
_IMPORT = re.compile(r"\bxpconv\b(?=[.\s]|$)", re.MULTILINE)


def load_release(rev: str, folder: Path) -> object:
    """The package ``src/xpconv`` of ``rev``, importable as ``xpconv_prev``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src/xpconv"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "xpconv_prev"
    (folder / "src" / "xpconv").rename(package)
    for source in package.rglob("*.py"):
        source.write_text(_IMPORT.sub("xpconv_prev", source.read_text()))
    sys.path.insert(0, str(folder))
    return importlib.import_module("xpconv_prev")


def _step(module: object, x: np.ndarray, w: np.ndarray, b: np.ndarray, kw: dict) -> float:
    start = time.perf_counter()
    y = module.conv2d(x, w, b, **kw)  # type: ignore[attr-defined]
    module.conv2d_backward(y, x, w, **kw)  # type: ignore[attr-defined]
    return time.perf_counter() - start


def compare(previous: object, name: str, dtype: str, rounds: int, pause: float) -> dict:
    n, c, h, w_, o, k, s, p, d, g = LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = rng.standard_normal((o, c // g, k, k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    kw = {"stride": s, "padding": p, "dilation": d, "groups": g}
    impls = {"previous": previous, "this": xpconv}
    times: dict[str, list[float]] = {label: [] for label in impls}
    for module in impls.values():
        _step(module, x, w, b, kw)  # warm-up
    for r in range(rounds):
        order = list(impls.items()) if r % 2 == 0 else list(reversed(impls.items()))
        for label, module in order:
            time.sleep(pause)
            times[label].append(min(_step(module, x, w, b, kw) for _ in range(2)))
    prev_ms = statistics.median(times["previous"]) * 1e3
    this_ms = statistics.median(times["this"]) * 1e3
    pairs = [t / p for t, p in zip(times["this"], times["previous"], strict=True)]
    return {
        "layer": name,
        "dtype": dtype,
        "previous_ms": prev_ms,
        "this_ms": this_ms,
        "ratio_of_medians": this_ms / prev_ms,
        "median_pair_ratio": statistics.median(pairs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="9a55a3e", help="the earlier release (a git revision)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--dtype", default="float32,float64")
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--pause", type=float, default=0.2, help="seconds before each timing")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        previous = load_release(args.rev, Path(folder))
        results = []
        print(f"this tree / {args.rev}: fwd+bwd per call, {args.rounds} alternating rounds")
        for dtype in args.dtype.split(","):
            for name in args.layers.split(","):
                row = compare(previous, name, dtype, args.rounds, args.pause)
                results.append(row)
                print(
                    f"{name:10s} {dtype:8s} previous {row['previous_ms']:8.2f} ms  this "
                    f"{row['this_ms']:8.2f} ms  ratio {row['ratio_of_medians']:5.3f}  "
                    f"(median of round ratios {row['median_pair_ratio']:5.3f})",
                    flush=True,
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        meta = {"rev": args.rev, "rounds": args.rounds, "numpy": np.__version__}
        args.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
