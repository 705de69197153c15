"""SciPy's ``convolve`` and ``correlate`` (:mod:`scipy.signal`) for every array API library.

:func:`convolve`, :func:`correlate`, :func:`convolve2d` and
:func:`correlate2d` take the arguments of their :mod:`scipy.signal`
namesakes and give the same results, on NumPy, CuPy, PyTorch, JAX, Dask and
array-api-strict arrays, with the result in the inputs' library and device.
Two things SciPy's N-d functions do not have: ``axes=`` convolves along
some axes only and broadcasts the others (a batch of signals, or of
kernels, in one call, as ``scipy.signal.fftconvolve`` does), and the direct
method is xpconv's im2col engine (matrix products), not a loop.

``method='direct'`` uses :func:`xpconv.conv`; ``method='fft'`` the array
API ``fft`` extension; ``method='auto'`` (the default) picks one by an
estimate of their operation counts (:func:`choose_conv_method`). The
computations live in :mod:`xpconv._signal_core` and the modules it names.
"""

from __future__ import annotations

from typing import Any

import array_api_compat as compat
import numpy as np

from xpconv import _signal_core as core
from xpconv._backend import namespace_of
from xpconv._signal_2d import solve2d

__all__ = ["choose_conv_method", "convolve", "convolve2d", "correlate", "correlate2d"]

Array = Any


def convolve(
    in1: Array, in2: Array, mode: str = "full", method: str = "auto", *, axes: Any = None
) -> Array:
    """Convolve two N-d arrays, as ``scipy.signal.convolve`` does, on any array library.

    Parameters
    ----------
    in1, in2 : array or array_like
        Arrays of the same rank, library and device; integer, real or
        complex floating dtypes. Along the convolved axes neither may be
        empty; along the other axes (see `axes`) they must broadcast. A
        number, list or tuple becomes an array of the other input's library
        (NumPy's when neither is an array), as SciPy takes array-likes.
    mode : {'full', 'same', 'valid'}, optional
        'full' (default): the whole linear convolution, ``n1 + n2 - 1``
        along each convolved axis. 'same': the size of `in1`, centred on the
        full output as SciPy centres it. 'valid': where one input lies
        completely inside the other, ``|n1 - n2| + 1``; one input must be at
        least as large as the other along every convolved axis (when `in2`
        is the larger, the inputs are swapped, which changes nothing since
        convolution commutes).
    method : {'auto', 'direct', 'fft'}, optional
        'direct': sums of products, by xpconv's im2col engine
        (:func:`xpconv.conv`). 'fft': the array API ``fft`` extension
        (``rfftn`` for real inputs, whose result is real; ``fftn`` for
        complex ones) at 5-smooth sizes. 'auto' (default): the one
        :func:`choose_conv_method` picks.
    axes : int or sequence of ints, optional
        The axes to convolve over (default: all). The other axes broadcast:
        ``in1`` of shape ``(B, n)`` and ``in2`` of shape ``(1, k)`` with
        ``axes=-1`` convolve ``B`` signals with one kernel; ``(B, k)``
        kernels pair up with the signals; ``(1, n)`` and ``(B, k)`` apply a
        bank of ``B`` filters.

    Returns
    -------
    array
        The convolution, in the inputs' library and device, with dtype the
        result type of the inputs (float32 stays float32). Integer inputs
        are computed in float64 and rounded back to their integer type,
        exact while the sums stay below ``2**53``. 0-d inputs give
        ``in1 * in2``.

    Raises
    ------
    ValueError
        Inputs of different ranks; an unknown `mode` or `method`; 'valid'
        where neither input is at least as large as the other; an empty
        input; batch axes that do not broadcast; `axes` out of range or
        repeated; arrays on different devices.
    TypeError
        Arrays of different libraries; boolean or non-numeric dtypes;
        ``method='fft'`` on a library without the ``fft`` extension.

    See Also
    --------
    correlate, convolve2d, choose_conv_method

    Notes
    -----
    SciPy's ``convolve`` refuses empty inputs too (NumPy's error "a cannot be
    empty"); here it is a ValueError naming both shapes. The FFT method
    spreads a NaN or an infinity over the whole output, as SciPy's does.

    Examples
    --------
    >>> import numpy as np
    >>> from xpconv import signal
    >>> signal.convolve(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 0.5]))
    array([0. , 1. , 2.5, 4. , 1.5])
    >>> signal.convolve(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1.0, 0.5]), mode="same")
    array([1. , 2.5, 4. ])

    Eight signals smoothed by one kernel, along the last axis only:

    >>> x = np.ones((8, 100))
    >>> signal.convolve(x, np.full((1, 5), 0.2), mode="valid", axes=-1).shape
    (8, 96)
    """
    return _solve(*_arrays(in1, in2), "convolve", mode, method, axes)


