"""Time col2im's two strategies on one backend: slice accumulation vs index scatter-add.

``python benchmarks/col2im_strategies.py --backend cupy --batch 256 --json OUT.json``

For every benchmark layer (``xpconv.bench.LAYERS``) and dtype, the columns of
its input gradient, (N, C*KH*KW, OH*OW), are summed back into an image with

* ``slices``: KH*KW strided-slice additions (``_backend.add_into``), the default;
* ``scatter``: one flat-index scatter-add through ``_backend.scatter_add``
  (``np.add.at``, ``cupyx.scatter_add`` with atomics, ``torch.index_add_``).

Each is timed as a block after one untimed call, synchronizing before every
clock reading; the median is printed with the largest difference between the
two results (they must agree to rounding).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpconv._backend import synchronize, to_numpy
from xpconv._geometry import conv_geometry
from xpconv._im2col import col2im
from xpconv.bench import LAYERS, Layer, Runtime, _runtime

if TYPE_CHECKING:
    from collections.abc import Callable

STRATEGIES = ("slices", "scatter")


def _time(run: Callable[[], Any], repeat: int) -> float:
    synchronize(run())  # warm-up: kernel compilation, allocator
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        synchronize(run())
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _measure(layer: Layer, dt: str, rt: Runtime, repeat: int) -> dict[str, Any]:
    geom = conv_geometry(layer.x_shape, layer.w_shape, **layer.conv_kwargs)
    # One random sample repeated over the batch, copied on the device: making
    # hundreds of millions of normals on the host would take longer than timing.
    rng = np.random.default_rng(0)
    one = rt.to_backend(rng.standard_normal((1, geom.column_rows, geom.out_volume)).astype(dt))
    shape = (layer.n, *one.shape[1:])
    cols = rt.xp.asarray(rt.xp.broadcast_to(one, shape), copy=True)
    images = [to_numpy(col2im(cols, geom, rt.xp, strategy=s)) for s in STRATEGIES]
    row: dict[str, Any] = {"layer": layer.name, "shape": layer.shape, "dtype": dt}
    for s in STRATEGIES:
        ms = _time(lambda s=s: col2im(cols, geom, rt.xp, strategy=s), repeat)
        row[f"{s}_ms"] = round(ms, 3)
    row["max_abs_diff"] = float(np.max(np.abs(images[0] - images[1])))
    return row


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "torch"))
    p.add_argument("--device", default=None, help="torch device (default cpu)")
    p.add_argument("--batch", type=int, default=None, help="override the layers' batch size")
    p.add_argument("--dtype", default="float32,float64")
    p.add_argument("--layers", default=",".join(LAYERS))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rt = _runtime(args.backend, args.device)
    rows = []
    print(f"{'layer':<10} {'dtype':<8} {'slices ms':>10} {'scatter ms':>11} {'max |diff|':>11}")
    for dt in args.dtype.split(","):
        for name in args.layers.split(","):
            layer = LAYERS[name] if args.batch is None else LAYERS[name].with_batch(args.batch)
            row = _measure(layer, dt, rt, args.repeat)
            rows.append(row)
            print(
                f"{name:<10} {dt:<8} {row['slices_ms']:>10.2f} {row['scatter_ms']:>11.2f} "
                f"{row['max_abs_diff']:>11.2e}",
                flush=True,
            )
    if args.json is not None:
        meta = {"backend": rt.name, "batch": args.batch, "repeat": args.repeat}
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
