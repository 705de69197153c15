"""The ``xpconv`` command line: ``xpconv demo``, ``xpconv info`` and ``xpconv bench``.

``main(argv)`` returns the exit status instead of calling ``sys.exit`` so that
it can be tested in-process. Every problem the user can fix (a bad option, a
backend that is not installed, CuPy without a GPU, a missing optional
package) ends with one ``xpconv <command>: error: ...`` line on stderr and a
non-zero status, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import math
import platform
import sys
import warnings
from typing import TYPE_CHECKING, Any, NoReturn

import xpconv
from xpconv._blas_kernels import kernel_notes

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

USAGE_ERROR = 2
RUNTIME_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage block)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"must be a positive integer, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seed(text: str) -> int:
    from xpconv.demo import MAX_SEED

    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        # scikit-learn's random_state (the split) takes 0 to 2**32 - 1.
        msg = f"must be an integer from 0 to {MAX_SEED}, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _threads(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        msg = f"must be a non-negative integer (0: the libraries' defaults), got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value or None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        msg = f"must be a positive number, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _build_parser() -> _Parser:
    from xpconv.demo import BACKENDS, DemoConfig

    defaults = DemoConfig()
    parser = _Parser(
        prog="xpconv",
        description=(
            "Convolutions of any spatial rank (1-D, 2-D, 3-D, ...) with explicit backward "
            "for any array API library (NumPy, CuPy, PyTorch, JAX, Dask, array-api-strict)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"xpconv {xpconv.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="train a small CNN on scikit-learn's 8x8 digits (needs xpconv[demo])",
        description=(
            "Train conv -> ReLU -> conv -> ReLU -> max-pool -> dense with Adam on the "
            "handwritten digits that ship with scikit-learn (no download), report the "
            "held-out accuracy and time per epoch, and write xpconv-demo.png to --out."
        ),
    )
    demo.add_argument(
        "--backend",
        choices=list(BACKENDS),
        default=defaults.backend,
        help="array library to train with (default: %(default)s)",
    )
    demo.add_argument(
        "--epochs", type=_positive_int, default=defaults.epochs, help="default: %(default)s"
    )
    demo.add_argument(
        "--batch-size", type=_positive_int, default=defaults.batch_size, help="default: %(default)s"
    )
    demo.add_argument(
        "--seed",
        type=_seed,
        default=defaults.seed,
        help="seed for the split, the initial weights and the batch order (default: %(default)s)",
    )
    demo.add_argument(
        "--lr",
        type=_positive_float,
        default=defaults.lr,
        help="Adam learning rate, decayed along a cosine (default: %(default)s)",
    )
    demo.add_argument(
        "--out",
        default=str(defaults.out),
        metavar="DIR",
        help="folder for xpconv-demo.png, created if needed (default: current folder)",
    )
    demo.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default=defaults.dtype,
        help="floating dtype of data and parameters (default: %(default)s)",
    )
    demo.add_argument(
        "--device",
        default=None,
        help="torch only: 'cpu', 'cuda', 'cuda:1', ... (default: cuda when a GPU works, else cpu)",
    )
    demo.add_argument(
        "--threads",
        type=_threads,
        default=defaults.threads,
        help=(
            "BLAS/OpenMP threads while training, set through threadpoolctl when installed; "
            "0 keeps the libraries' defaults (default: %(default)s: the matrices are small)"
        ),
    )
    demo.add_argument(
        "--no-progress", action="store_true", help="print one line per epoch instead of a bar"
    )
    demo.set_defaults(func=_demo)

    info = commands.add_parser(
        "info",
        help="show the version, the usable array backends, devices and BLAS",
        description="Show xpconv's version, the array API backends usable here, devices and BLAS.",
    )
    info.set_defaults(func=_info)

    # Only for --help: main() hands everything after "bench" to xpconv.bench.main.
    commands.add_parser(
        "bench",
        help="benchmark xpconv against the backends' own convolutions (see 'xpconv bench --help')",
        add_help=False,
    )
    return parser


# --------------------------------------------------------------------------- demo


def _demo(args: argparse.Namespace) -> int:
    from xpconv.demo import DemoConfig, run_demo

    config = DemoConfig(
        backend=args.backend,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        lr=args.lr,
        out=args.out,
        dtype=args.dtype,
        device=args.device,
        threads=args.threads,
        progress=not args.no_progress,
    )
    run_demo(config, stream=sys.stdout)
    return 0


# --------------------------------------------------------------------------- info


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _devices(name: str, xp: Any) -> str:
    """The devices the namespace reports (array API inspection), default first."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about its legacy device types
            info = xp.__array_namespace_info__()
            default = info.default_device()
            devices = [] if name == "array_api_strict" else list(info.devices())
    except Exception:  # inspection is best effort
        return "?"
    # array-api-strict lists simulated test devices and torch its "meta" device:
    # neither holds real data.
    shown = [default] if default is not None else []
    shown += [d for d in devices if d is not None and d != default and str(d) != "meta"]
    return ", ".join(str(d) for d in shown)


