"""Smoke test of an installed xpconv, run by the ``package`` nox session.

Usage: ``python check_installed.py numpy|torch`` from a folder outside the
source tree, in a virtualenv where only the built wheel (and, for ``torch``,
PyTorch) is installed. It checks that the wheel is the xpconv imported (not
``src/``), that it ships ``py.typed`` and its licence, that its description
(the package index page) has no relative links, then runs ``conv2d`` and
a ``Conv2d`` layer forward and backward (and through a pickle round trip) on
the chosen array library against an independent result: PyTorch's autograd
for torch, a direct sum over the kernel offsets for NumPy.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import pickle
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import xpconv

if TYPE_CHECKING:
    import numpy as np

LIBRARIES = ("numpy", "torch")


def check_installed() -> None:
    """The imported xpconv is the wheel's, with its typing marker and licence."""
    package = Path(xpconv.__file__).resolve().parent
    if "site-packages" not in package.parts:
        msg = f"xpconv imported from {package}, not from an installed wheel"
        raise SystemExit(msg)
    if not (package / "py.typed").is_file():
        msg = f"{package} has no py.typed"
        raise SystemExit(msg)
    files = importlib.metadata.files("xpconv") or []
    if not any(f.name == "LICENSE" for f in files):
        msg = "the installed distribution has no LICENSE file"
        raise SystemExit(msg)
    # A package index shows the description without the repository's files: a
    # relative link or image there is broken.
    description = importlib.metadata.metadata("xpconv").get_payload()  # type: ignore[attr-defined]
    relative = re.findall(r"\]\((?!https?://|#)[^)]*\)", description or "")
    if not description or relative:
        msg = f"the package description is empty or has relative links: {relative}"
        raise SystemExit(msg)


def reference_conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Stride 1, padding 1, one group: the sum over kernel offsets, in float64."""
    import numpy as np

    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, wd = x.shape[2:]
    y = np.zeros((x.shape[0], w.shape[0], h + 3 - kh, wd + 3 - kw))
    for i in range(kh):
        for j in range(kw):
            window = xp[:, :, i : i + y.shape[2], j : j + y.shape[3]]
            y += np.einsum("nchw,oc->nohw", window, w[:, :, i, j])
    return y + b[None, :, None, None]


def check_numpy() -> None:
    """NumPy alone: the wheel must not need PyTorch (or any other array library)."""
    import numpy as np

    if importlib.util.find_spec("torch") is not None:
        msg = "torch is installed: this check is for an environment with NumPy only"
        raise SystemExit(msg)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    layer = xpconv.Conv2d(3, 4, 3, padding=1, rng=0)
    np.testing.assert_allclose(
        xpconv.conv2d(x, layer.weight, layer.bias, padding=1),
        reference_conv2d(x, layer.weight, layer.bias),
        rtol=1e-10,
        atol=1e-12,
    )
    y = layer(x)
    grad_x = layer.backward(np.ones_like(y))
    # d(sum y)/dw[o, c, i, j] is the sum of the input window of that offset.
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.stack(
        [
            np.stack(
                [xp[:, :, i : i + 7, j : j + 6].sum(axis=(0, 2, 3)) for j in range(3)], axis=-1
            )
            for i in range(3)
        ],
        axis=-2,
    )
    np.testing.assert_allclose(layer.grad_weight, np.broadcast_to(expected, (4, 3, 3, 3)))
    np.testing.assert_allclose(layer.grad_bias, np.full(4, y[:, 0].size))
    assert grad_x.shape == x.shape
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(layer))(x), y)


def check_torch() -> None:
    """PyTorch as the array library, with nothing installed by hand but the wheel and torch:
    what xpconv needs besides (NumPy for the initialiser) must come as its dependencies."""
    import torch

    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    layer = xpconv.Conv2d(3, 4, 3, padding=1, xp=torch, dtype=torch.float64, rng=0)
    assert isinstance(layer.weight, torch.Tensor)
    w = layer.weight.clone().requires_grad_(True)
    b = layer.bias.clone().requires_grad_(True)
    xr = x.clone().requires_grad_(True)
    y_ref = torch.nn.functional.conv2d(xr, w, b, padding=1)
    torch.testing.assert_close(xpconv.conv2d(x, layer.weight, layer.bias, padding=1), y_ref)
    y = layer(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-12)
    grad_y = torch.randn_like(y)
    grad_x = layer.backward(grad_y)
    y_ref.backward(grad_y)
    torch.testing.assert_close(grad_x, xr.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.grad_weight, w.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(layer.grad_bias, b.grad, rtol=1e-10, atol=1e-12)
    copy = pickle.loads(pickle.dumps(layer))  # the namespace is restored by name
    torch.testing.assert_close(copy(x), y, rtol=0, atol=0)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in LIBRARIES:
        print(f"usage: check_installed.py {'|'.join(LIBRARIES)}", file=sys.stderr)
        return 2
    check_installed()
    {"numpy": check_numpy, "torch": check_torch}[argv[0]]()
    print(f"xpconv {xpconv.__version__} from {Path(xpconv.__file__).parent}: {argv[0]} ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
