"""xpconv: 2-D convolutions with explicit backward for any array API library.

One im2col implementation (:mod:`xpconv._im2col`) serves NumPy, CuPy, PyTorch,
JAX, Dask and array-api-strict; the scatter-add that col2im needs goes through
:mod:`xpconv._backend`, the only backend-specific module.
"""

from xpconv._threads import thread_limit
from xpconv._workspace import workspace_limit
from xpconv.compat import ConvolutionLayer
from xpconv.functional import (
    Conv2dGradients,
    conv2d,
    conv2d_backward,
    conv_transpose2d,
    fold,
    unfold,
)
from xpconv.layers import Conv2d

__version__ = "0.1.0"

__all__ = [
    "Conv2d",
    "Conv2dGradients",
    "ConvolutionLayer",
    "__version__",
    "conv2d",
    "conv2d_backward",
    "conv_transpose2d",
    "fold",
    "thread_limit",
    "unfold",
    "workspace_limit",
]