def correlate(
    in1: Array, in2: Array, mode: str = "full", method: str = "auto", *, axes: Any = None
) -> Array:
    """Cross-correlate two N-d arrays, as ``scipy.signal.correlate`` does, on any array library.

    ``z[k] = sum_l in1[l] * conj(in2[l - k + N - 1])`` with SciPy's output
    orientation: ``correlate(in1, in2)`` is ``convolve(in1, in2')`` with
    ``in2'`` the complex conjugate of `in2` reversed along the convolved
    axes, in every mode. In 'valid' mode with `in2` the larger input, that
    makes the result the reversed conjugate of ``correlate(in2, in1)``, as
    in SciPy.

    Parameters
    ----------
    in1, in2 : array or array_like
        As in :func:`convolve`.
    mode : {'full', 'same', 'valid'}, optional
        As in :func:`convolve`; 'same' has the size of `in1`.
    method : {'auto', 'direct', 'fft'}, optional
        As in :func:`convolve`.
    axes : int or sequence of ints, optional
        As in :func:`convolve`: the axes to correlate over, the others
        broadcast.

    Returns
    -------
    array
        The cross-correlation, with the dtype rules of :func:`convolve`.

    Raises
    ------
    ValueError, TypeError
        As :func:`convolve`.

    See Also
    --------
    convolve, correlate2d

    Examples
    --------
    The lag of a delayed copy is where the correlation peaks:

    >>> import numpy as np
    >>> from xpconv import signal
    >>> x = np.array([0.0, 1.0, 3.0, 1.0, 0.0, 0.0])
    >>> delayed = np.roll(x, 2)
    >>> c = signal.correlate(delayed, x)
    >>> int(np.argmax(c)) - (len(x) - 1)
    2
    """
    return _solve(*_arrays(in1, in2), "correlate", mode, method, axes)


# Python numbers and (nested) lists or tuples, which SciPy takes as array-likes.
_ARRAY_LIKE = (int, float, complex, list, tuple)


def _arrays(in1: Any, in2: Any) -> tuple[Array, Array]:
    """The inputs as arrays: an array-like becomes an array of the other input's
    library and device, or a NumPy array when neither input is an array."""
    arrays = [a for a in (in1, in2) if compat.is_array_api_obj(a)]
    if len(arrays) == 2:
        return in1, in2
    if arrays:
        xp, device = compat.array_namespace(arrays[0]), compat.device(arrays[0])
    else:
        xp, device = compat.array_namespace(np.empty(0)), None

    def as_array(a: Any) -> Any:
        if compat.is_array_api_obj(a) or not isinstance(a, _ARRAY_LIKE):
            return a  # an array, or something the checks will name and refuse
        return xp.asarray(a, device=device)

    return as_array(in1), as_array(in2)


def _solve(in1: Array, in2: Array, op: str, mode: str, method: str, axes: Any) -> Array:
    method = core.check_method(method)
    if _both_scalars(in1, in2):
        return _scalar_product(in1, in2, op)
    problem, xp = core.prepare(in1, in2, op=op, mode=mode, axes=axes)
    return core.solve(problem, method, xp)


def _both_scalars(in1: Array, in2: Array) -> bool:
    xp = namespace_of(in1=in1, in2=in2)
    return bool(xp.asarray(in1).ndim == 0 and xp.asarray(in2).ndim == 0)


def _scalar_product(in1: Array, in2: Array, op: str) -> Array:
    """SciPy's answer for two 0-d inputs: ``in1 * in2`` (``in1 * conj(in2)`` for correlate)."""
    xp = namespace_of(in1=in1, in2=in2)
    dtype = core.result_dtype(in1, in2, xp)
    a, b = xp.astype(in1, dtype, copy=False), xp.astype(in2, dtype, copy=False)
    if op == "correlate" and xp.isdtype(dtype, "complex floating"):
        b = xp.conj(b)
    return a * b


