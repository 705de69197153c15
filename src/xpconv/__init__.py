"""xpconv: convolutions of any rank with explicit backward for any array API library.

One im2col implementation (:mod:`xpconv._im2col`) serves NumPy, CuPy, PyTorch,
JAX, Dask and array-api-strict; the scatter-add that col2im needs goes through
:mod:`xpconv._backend`, the only backend-specific module.
"""

import importlib
from typing import Any

from xpconv._threads import thread_limit
from xpconv._workspace import workspace_limit
from xpconv.compat import ConvolutionLayer
from xpconv.functional import (
    Conv2dGradients,
    ConvGradients,
    conv,
    conv1d,
    conv1d_backward,
    conv2d,
    conv2d_backward,
    conv3d,
    conv3d_backward,
    conv_backward,
    conv_transpose,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    conv_transpose_backward,
    fold,
    unfold,
)
from xpconv.layers import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d

__version__ = "0.1.0"

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv2dGradients",
    "Conv3d",
    "ConvGradients",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "ConvolutionLayer",
    "__version__",
    "conv",
    "conv1d",
    "conv1d_backward",
    "conv2d",
    "conv2d_backward",
    "conv3d",
    "conv3d_backward",
    "conv_backward",
    "conv_transpose",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "conv_transpose_backward",
    "fold",
    "thread_limit",
    "unfold",
    "workspace_limit",
]

# Submodules reachable as attributes (``xpconv.signal.convolve``) and imported
# on first use, so that ``import xpconv`` stays light. The adapters
# (xpconv.torch, xpconv.jax, xpconv.dask) need their library: import them
# explicitly.
_LAZY_SUBMODULES = ("nn", "signal")


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"xpconv.{name}")
    msg = f"module 'xpconv' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY_SUBMODULES])
