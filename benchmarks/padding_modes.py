"""What a padding mode and complex numbers cost: ratios measured in one run.

``python benchmarks/padding_modes.py --json benchmarks/results/padding-modes-cpu.json``

Two tables, each from alternating rounds of blocks (a pause before each
block, one untimed call, then ``--repeat`` timed calls), on NumPy arrays.
Times are the medians over the rounds; each ratio is the median over the
rounds of the two cases' times within a round:

* padding modes: xpconv's forward + backward (input, weight and bias
  gradients) with ``padding_mode`` reflect, replicate, circular and
  symmetric, over the same call with zero padding, on the standard layers of
  ``xpconv bench`` that pad (:data:`xpconv.bench.LAYERS`). A mode pads a copy
  of the input and folds the padded gradient back, so its extra cost is a few
  passes over the input, next to the convolution's products. PyTorch's cost
  for the same modes (``F.pad`` then ``F.conv*d`` and autograd, over its
  zero-padded call) is printed alongside for the modes it has.
* complex128: xpconv's forward + backward over PyTorch's complex convolution
  and autograd, on two standard layers.

Timings on a shared machine drift; compare the ratios, which come from one
run. A short check: ``--rounds 1 --repeat 1 --layers mnist``.
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

from xpconv.bench import LAYERS, SETTLE_S, Layer, _blas_info, _conv_functions, _cpu_name, _threads
from xpconv.bench import _torch_conv as torch_conv_of

if TYPE_CHECKING:
    from collections.abc import Callable

MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")
TORCH_MODES = ("reflect", "replicate", "circular")
COMPLEX_LAYERS = ("mnist", "conv64")


def _padded_layers() -> list[str]:
    """The standard layers that pad (a mode changes nothing without padding)."""
    return [name for name, layer in LAYERS.items() if any(layer.padding)]


def _median_ms(run: Callable[[], Any], repeat: int) -> float:
    # A pause first, as in xpconv bench: BLAS worker threads spin for a while
    # after a product and slow down whatever runs next.
    time.sleep(SETTLE_S)
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _arrays(layer: Layer, dtype: str, rng: np.random.Generator) -> list[np.ndarray]:
    def draw(*shape: int) -> np.ndarray:
        a = rng.standard_normal(shape)
        if dtype.startswith("complex"):
            a = a + 1j * rng.standard_normal(shape)
        return a.astype(dtype)

    return [draw(*layer.x_shape), draw(*layer.w_shape), draw(layer.o), draw(*layer.y_shape)]


def _xpconv_case(layer: Layer, arrays: list[np.ndarray], mode: str) -> Callable[[], Any]:
    x, w, b, gy = arrays
    kw = layer.conv_kwargs | {"padding_mode": mode}
    conv, conv_backward = _conv_functions(layer.rank)

    def run() -> Any:
        conv(x, w, b, **kw)
        return conv_backward(gy, x, w, **kw)

    return run


def _torch_case(layer: Layer, arrays: list[np.ndarray], mode: str) -> Callable[[], Any] | None:
    import torch

    conv = torch_conv_of(layer.rank)
    if conv is None:
        return None
    x, w, b = (torch.from_numpy(a).requires_grad_() for a in arrays[:3])
    gy = torch.from_numpy(arrays[3])
    kw = layer.conv_kwargs
    if mode != "zeros":
        pads = [p for p in reversed(layer.padding) for _ in range(2)]
        kw = kw | {"padding": 0}

    def run() -> Any:
        xin = x if mode == "zeros" else torch.nn.functional.pad(x, pads, mode=mode)
        return torch.autograd.grad(conv(xin, w, b, **kw), (x, w, b), gy)

    return run


def _time(cases: dict[str, Callable[[], Any]], rounds: int, repeat: int) -> dict[str, list[float]]:
    """Each case's median time in each round (the rounds alternate over the cases)."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for key, run in cases.items():
            times[key].append(_median_ms(run, repeat))
    return times


def _ratio(times: dict[str, list[float]], key: str, reference: str) -> float:
    """The median over rounds of key / reference within each round.

    Pairing the two within a round cancels the slow drifts of a shared machine
    (other jobs start and stop), which a ratio of overall medians keeps.
    """
    return statistics.median(a / b for a, b in zip(times[key], times[reference], strict=True))