def choose_conv_method(
    in1: Array, in2: Array, mode: str = "full", *, axes: Any = None, op: str = "convolve"
) -> str:
    """The method ``method='auto'`` takes for these inputs: 'direct' or 'fft'.

    Like ``scipy.signal.choose_conv_method`` (without its ``measure``
    option), from the shapes alone, each method's time is estimated: the
    direct method does ``prod(kernel)`` multiply-adds per output value and
    batch element (about ``K + 64`` in the polyphase form of 1-D kernels),
    the FFT method about ``5/2 * N * log2(N)`` operations per transform of
    the padded size ``N`` (half that for real inputs), three transforms per
    batch element; each kind of operation is weighted by what it cost on a
    CPU (im2col's one-channel products are bound by memory, the polyphase
    products and the FFTs are not). The FFT must win by a margin (0.1 ms),
    as in SciPy: small inputs keep the exact sums.
    Libraries without the array API ``fft`` extension always get 'direct',
    and so do integer inputs whose exact result the FFT could not round back
    (SciPy's rule).

    Parameters
    ----------
    in1, in2 : array or array_like
        As in :func:`convolve`.
    mode : {'full', 'same', 'valid'}, optional
        As in :func:`convolve`.
    axes : int or sequence of ints, optional
        As in :func:`convolve`.
    op : {'convolve', 'correlate'}, optional
        The operation asked about (the estimate is the same for both).

    Returns
    -------
    str
        'direct' or 'fft'.

    Examples
    --------
    >>> import numpy as np
    >>> from xpconv import signal
    >>> signal.choose_conv_method(np.ones(1000), np.ones(3))
    'direct'
    >>> signal.choose_conv_method(np.ones(2**15), np.ones(2**15))
    'fft'
    """
    if op not in ("convolve", "correlate"):
        msg = f"op must be 'convolve' or 'correlate', got {op!r}"
        raise ValueError(msg)
    in1, in2 = _arrays(in1, in2)
    if _both_scalars(in1, in2):
        return "direct"
    problem, xp = core.prepare(in1, in2, op=op, mode=mode, axes=axes)
    return core.choose_method(problem, xp)


# --------------------------------------------------------------------------- 2-D


def convolve2d(
    in1: Array,
    in2: Array,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: Any = 0,
    *,
    method: str = "auto",
) -> Array:
    """Convolve two 2-D arrays with a boundary rule, as ``scipy.signal.convolve2d`` does.

    Parameters
    ----------
    in1, in2 : array or array_like
        2-D arrays of one library and device, neither of them empty (a list
        or tuple as in :func:`convolve`).
    mode : {'full', 'same', 'valid'}, optional
        As in :func:`convolve`; 'same' has the shape of `in1`.
    boundary : {'fill', 'wrap', 'symm'}, optional
        How `in1` continues past its edges: 'fill' (default) with
        `fillvalue`, 'wrap' periodically, 'symm' mirrored with the edge
        repeated. SciPy's other names ('pad', 'circular', 'symmetric') are
        accepted. 'valid' never looks past the edges.
    fillvalue : scalar, optional
        The value for ``boundary='fill'`` (default 0), cast to the result
        dtype; a complex value for a real result is refused, as in SciPy.
    method : {'auto', 'direct', 'fft'}, optional
        As in :func:`convolve`. SciPy's ``convolve2d`` always sums directly;
        the results agree to rounding.

    Returns
    -------
    array
        The convolution, with the dtype rules of :func:`convolve`.

    Raises
    ------
    ValueError
        Inputs that are not 2-D or are empty; an unknown `mode`, `boundary`
        or `method`; 'valid' where neither input is at least as large as
        the other; a `fillvalue` of more than one value or a complex one for
        a real result.
    TypeError
        As :func:`convolve`.

    Examples
    --------
    >>> import numpy as np
    >>> from xpconv import signal
    >>> image = np.arange(9.0).reshape(3, 3)
    >>> signal.convolve2d(image, np.ones((2, 2)), mode="same", boundary="wrap")
    array([[16., 14., 18.],
           [10.,  8., 12.],
           [22., 20., 24.]])
    """
    return solve2d(*_arrays(in1, in2), "convolve", mode, boundary, fillvalue, method)


def correlate2d(
    in1: Array,
    in2: Array,
    mode: str = "full",
    boundary: str = "fill",
    fillvalue: Any = 0,
    *,
    method: str = "auto",
) -> Array:
    """Cross-correlate two 2-D arrays with a boundary rule, as ``scipy.signal.correlate2d`` does.

    The arguments are those of :func:`convolve2d`. Two details follow SciPy's
    ``correlate2d``, which differs from its ``correlate`` there: for an even
    kernel size 'same' keeps the full output's values from ``K // 2`` on
    (``correlate``: ``(K - 1) // 2``), and in 'valid' mode with `in2` the
    larger input the result is ``correlate2d(in2, in1)`` reversed, not
    conjugated.

    Examples
    --------
    >>> import numpy as np
    >>> from xpconv import signal
    >>> image = np.arange(16.0).reshape(4, 4)
    >>> signal.correlate2d(image, np.array([[1.0, -1.0]]), mode="valid")
    array([[-1., -1., -1.],
           [-1., -1., -1.],
           [-1., -1., -1.],
           [-1., -1., -1.]])
    """
    return solve2d(*_arrays(in1, in2), "correlate2d", mode, boundary, fillvalue, method)
