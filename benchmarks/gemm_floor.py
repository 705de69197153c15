"""How fast the im2col formulation could be on this machine: its products and copies alone.

``python benchmarks/gemm_floor.py --json benchmarks/results/floor/cpu-numpy.json``

For every standard layer with one group, and each dtype, this times in one run:

* ``xpconv``: ``conv2d`` + ``conv2d_backward`` (input, weight and bias gradients);
* ``torch``: ``torch.nn.functional.conv2d`` + autograd, same thread count;
* ``gemm``: the three matrix products xpconv's route needs, whole (no chunks),
  with NumPy's ``matmul`` on operands of the same shapes and orientation:
  forward (O, R) @ (R, M); weight gradient (R, M) @ (M, O)^T or its mirror,
  whichever ``functional._weight_grad_product`` picks; input gradient
  (C, O*KH*KW) @ (O*KH*KW, N*H*W) where it is a stride-1 convolution
  (``functional._input_grad_by_convolution``), else (R, O) @ (O, M) before
  col2im. R = C*KH*KW, M = N*OH*OW;
* ``copies``: one contiguous copy of an array the size of each im2col matrix
  (or col2im's columns) the route writes or reads, whole: what writing them
  costs when they go out to memory (chunks small enough to stay in cache
  between the copy and the product can pay less).

``gemm / torch`` is a floor for any formulation built on these BLAS products:
no ordering, chunking or copy trick of im2col goes below it.
``(gemm + copies) / torch`` is what the route costs if every column goes
through memory. Medians of alternating rounds, each block after a pause;
noisy on a shared machine, like every timing.
"""

from __future__ import annotations

import argparse
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

import xpconv
from xpconv import functional
from xpconv._geometry import ConvGeometry, conv_geometry
from xpconv.bench import LAYERS, SETTLE_S, Layer, _blas_info, _cpu_name, _threads

if TYPE_CHECKING:
    from collections.abc import Callable


def _geometry(layer: Layer) -> ConvGeometry:
    return conv_geometry(
        (layer.n, layer.c, layer.h, layer.w),
        (layer.o, layer.c // layer.groups, layer.k, layer.k),
        **layer.conv_kwargs,
    )


def _products(layer: Layer) -> list[tuple[str, tuple[int, int, int], bool]]:
    """(name, (m, k, n), right operand transposed) of the route's three GEMMs,
    on the route ``functional`` picks for this layer."""
    geom = _geometry(layer)
    o, c, kk = geom.out_channels, geom.in_channels, geom.kernel_area
    r, m = c * kk, geom.batch * geom.out_area
    if functional._is_pointwise(geom):  # no columns at all
        return [
            ("forward", (o, c, m), False),
            ("weight", (o, m, c), True),
            ("input", (c, o, m), False),
        ]
    # the orientation functional._weight_grad_product picks: more rows on the left
    weight = ("weight", (r, m, o) if r >= o else (o, m, r), True)
    if functional._input_grad_by_convolution(geom):
        inp = ("input", (c, o * kk, geom.batch * geom.in_hw[0] * geom.in_hw[1]), False)
    else:
        inp = ("input", (r, o, m), False)
    return [("forward", (o, r, m), False), weight, inp]


def _copies(layer: Layer) -> list[int]:
    """Elements of each im2col (or col2im) matrix the route writes or reads."""
    geom = _geometry(layer)
    if functional._is_pointwise(geom):
        return []
    cols = geom.in_channels * geom.kernel_area * geom.batch * geom.out_area
    if functional._input_grad_by_convolution(geom):
        h, w = geom.in_hw
        return [cols, cols, geom.out_channels * geom.kernel_area * geom.batch * h * w]
    return [cols, cols, cols]


def _median_ms(run: Callable[[], Any], repeat: int) -> float:
    # A pause first, as in xpconv bench: OpenBLAS's worker threads spin for a
    # while after a product and slowed PyTorch's next calls 2-3x when it ran
    # right after xpconv.
    time.sleep(SETTLE_S)
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _cases(layer: Layer, dtype: str, rng: np.random.Generator) -> dict[str, Callable[[], Any]]:
    import torch
    import torch.nn.functional as F

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    oh, ow = layer.out_hw
    x, w = normal(layer.n, layer.c, layer.h, layer.w), normal(layer.o, layer.c, layer.k, layer.k)
    b, gy = normal(layer.o), normal(layer.n, layer.o, oh, ow)
    kw = layer.conv_kwargs

    def ours() -> Any:
        xpconv.conv2d(x, w, b, **kw)
        return xpconv.conv2d_backward(gy, x, w, **kw)

    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    tgy = torch.from_numpy(gy)

    def theirs() -> Any:
        return torch.autograd.grad(F.conv2d(tx, tw, tb, **kw), (tx, tw, tb), tgy)

    gemms = []
    for _, (m, k, n), transposed in _products(layer):
        left = normal(m, k)
        right = normal(n, k) if transposed else normal(k, n)
        gemms.append((left, right.T if transposed else right))

    def products() -> None:
        for left, right in gemms:
            np.matmul(left, right)

    copies = [(normal(size), np.empty(size, dtype)) for size in _copies(layer)]

    def copy_all() -> None:
        for src, dst in copies:
            np.copyto(dst, src)

    return {"xpconv": ours, "torch": theirs, "gemm": products, "copies": copy_all}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float32,float64")
    gemm_layers = [n for n, layer in LAYERS.items() if layer.groups == 1]
    p.add_argument("--layers", default=",".join(gemm_layers))
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (median of medians)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per case and round")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    print(
        "layer      dtype    xpconv ms  torch ms  gemm ms  copies ms  "
        "xp/torch  gemm/torch  (gemm+copies)/torch"
    )
    with _threads(args.threads):
        blas, threads = _blas_info()
        for dtype in args.dtype.split(","):
            for name in args.layers.split(","):
                cases = _cases(LAYERS[name], dtype, rng)
                times: dict[str, list[float]] = {k: [] for k in cases}
                for _ in range(args.rounds):
                    for key, run in cases.items():
                        times[key].append(_median_ms(run, args.repeat))
                ms = {k: statistics.median(v) for k, v in times.items()}
                row = {"layer": name, "shape": LAYERS[name].shape, "dtype": dtype}
                row |= {f"{k}_ms": round(v, 2) for k, v in ms.items()}
                rows.append(row)
                torch_ms = ms["torch"]
                print(
                    f"{name:<10} {dtype:<8} {ms['xpconv']:>9.1f} {torch_ms:>9.1f} "
                    f"{ms['gemm']:>8.1f} {ms['copies']:>10.1f} {ms['xpconv'] / torch_ms:>9.2f} "
                    f"{ms['gemm'] / torch_ms:>11.2f} "
                    f"{(ms['gemm'] + ms['copies']) / torch_ms:>20.2f}",
                    flush=True,
                )
    if args.json is not None:
        meta = {
            "date": dt_.datetime.now(dt_.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{_cpu_name()} ({os.cpu_count()} CPUs)",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "blas": blas,
            "threads": threads | {"torch": torch.get_num_threads()},
            "rounds": args.rounds,
            "repeat": args.repeat,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