def _modes_table(names: list[str], dtype: str, rounds: int, repeat: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    print(f"\npadding modes, {dtype}: fwd+bwd ms, and the ratio to zero padding in the same run")
    print(
        f"{'layer':<13} {'mode':<10} {'xpconv ms':>9} {'/zeros':>7} {'torch ms':>9} {'/zeros':>7}"
    )
    for name in names:
        layer = LAYERS[name]
        arrays = _arrays(layer, dtype, rng)
        cases: dict[str, Callable[[], Any]] = {}
        for mode in MODES:
            cases[f"xpconv-{mode}"] = _xpconv_case(layer, arrays, mode)
            theirs = _torch_case(layer, arrays, mode) if mode in ("zeros", *TORCH_MODES) else None
            if theirs is not None:
                cases[f"torch-{mode}"] = theirs
        times = _time(cases, rounds, repeat)
        for mode in MODES:
            ours = statistics.median(times[f"xpconv-{mode}"])
            ratio = _ratio(times, f"xpconv-{mode}", "xpconv-zeros")
            has_torch = f"torch-{mode}" in times and "torch-zeros" in times
            theirs_ms = statistics.median(times[f"torch-{mode}"]) if has_torch else None
            torch_ratio = _ratio(times, f"torch-{mode}", "torch-zeros") if has_torch else None
            row = {
                "layer": name,
                "shape": layer.shape,
                "dtype": dtype,
                "mode": mode,
                "xpconv_ms": round(ours, 2),
                "xpconv_over_zeros": round(ratio, 3),
                "torch_ms": None if theirs_ms is None else round(theirs_ms, 2),
                "torch_over_zeros": None if torch_ratio is None else round(torch_ratio, 3),
            }
            rows.append(row)
            torch_text = (
                f"{theirs_ms:>9.1f} {torch_ratio:>7.2f}"
                if theirs_ms is not None and torch_ratio is not None
                else " " * 17
            )
            print(f"{name:<13} {mode:<10} {ours:>9.1f} {ratio:>7.2f} {torch_text}", flush=True)
    return rows


def _complex_table(names: list[str], rounds: int, repeat: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(1)
    rows = []
    print("\ncomplex128: fwd+bwd ms, xpconv over torch in the same run")
    print(f"{'layer':<13} {'xpconv ms':>9} {'torch ms':>9} {'xp/torch':>9}")
    for name in names:
        layer = LAYERS[name]
        arrays = _arrays(layer, "complex128", rng)
        theirs = _torch_case(layer, arrays, "zeros")
        assert theirs is not None
        times = _time(
            {"xpconv": _xpconv_case(layer, arrays, "zeros"), "torch": theirs}, rounds, repeat
        )
        ms = {k: statistics.median(v) for k, v in times.items()}
        ratio = _ratio(times, "xpconv", "torch")
        rows.append(
            {
                "layer": name,
                "shape": layer.shape,
                "dtype": "complex128",
                "xpconv_ms": round(ms["xpconv"], 2),
                "torch_ms": round(ms["torch"], 2),
                "xpconv_over_torch": round(ratio, 3),
            }
        )
        print(f"{name:<13} {ms['xpconv']:>9.1f} {ms['torch']:>9.1f} {ratio:>9.2f}", flush=True)
    return rows


def _names(text: str, allowed: list[str], flag: str, parser: argparse.ArgumentParser) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        parser.error(f"{flag}: choose from {', '.join(allowed)}, got {text!r}")
    return names


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtype", default="float32", help="dtypes of the padding-mode table")
    p.add_argument("--layers", default=",".join(_padded_layers()), help="padding-mode layers")
    p.add_argument("--complex-layers", default=",".join(COMPLEX_LAYERS))
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (median of medians)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per case and round")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    names = _names(args.layers, _padded_layers(), "--layers", p)
    complex_names = _names(args.complex_layers, list(LAYERS), "--complex-layers", p)
    import torch

    torch.set_num_threads(args.threads)
    with _threads(args.threads):
        blas, threads = _blas_info()
        modes = [
            row
            for dtype in args.dtype.split(",")
            for row in _modes_table(names, dtype, args.rounds, args.repeat)
        ]
        complex_rows = _complex_table(complex_names, args.rounds, args.repeat)
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
        payload = {"meta": meta, "padding_modes": modes, "complex128": complex_rows}
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
