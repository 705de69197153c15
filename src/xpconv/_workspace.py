"""The workspace limit: how much scratch memory a convolution may take.

A convolution written as a matrix product needs the im2col matrix
("columns"): ``C/groups * prod(kernel)`` values for every output position,
``prod(kernel)`` times the input for a stride-1 convolution. xpconv never
builds more than ``limit`` bytes of it at once: the work is cut into tiles
of samples (and, when one sample alone is larger than the limit, bands of
its output along the first spatial axis, :mod:`xpconv._tiles`), each
unfolded into one reused buffer, multiplied and folded back, so results do
not depend on the limit (up to the order of the weight gradient's sums over
tiles). The depthwise kernel cuts its planes into chunks (and a plane larger
than its share into bands of rows) of at most ``limit / (3 * threads)``
bytes; the pointwise weight gradient sums batch chunks of at most ``limit``
bytes of products.

On top of its arguments and results a call allocates the workspace, one
tile's padded input and one tile of the output (gradient): at most about
three times the limit. The formula, pass by pass, is on the "How it works"
page (``docs/how-it-works.md``, how-peak-memory), and the peaks are checked
by ``tests/test_workspace.py``.

Arrays in host memory get :data:`DEFAULT_WORKSPACE_BYTES` (16 MiB): tiles
large enough for the matrix products to run at full speed, peak memory near
PyTorch's, and buffers that glibc recycles instead of returning them to the
operating system. Arrays on a GPU get :data:`DEFAULT_GPU_WORKSPACE_BYTES`
(1 GiB): a GPU needs large products to be busy. Both choices were measured
(``docs/performance.md``, design-workspace).

Use :func:`workspace_limit` to change it for a block of code::

    with xpconv.workspace_limit(16 * 2**20):
        y = xpconv.conv2d(x, w)

or ``workspace_limit(None)`` to lift the limit (one tile, whatever its size).
"""

from __future__ import annotations

import contextlib
import operator
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "DEFAULT_GPU_WORKSPACE_BYTES",
    "DEFAULT_WORKSPACE_BYTES",
    "get_workspace_limit",
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


def explicit_limit() -> tuple[bool, int | None]:
    """``(True, limit)`` inside :func:`workspace_limit`, ``(False, None)`` outside.

    For work that runs later or elsewhere (a Dask task on another thread or
    process), which must apply the limit that was in force when it was made.
    """
    value = _LIMIT.get()
    if value is _DEVICE_DEFAULT:
        return False, None
    return True, value  # type: ignore[return-value]


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
