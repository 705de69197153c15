"""The workspace limit: how much memory the im2col buffer may take.

A convolution written as a matrix product needs the im2col matrix ("columns"):
``C/groups * KH * KW`` values for every output pixel, ``KH*KW`` times the input
for a stride-1 convolution. xpconv never builds more than ``limit`` bytes of it
at once. The batch is cut into chunks of samples (and, when one sample alone
is larger than the limit, its output rows into bands); each chunk is unfolded
into one reused buffer, multiplied, and folded back, so the results are the
same whatever the limit (up to the order of floating-point sums over chunks in
the weight gradient).

Peak memory
-----------
With ``b`` the item size, ``Y = N*O*OH*OW*b`` the output, ``X = N*C*H*W*b``
the input, ``S = min(limit, cols)`` the workspace actually used (``cols =
N*C*KH*KW*OH*OW*b``), and per chunk of n samples (or band of output rows)
``T = n*O*OH*OW*b`` its output and ``P = n*C*Hp*Wp*b`` its zero-padded input
rows (0 when there is no padding; about ``S / (KH*KW)`` for a stride-1
layer: each chunk is padded on its own, ``_im2col.pad_region``), the memory
xpconv allocates on top of its arguments is at most about::

    forward  (conv2d):           P + S + T + Y (the result)
    backward (conv2d_backward):  P + S + T + X + W (the results)

where ``T`` is one chunk of the output gradient copied into matrix-product
order. col2im adds the column gradient straight into the result ``X``, each
window clipped to the input, so no padded gradient is allocated. A stride-1
layer with O <= C gets its input gradient from a second convolution instead
(of grad_output, see ``functional._stride1_input_grad``), and that
convolution has its own ``P``, ``S`` and ``T``, never alive at the same
time as the weight gradient's. A 1x1, stride-1, unpadded layer needs no
columns at all (``P = S = 0``); its weight gradient is summed over batch
chunks of (n, O, C) products of at most ``limit`` bytes. Backends without a
reusable buffer (array-api-strict, JAX, Dask) hold up to two workspace-sized
temporaries (columns and their gradient) instead of one.

A stride-1 depthwise layer (``groups == C == O``) has no columns either
(:mod:`xpconv._depthwise`): it works on chunks of padded planes of at most
``limit / (3 * threads)`` bytes (and, on the CPU, at most 512 KiB), with
about three chunk-sized arrays alive at once in each of the ``threads``
threads that work on chunks side by side (the padded chunk, the running sum,
one term; one thread except for NumPy's forward pass, see
:mod:`xpconv._threads`), so its workspace stays below ``limit`` on top of
``Y`` (forward) or ``X + W`` (backward).

The default limit for arrays in host memory, :data:`DEFAULT_WORKSPACE_BYTES`
(16 MiB), keeps every chunk large enough for the matrix products to run at
full speed and keeps the peak memory of the standard benchmark layers near
PyTorch's (measured float32 peaks: 64-channel layer 29.5 MiB against
PyTorch's 24.3, 128-channel 25.9 against 20.1-25.6, 7x7 stem 52.2 against
49.0; this default alone took them from 47.4, 47.4 and 82.2 MiB under the
former 32 MiB to 36.6, 31.1 and 55.8, before chunks were padded on their
own). Its speed cost depends on the machine. On the 2-core AMD EPYC
(float32, forward + backward, time relative to no limit): 32 MiB 0.89-1.07,
16 MiB 1.04-1.24, 8 MiB 1.24-1.75. On the 2-core Intel Xeon (AVX-512), best
of 7 alternating rounds, 16 MiB against 32 MiB: 0.88-0.98 on the 3x3 and 7x7
layers in float32 and float64, 1.03 on the dilated float32 layer. Buffers of
at most 32 MiB are also recycled by glibc's allocator (its adaptive mmap
threshold stops at 32 MiB) instead of being returned to the operating
system and page-faulted in again on the next call.

Arrays on a GPU (CuPy, torch CUDA, JAX on a GPU) get
:data:`DEFAULT_GPU_WORKSPACE_BYTES` (1 GiB) instead: a GPU needs large
products to be busy. Measured on an H200 at batch 256 (float32, forward +
backward, time relative to no limit): 32 MiB 2.4-8x slower, 256 MiB
1.03-1.12, 1 GiB 0.98-1.00 on the 64- and 128-channel layers.

Use :func:`workspace_limit` to change it for a block of code::

    with xpconv.workspace_limit(16 * 2**20):
        y = xpconv.conv2d(x, w)

or ``workspace_limit(None)`` to lift the limit (one chunk, whatever its size).
"""

from __future__ import annotations

