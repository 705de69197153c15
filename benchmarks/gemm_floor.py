"""How fast the im2col formulation could be on this machine: its products and copies alone.

``python benchmarks/gemm_floor.py --json benchmarks/results/floor/cpu-numpy.json``

For every standard layer with one group (1-D, 2-D and 3-D; ``xpconv bench``'s
:data:`~xpconv.bench.LAYERS`), and each dtype, this times in one run:

* ``xpconv``: ``conv1d/2d/3d`` + its backward (input, weight and bias gradients);
* ``torch``: ``torch.nn.functional.conv1d/2d/3d`` + autograd, same thread count;
* ``gemm``: the matrix products of the route xpconv takes for the layer
  (``xpconv._engine.plan``), whole (no workspace tiles), with NumPy's
  ``matmul`` on operands of the same shapes and orientation. With R = C*prod(K)
  column rows, L = prod(out) output positions and M = N*L:

  - ``kernel='gemm'``: forward (O, R) @ (R, M); weight gradient (R, M) @ (M, O)
    or its mirror (O, M) @ (M, R), whichever puts more rows on the left, as
    ``_gemm._weight_grad_product`` does; with ``per_sample`` (few column rows)
    the same products sample by sample: (O, R) @ (N, R, L), (N, O, L) @ (N, L, R)
    and (R, O) @ (N, O, L);
  - ``input_grad_by='col2im'``: (R, O) @ (O, M) before col2im;
    ``'transposed'``: the forward product of the transposed convolution that
    gives the input gradient (C, O*prod(K)) @ (O*prod(K), N*prod(in)), sample by
    sample where its own route says so;
  - ``kernel='pointwise'``: no columns; (O, C) @ (N, C, L), the weight
    gradient (N, C, L) @ (N, L, O) or its mirror, and (C, O) @ (N, O, L);
* ``copies``: one contiguous copy of an array the size of each im2col matrix
  the route writes or reads (the forward's and the weight gradient's columns,
  and col2im's column gradient or the transposed convolution's columns), whole:
  what writing them costs when they go out to memory (tiles small enough to
  stay in cache between the copy and the product can pay less).

``gemm / torch`` is a floor for any formulation built on these BLAS products:
no ordering, tiling or copy trick of im2col goes below it.
``(gemm + copies) / torch`` is what the route costs if every column goes
through memory. Medians of alternating rounds, each block after a pause;
noisy on a shared machine, like every timing. A short check:
``python benchmarks/gemm_floor.py --layers audio1d --dtype float32 --rounds 1 --repeat 1``.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpconv import _engine
from xpconv._geometry import ConvGeometry, conv_geometry
from xpconv.bench import (
    LAYERS,
    SETTLE_S,
    Layer,
    _blas_info,
    _conv_functions,
    _cpu_name,
    _threads,
    _torch_conv,
)

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Product:
    """One matrix product of the route: ``left @ right`` (stacked where 3-D), and whether
    the right operand is a transposed view (its storage has the last two axes swapped)."""

    name: str
    left: tuple[int, ...]
    right: tuple[int, ...]
    right_transposed: bool = False


def _geometry(layer: Layer) -> ConvGeometry:
    return conv_geometry(layer.x_shape, layer.w_shape, **layer.conv_kwargs)


def _route(geom: ConvGeometry, dtype: str) -> _engine.Route:
    """The route xpconv takes for this geometry on NumPy arrays."""
    return _engine.plan(geom, np.empty((1,), dtype=dtype))


def _transposed(geom: ConvGeometry) -> ConvGeometry:
    """The convolution whose forward pass is the input gradient (stride 1): O -> C channels
    over the input's size (its padding does not change the products' shapes)."""
    return ConvGeometry(
        batch=geom.batch,
        in_channels=geom.out_channels,
        out_channels=geom.in_channels,
        groups=geom.groups,
        in_size=geom.in_size,
        kernel=geom.kernel,
        stride=geom.stride,
        dilation=geom.dilation,
        pad=geom.pad,
        out_size=geom.in_size,
    )


def _forward_product(geom: ConvGeometry, per_sample: bool, name: str) -> Product:
    o, r, n, l_ = geom.out_channels, geom.column_rows, geom.batch, geom.out_volume
    if per_sample:
        return Product(name, (o, r), (n, r, l_))
    g = geom.groups
    return Product(name, (g, o // g, r // g), (g, r // g, n * l_))


def _products(layer: Layer, dtype: str) -> list[Product]:
    """The matrix products of the route xpconv takes for ``layer``."""
    geom = _geometry(layer)
    route = _route(geom, dtype)
    o, c, n, l_ = geom.out_channels, geom.in_channels, geom.batch, geom.out_volume
    r, g = geom.column_rows, geom.groups
    if route.kernel == "pointwise":  # no columns: x[n] is (C, L)
        weight = (
            Product("weight", (n, c, l_), (n, l_, o), True)
            if c >= o
            else Product("weight", (n, o, l_), (n, l_, c), True)
        )
        return [
            Product("forward", (o, c), (n, c, l_)),
            weight,
            Product("input", (c, o), (n, o, l_)),
        ]
    if route.kernel != "gemm":
        msg = f"layer {layer.name}: the {route.kernel} kernel has no matrix products"
        raise ValueError(msg)
    products = [_forward_product(geom, route.per_sample, "forward")]
    if route.per_sample:
        products.append(Product("weight", (n, o, l_), (n, l_, r), True))
    elif r // g >= o // g:  # more rows on the left, as _gemm._weight_grad_product
        products.append(Product("weight", (g, r // g, n * l_), (g, n * l_, o // g), True))
    else:
        products.append(Product("weight", (g, o // g, n * l_), (g, n * l_, r // g), True))
    if route.input_grad_by == "transposed":
        transposed = _transposed(geom)
        inner = _engine.choose(transposed, route.caps, route.limit)
        products.append(_forward_product(transposed, inner.per_sample, "input"))
    elif route.per_sample:
        products.append(Product("input", (r, o), (n, o, l_)))
    else:
        products.append(Product("input", (g, r // g, o // g), (g, o // g, n * l_)))
    return products


def _copies(layer: Layer, dtype: str) -> list[int]:
    """Elements of each im2col matrix the route writes or reads (none for pointwise)."""
    geom = _geometry(layer)
    route = _route(geom, dtype)
    if route.kernel == "pointwise":
        return []
    cols = geom.column_rows * geom.batch * geom.out_volume
    if route.input_grad_by == "transposed":
        transposed = _transposed(geom)
        return [cols, cols, transposed.column_rows * transposed.batch * transposed.out_volume]
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

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(dtype)

    x, w = normal(*layer.x_shape), normal(*layer.w_shape)
    b, gy = normal(layer.o), normal(*layer.y_shape)
    kw = layer.conv_kwargs
    conv, conv_backward = _conv_functions(layer.rank)
    torch_conv = _torch_conv(layer.rank)
    assert torch_conv is not None

    def ours() -> Any:
        conv(x, w, b, **kw)
        return conv_backward(gy, x, w, **kw)

    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    tgy = torch.from_numpy(gy)

    def theirs() -> Any:
        return torch.autograd.grad(torch_conv(tx, tw, tb, **kw), (tx, tw, tb), tgy)

    gemms = []
    for product in _products(layer, dtype):
        left = normal(*product.left)
        if product.right_transposed:  # stored with the last two axes swapped
            stored = normal(*product.right[:-2], product.right[-1], product.right[-2])
            right = np.swapaxes(stored, -1, -2)
        else:
            right = normal(*product.right)
        gemms.append((left, right))

    def products() -> None:
        for left, right in gemms:
            np.matmul(left, right)

    copies = [(normal(size), np.empty(size, dtype)) for size in _copies(layer, dtype)]

    def copy_all() -> None:
        for src, dst in copies:
            np.copyto(dst, src)

    return {"xpconv": ours, "torch": theirs, "gemm": products, "copies": copy_all}


def _flops(product: Product) -> int:
    *batch, m, k = product.left
    *batch_r, _, n = product.right
    return 2 * math.prod(batch or batch_r) * m * k * n


def _gemm_layers() -> list[str]:
    """The layers with matrix products: one group (the depthwise layer has none)."""
    return [name for name, layer in LAYERS.items() if layer.groups == 1]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float32,float64")
    p.add_argument(
        "--layers",
        default=",".join(_gemm_layers()),
        help="comma-separated layers of xpconv bench with one group (default: all of them)",
    )
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (median of medians)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per case and round")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    names = [n.strip() for n in args.layers.split(",") if n.strip()]
    unknown = [n for n in names if n not in _gemm_layers()]
    if unknown or not names:
        p.error(f"--layers: choose from {', '.join(_gemm_layers())}, got {args.layers!r}")
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    print(
        "layer         dtype    xpconv ms  torch ms  gemm ms  copies ms  "
        "xp/torch  gemm/torch  (gemm+copies)/torch  route"
    )
    with _threads(args.threads):
        blas, threads = _blas_info()
        for dtype in args.dtype.split(","):
            for name in names:
                cases = _cases(LAYERS[name], dtype, rng)
                times: dict[str, list[float]] = {k: [] for k in cases}
                for _ in range(args.rounds):
                    for key, run in cases.items():
                        times[key].append(_median_ms(run, args.repeat))
                ms = {k: statistics.median(v) for k, v in times.items()}
                layer = LAYERS[name]
                route = _route(_geometry(layer), dtype)
                row = {"layer": name, "shape": layer.shape, "dtype": dtype}
                row |= {f"{k}_ms": round(v, 2) for k, v in ms.items()}
                row |= {
                    "rank": layer.rank,
                    "route": f"{route.kernel}, input grad by {route.input_grad_by}"
                    + (", per sample" if route.per_sample else ""),
                    "gemm_gflop": round(sum(_flops(p) for p in _products(layer, dtype)) / 1e9, 3),
                }
                rows.append(row)
                torch_ms = ms["torch"]
                print(
                    f"{name:<13} {dtype:<8} {ms['xpconv']:>9.1f} {torch_ms:>9.1f} "
                    f"{ms['gemm']:>8.1f} {ms['copies']:>10.1f} {ms['xpconv'] / torch_ms:>9.2f} "
                    f"{ms['gemm'] / torch_ms:>11.2f} "
                    f"{(ms['gemm'] + ms['copies']) / torch_ms:>20.2f}  {row['route']}",
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