def _backend_rows() -> list[tuple[str, str, str]]:
    from xpconv import _registry
    from xpconv._backend import gpu_available

    rows = []
    for spec in _registry.BACKENDS:
        if not spec.cli:  # torch-cuda: the torch row reports its GPU
            continue
        name, version = spec.name, _registry.version(spec)
        try:
            xp, _ = _registry.load(name)
        except _registry.BackendError as exc:
            status = "not installed" if version is None else str(exc).split(";")[0]
            if spec.gpu_library is not None and version is not None:
                status = "installed, but no working CUDA GPU: not usable"
            rows.append((name, version or "-", status))
            continue
        except Exception as exc:  # a broken install must not crash info
            rows.append((name, version or "-", f"import failed: {type(exc).__name__}: {exc}"))
            continue
        detail = f"usable; devices: {_devices(name, xp)}"
        if name == "torch":
            detail += "" if gpu_available("torch") else " (no CUDA GPU)"
        rows.append((name, version or "?", detail))
    return rows


def _blas_lines() -> list[str]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ['  (install threadpoolctl to see BLAS details: pip install "xpconv[bench]")']
    lines = []
    for pool in threadpool_info():
        where = pool.get("filepath", "")
        arch = pool.get("architecture")
        extra = f", {arch}" if arch else ""
        version = f" {pool['version']}" if pool.get("version") else ""
        lines.append(
            f"  {pool.get('internal_api', '?')}{version} ({pool.get('user_api', '?')}{extra}), "
            f"{pool.get('num_threads', '?')} threads: {where}"
        )
    return lines or ["  none loaded"]


def _info(args: argparse.Namespace) -> int:
    del args
    out = sys.stdout
    print(f"xpconv {xpconv.__version__}", file=out)
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.system()} {platform.machine()}",
        file=out,
    )
    support = ", ".join(
        f"{dist} {_version(dist) or 'missing'}" for dist in ("array-api-compat", "array-api-extra")
    )
    print(f"depends on: {support}", file=out)
    print("array API backends:", file=out)
    rows = _backend_rows()
    name_width = max(len(r[0]) for r in rows)
    version_width = max(len(r[1]) for r in rows)
    for name, version, status in rows:
        print(f"  {name:<{name_width}}  {version:<{version_width}}  {status}", file=out)
    print("BLAS / thread pools (threadpoolctl):", file=out)
    for line in _blas_lines():
        print(line, file=out)
    for note in kernel_notes():
        print(f"note: {note}", file=out)
    demo = ", ".join(
        f"{dist} {_version(dist) or 'missing'}" for dist in ("scikit-learn", "matplotlib", "tqdm")
    )
    print(f"demo extra: {demo}", file=out)
    return 0


# --------------------------------------------------------------------------- bench


def _bench(argv: list[str]) -> int:
    try:
        bench = importlib.import_module("xpconv.bench")
    except ModuleNotFoundError as exc:
        if exc.name == "xpconv.bench":
            print(
                "xpconv bench: error: this installation has no benchmark module (xpconv.bench)",
                file=sys.stderr,
            )
        else:
            print(
                f"xpconv bench: error: needs {exc.name}, which is not installed: "
                f'pip install "xpconv[bench]"',
                file=sys.stderr,
            )
        return RUNTIME_ERROR
    try:
        status = bench.main(argv)
    except SystemExit as exc:  # an argparse inside bench
        return _exit_code(exc)
    except KeyboardInterrupt:  # bench.main handles it while it measures; this is before
        print("xpconv bench: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


# --------------------------------------------------------------------------- main


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return RUNTIME_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xpconv`` command line on ``argv`` (default ``sys.argv[1:]``); return the status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["bench"]:
        return _bench(args_list[1:])

    from xpconv.demo import DemoError

    parser = _build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return _exit_code(exc)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args))
    except DemoError as exc:
        print(f"xpconv {args.command}: error: {exc}", file=sys.stderr)
        return RUNTIME_ERROR
    except KeyboardInterrupt:
        print(f"xpconv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
