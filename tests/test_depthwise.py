"""The shifted-plane depthwise kernel (xpconv._depthwise) against the loop
reference and the im2col route, whole and cut into chunks, on every backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import reference as ref
import xpconv
from reference import thin
from xpconv import _depthwise, _engine
from xpconv._backend import capabilities, host_workers
from xpconv._engine import forced_route
from xpconv._geometry import conv_geometry
from xpconv._shifted import layout

# (input shape, weight shape, keyword arguments); every one is depthwise with
# one filter per channel and stride 1, the kernel's domain.
CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "padded": ((3, 4, 6, 5), (4, 1, 3, 3), {"groups": 4, "padding": 1}),
    "unpadded": ((2, 3, 5, 7), (3, 1, 3, 2), {"groups": 3}),
    "same_even_kernel": ((2, 3, 6, 7), (3, 1, 4, 2), {"groups": 3, "padding": "same"}),
    "dilated_asymmetric": (
        (2, 4, 9, 8),
        (4, 1, 3, 3),
        {"groups": 4, "padding": (3, 1), "dilation": (2, 3)},
    ),
    "pad_beyond_kernel": ((2, 2, 3, 4), (2, 1, 2, 2), {"groups": 2, "padding": (3, 2)}),
    "kernel1x1_padded": ((2, 3, 3, 4), (3, 1, 1, 1), {"groups": 3, "padding": 1}),
    "unbatched": ((4, 5, 6), (4, 1, 3, 3), {"groups": 4, "padding": 1}),
    "signal": ((3, 4, 11), (4, 1, 5), {"groups": 4, "padding": "same", "dilation": 2}),
    "volume": ((2, 3, 4, 5, 4), (3, 1, 3, 2, 3), {"groups": 3, "padding": (1, 0, 2)}),
}


def _batched_shape(case: str) -> tuple[int, ...]:
    x_shape, w_shape, _ = CASES[case]
    return x_shape if len(x_shape) == len(w_shape) else (1, *x_shape)


# How the work is cut (on the CPU with in-place updates; elsewhere only the
# workspace limit applies): everything at once, one plane per chunk, runs of
# two samples of one channel, or two channels with every sample.
CHUNKINGS = ["whole", "planes", "sample_runs", "channel_groups"]


def _chunking(
    chunking: str,
    x_shape: tuple[int, ...],
    geom: Any,
    workers: int,
    monkeypatch: pytest.MonkeyPatch,
) -> int | None:
    """Set the chunk sizes for ``chunking``; return the workspace limit to run under.

    The ``workers`` threads that run chunks side by side share the limit.
    """
    plane_bytes = layout(geom).plane * 8
    n = x_shape[0]
    if chunking == "whole":
        monkeypatch.setattr(_depthwise, "CPU_CHUNK_BYTES", 10**9)
        return None
    if chunking == "planes":
        monkeypatch.setattr(_depthwise, "CPU_CHUNK_BYTES", 1)
        return 1
    if chunking == "sample_runs":
        monkeypatch.setattr(_depthwise, "CPU_CHUNK_BYTES", 2 * plane_bytes)
        return 3 * workers * 2 * plane_bytes
    # Every sample in a run, two channels per group.
    monkeypatch.setattr(_depthwise, "CPU_CHUNK_BYTES", 2 * n * plane_bytes)
    return 3 * workers * 2 * n * plane_bytes


@pytest.mark.parametrize("chunking", thin(CHUNKINGS, ["sample_runs", "planes"]))
@pytest.mark.parametrize("case", thin(CASES, ["dilated_asymmetric", "unbatched", "volume"]))
def test_depthwise_kernel_matches_reference(
    backend: Any, case: str, chunking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x_shape, w_shape, kw = CASES[case]
    x4_shape = _batched_shape(case)
    geom = conv_geometry(x4_shape, w_shape, **kw)
    assert _engine.plan(geom, backend.asarray(np.zeros(1))).kernel == "depthwise"
    workers = host_workers(backend.asarray(np.zeros(1)))
    limit = _chunking(chunking, x4_shape, geom, workers, monkeypatch)
    job_counts: list[tuple[int, int]] = []  # (jobs, planes of one output row each)
    original = _depthwise._jobs

    def spy(geom: Any, budget: Any, item: int) -> Any:
        jobs = original(geom, budget, item)
        job_counts.append((len(jobs), geom.batch * geom.in_channels * geom.out_size[0]))
        return jobs

    monkeypatch.setattr(_depthwise, "_jobs", spy)
    rng = np.random.default_rng(11)
    x, w, b = (rng.standard_normal(s) for s in (x_shape, w_shape, w_shape[:1]))
    y_ref = ref.conv(x, w, b, **kw)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref, gb_ref = ref.conv_backward(gy, x, w, **kw)
    xb, wb, bb, gyb = (backend.asarray(a) for a in (x, w, b, gy))
    with xpconv.workspace_limit(limit):
        y = xpconv.conv(xb, wb, bb, **kw)
        grads = xpconv.conv_backward(gyb, xb, wb, **kw)
    ref.assert_close(backend, y, y_ref, like=xb)
    ref.assert_close(backend, grads.input, gx_ref, like=xb)
    ref.assert_close(backend, grads.weight, gw_ref, like=xb)
    ref.assert_close(backend, grads.bias, gb_ref, like=xb)
    if str(backend) == "dask":
        # Dask goes block-wise: each batch chunk runs the NumPy kernel whose
        # job counts the numpy backend checks, once per dask compute.
        return
    # Forward, the weight gradient and the input gradient's own depthwise convolution.
    assert len(job_counts) == 3, job_counts
    planes = x4_shape[0] * x4_shape[1]
    counts = [jobs for jobs, _ in job_counts]
    if chunking == "whole":
        assert set(counts) == {1}
    elif chunking == "planes":  # a budget below one row: one row of one plane per job
        assert all(jobs == rows for jobs, rows in job_counts), job_counts
    elif x4_shape[0] > 1 and x4_shape[1] > 2:
        # Several planes per job, several jobs, in the forward pass and the
        # weight gradient (the input gradient's convolution, last, pads
        # differently: its jobs may differ).
        assert 1 < counts[0] == counts[1] < planes, job_counts


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "case",
    thin(["padded", "same_even_kernel", "dilated_asymmetric", "signal", "volume"], ["padded"]),
)
def test_depthwise_kernel_equals_im2col_route(backend: Any, case: str, dtype: str) -> None:
    """The two routes give the same numbers (to rounding), bias and all gradients included."""
    x_shape, w_shape, kw = CASES[case]
    rng = np.random.default_rng(12)
    shapes = (x_shape, w_shape, w_shape[:1])
    x, w, b = (backend.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes)

    def run() -> tuple[Any, ...]:
        y = xpconv.conv(x, w, b, **kw)
        return (y, *xpconv.conv_backward(backend.xp.sin(y), x, w, **kw))

    kernel = run()
    with forced_route(kernel="gemm"):
        im2col = run()
    for a, b_ in zip(kernel, im2col, strict=True):
        ref.assert_routes_agree(backend, a, b_, dtype)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "kw", "applies"),
    [
        ((2, 4, 6, 6), (4, 1, 3, 3), {"groups": 4, "padding": 1}, True),
        ((2, 4, 6, 6), (4, 1, 3, 3), {"groups": 4, "dilation": 2}, True),
        ((2, 4, 6, 6), (4, 1, 3, 3), {"groups": 4, "stride": 2}, False),  # strided: im2col
        ((2, 4, 6, 6), (8, 1, 3, 3), {"groups": 4}, False),  # two filters per channel
        ((2, 4, 6, 6), (4, 2, 3, 3), {"groups": 2}, False),  # grouped, not depthwise
        ((2, 1, 6, 6), (1, 1, 3, 3), {}, False),  # one channel: the im2col product
        ((2, 4, 9), (4, 1, 3), {"groups": 4}, True),  # a signal
        ((1, 2, 3, 4, 5), (2, 1, 2, 2, 2), {"groups": 2, "stride": (1, 1, 2)}, False),
    ],
)
def test_depthwise_route(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], kw: dict[str, Any], applies: bool
) -> None:
    route = _engine.plan(conv_geometry(x_shape, w_shape, **kw), np.zeros(1))
    assert (route.kernel == "depthwise") is applies


def _job_bytes(geom: Any, dtype: Any, budget: int | None) -> list[int]:
    item = np.dtype(dtype).itemsize
    return [_depthwise._job_elements(job) * item for job in _depthwise._jobs(geom, budget, item)]


def test_cpu_chunks_are_cache_sized() -> None:
    """On NumPy a job holds at most CPU_CHUNK_BYTES of padded planes."""
    caps = capabilities(np.zeros(1))
    budget = _depthwise._budget(caps, None, 1)
    assert budget == _depthwise.CPU_CHUNK_BYTES
    layer = conv_geometry((32, 128, 28, 28), (128, 1, 3, 3), padding=1, groups=128)
    sizes = _job_bytes(layer, np.float32, budget)
    assert 1 < len(sizes) < 32 * 128
    assert max(sizes) <= budget
    # Large planes: runs of a few samples of one channel.
    big = conv_geometry((32, 8, 112, 112), (8, 1, 3, 3), padding=1, groups=8)
    sizes = _job_bytes(big, np.float64, budget)
    assert max(sizes) <= budget
    assert len(sizes) > 8
    # A plane larger than the budget is cut into bands of rows that fit.
    huge = conv_geometry((2, 2, 400, 400), (2, 1, 3, 3), padding=1, groups=2)
    sizes = _job_bytes(huge, np.float64, budget)
    assert max(sizes) <= budget
    assert len(sizes) == 4 * 3  # 400 rows: 3 bands of (at most) 161 + 2 padded rows


@pytest.mark.parametrize("limit", [2**20, 2**16])
def test_a_plane_larger_than_the_limit_is_cut_into_bands(backend: Any, limit: int) -> None:
    """The workspace limit bounds the depthwise route too: a plane larger than
    it is worked on in bands of rows, with the same results."""
    rng = np.random.default_rng(3)
    x, w, b = (
        rng.standard_normal((1, 2, 70, 90)),
        rng.standard_normal((2, 1, 3, 5)),
        rng.standard_normal(2),
    )
    kw = {"groups": 2, "padding": (2, 1), "dilation": (2, 1)}
    y_ref = ref.conv(x, w, b, **kw)
    gy = rng.standard_normal(y_ref.shape)
    expected = (y_ref, *ref.conv_backward(gy, x, w, **kw))
    geom = conv_geometry(x.shape, w.shape, **kw)
    budget = _depthwise._budget(capabilities(backend.asarray(x)), limit // 64, 1)
    bands = _depthwise._bands(geom, budget, 8)
    assert len(bands) > 1
    xb, wb, bb, gyb = (backend.asarray(a) for a in (x, w, b, gy))
    with xpconv.workspace_limit(limit // 64):
        got = (xpconv.conv(xb, wb, bb, **kw), *xpconv.conv_backward(gyb, xb, wb, **kw))
    for g, e in zip(got, expected, strict=True):
        ref.assert_close(backend, g, e, like=xb)
