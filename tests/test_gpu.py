"""CuPy-specific checks; they run only where CuPy can use a GPU (the nox `gpu` session).

The rest of the suite covers CuPy through the `backend` fixture
(XPCONV_TEST_BACKENDS=cupy,torch-cuda); these tests add what only makes sense
on real devices: several GPUs, and both col2im strategies on CuPy.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpconv
from xpconv._backend import gpu_available
from xpconv._geometry import conv_geometry
from xpconv._im2col import col2im

pytestmark = pytest.mark.skipif(not gpu_available("cupy"), reason="no GPU usable by CuPy")


@pytest.fixture
def cp():
    import array_api_compat.cupy as cp

    return cp


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_col2im_strategies_agree_on_cupy(cp, dtype):
    """cupyx.scatter_add (atomics) and slice accumulation give the same image."""
    rng = np.random.default_rng(0)
    geom = conv_geometry((3, 4, 11, 9), (5, 4, 3, 3), stride=2, padding=1, dilation=1)
    cols_np = rng.standard_normal((3, 4 * 9, geom.out_volume)).astype(dtype)
    cols = cp.asarray(cols_np)
    slices = col2im(cols, geom, cp, strategy="slices")
    scatter = col2im(cols, geom, cp, strategy="scatter")
    ref = col2im(cols_np, geom, np, strategy="slices")
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(slices.get(), ref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(scatter.get(), ref, rtol=rtol, atol=rtol)


def test_results_stay_on_the_input_device(cp):
    import cupy

    count = cupy.cuda.runtime.getDeviceCount()
    if count < 2:
        pytest.skip("one GPU: device placement is tested with array-api-strict fake devices")
    with cupy.cuda.Device(1):
        x = cp.ones((2, 3, 8, 8))
        w = cp.ones((4, 3, 3, 3))
        b = cp.zeros(4)
    y = xpconv.conv2d(x, w, b, padding=1)
    grads = xpconv.conv2d_backward(cp.ones_like(y), x, w, padding=1)
    for result in (y, grads.input, grads.weight, grads.bias):
        assert result.device.id == 1