import contextlib
import math
import operator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "DEFAULT_GPU_WORKSPACE_BYTES",
    "DEFAULT_WORKSPACE_BYTES",
    "Tile",
    "even_split",
    "get_workspace_limit",
    "plan_tiles",
    "workspace_limit",
]

DEFAULT_WORKSPACE_BYTES = 16 * 2**20
DEFAULT_GPU_WORKSPACE_BYTES = 2**30

# The limit set by workspace_limit(); _DEVICE_DEFAULT until one is set, so that
# CPU and GPU arrays each get their own default.
_DEVICE_DEFAULT = object()
_LIMIT: ContextVar[object] = ContextVar("xpconv_workspace_limit", default=_DEVICE_DEFAULT)


def get_workspace_limit(*, gpu: bool = False) -> int | None:
    """The workspace limit in force, in bytes (``None``: unlimited).

    Outside :func:`workspace_limit` this is the default for arrays on a GPU
    (``gpu=True``: :data:`DEFAULT_GPU_WORKSPACE_BYTES`) or elsewhere
    (:data:`DEFAULT_WORKSPACE_BYTES`).
    """
    value = _LIMIT.get()
    if value is _DEVICE_DEFAULT:
        return DEFAULT_GPU_WORKSPACE_BYTES if gpu else DEFAULT_WORKSPACE_BYTES
    assert value is None or isinstance(value, int)
    return value


def _check_limit(nbytes: object) -> int | None:
    if nbytes is None:
        return None
    if isinstance(nbytes, bool):
        msg = f"nbytes must be a positive int or None, got {nbytes!r}"
        raise TypeError(msg)
    try:
        value = operator.index(nbytes)  # type: ignore[arg-type]
    except TypeError:
        msg = f"nbytes must be a positive int (bytes) or None, got {nbytes!r}"
        raise TypeError(msg) from None
    if value < 1:
        msg = f"nbytes must be a positive int (bytes) or None, got {nbytes!r}"
        raise ValueError(msg)
    return value


@contextlib.contextmanager
def workspace_limit(nbytes: int | None) -> Iterator[int | None]:
    """Bound the im2col buffer of every convolution run inside the block.

    Parameters
    ----------
    nbytes : int or None
        Largest im2col buffer in bytes; ``None`` lifts the limit. A single
        output row of a single sample is the smallest chunk: if even that is
        larger than `nbytes`, that row is used anyway.

    Yields
    ------
    int or None
        The limit in force inside the block.

    Raises
    ------
    TypeError, ValueError
        If `nbytes` is not a positive integer or ``None``.

    Notes
    -----
    The limit is stored in a :class:`contextvars.ContextVar`, so threads and
    asyncio tasks each see their own. Results do not depend on the limit,
    except for the order in which the weight gradient's partial sums are added.

    Examples
    --------
    >>> import numpy as np
    >>> import xpconv
    >>> x, w = np.ones((8, 3, 16, 16)), np.ones((4, 3, 3, 3))
    >>> with xpconv.workspace_limit(2**16):   # 64 KiB: 2 samples per chunk here
    ...     y = xpconv.conv2d(x, w)
    >>> float(y[0, 0, 0, 0])
    27.0
    """
    value = _check_limit(nbytes)
    token = _LIMIT.set(value)
    try:
        yield value
    finally:
        _LIMIT.reset(token)


@dataclass(frozen=True)
class Tile:
    """A chunk of the work: samples ``batch`` and output rows ``rows``."""

    batch: slice
    rows: slice


def even_split(total: int, most: int) -> list[slice]:
    """Split ``range(total)`` into the fewest near-equal pieces of at most ``most``."""
    count = math.ceil(total / max(most, 1))
    size = math.ceil(total / count)
    return [slice(start, min(start + size, total)) for start in range(0, total, size)]


def plan_tiles(
    batch: int, out_rows: int, bytes_per_row: int, limit: int | None = None, *, gpu: bool = False
) -> list[Tile]:
    """Cut (batch, output rows) into tiles whose columns fit in ``limit`` bytes.

    ``bytes_per_row`` is the size of the im2col columns of one output row of
    one sample. Whole samples are kept together whenever one sample fits.
    ``limit`` defaults to the current :func:`get_workspace_limit` for arrays
    on a GPU (``gpu``) or not.
    """
    if limit is None:
        limit = get_workspace_limit(gpu=gpu)
    all_rows = slice(0, out_rows)
    per_sample = bytes_per_row * out_rows
    if limit is None or per_sample * batch <= limit:
        return [Tile(slice(0, batch), all_rows)]
    if per_sample <= limit:
        return [Tile(b, all_rows) for b in even_split(batch, limit // per_sample)]
    bands = even_split(out_rows, limit // max(bytes_per_row, 1))
    return [Tile(slice(n, n + 1), r) for n in range(batch) for r in bands]
