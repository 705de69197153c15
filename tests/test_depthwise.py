"""The shifted-plane depthwise kernel (xpconv._depthwise) against the loop
reference and the im2col route, whole and cut into chunks, on every backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import reference as ref
import xpconv
from reference import thin
from xpconv import _depthwise, functional
from xpconv._backend import host_workers
from xpconv._geometry import conv_geometry

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
}

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
    plane_bytes = geom.padded_hw[0] * geom.padded_hw[1] * 8
    n = x_shape[0] if len(x_shape) == 4 else 1
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
@pytest.mark.parametrize("case", thin(CASES, ["dilated_asymmetric", "unbatched"]))
def test_depthwise_kernel_matches_reference(
    backend: Any, case: str, chunking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    x_shape, w_shape, kw = CASES[case]
    x4_shape = x_shape if len(x_shape) == 4 else (1, *x_shape)
    geom = conv_geometry(x4_shape, w_shape, **kw)
    assert _depthwise.depthwise_applies(geom)
    workers = host_workers(backend.asarray(np.zeros(1)))
    limit = _chunking(chunking, x4_shape, geom, workers, monkeypatch)
    chunk_counts: list[int] = []
    original = _depthwise._chunks

    def spy(*args: Any) -> Any:
        chunks = original(*args)
        chunk_counts.append(sum(len(runs) for _, runs in chunks))
        return chunks

    monkeypatch.setattr(_depthwise, "_chunks", spy)
    rng = np.random.default_rng(11)
    x, w, b = (rng.standard_normal(s) for s in (x_shape, w_shape, w_shape[:1]))
    y_ref = ref.conv2d(x, w, b, **kw)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref, gb_ref = ref.conv2d_backward(gy, x, w, **kw)
    xb, wb, bb, gyb = (backend.asarray(a) for a in (x, w, b, gy))
    with xpconv.workspace_limit(limit):
        y = xpconv.conv2d(xb, wb, bb, **kw)
        grads = xpconv.conv2d_backward(gyb, xb, wb, **kw)
    ref.assert_close(backend, y, y_ref, like=xb)
    ref.assert_close(backend, grads.input, gx_ref, like=xb)
    ref.assert_close(backend, grads.weight, gw_ref, like=xb)
    ref.assert_close(backend, grads.bias, gb_ref, like=xb)
    # Forward, weight gradient and the input gradient's own depthwise convolution.
    assert len(chunk_counts) == 3, chunk_counts
    planes = x4_shape[0] * x4_shape[1]
    if chunking == "whole":
        assert chunk_counts == [1, 1, 1]
    elif chunking == "planes":
        assert chunk_counts == [planes] * 3
    elif x4_shape[0] > 1 and x4_shape[1] > 2:
        # Several planes per chunk, several chunks, in the forward pass and the
        # weight gradient (the input gradient's convolution, second, pads
        # differently: its chunks may differ).
        assert 1 < chunk_counts[0] == chunk_counts[2] < planes, chunk_counts


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "case", thin(["padded", "same_even_kernel", "dilated_asymmetric"], ["padded"])
)
def test_depthwise_kernel_equals_im2col_route(
    backend: Any, case: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two routes give the same numbers (to rounding), bias and all gradients included."""
    x_shape, w_shape, kw = CASES[case]
    rng = np.random.default_rng(12)
    shapes = (x_shape, w_shape, w_shape[:1])
    x, w, b = (backend.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes)

    def run() -> tuple[Any, ...]:
        y = xpconv.conv2d(x, w, b, **kw)
        return (y, *xpconv.conv2d_backward(backend.xp.sin(y), x, w, **kw))

    kernel = run()
    monkeypatch.setattr(functional, "depthwise_applies", lambda geom: False)
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
    ],
)
def test_depthwise_applies(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], kw: dict[str, Any], applies: bool
) -> None:
    assert _depthwise.depthwise_applies(conv_geometry(x_shape, w_shape, **kw)) is applies


def _chunk_bytes(geom: Any, dtype: Any) -> list[int]:
    chunks = _depthwise._chunks(geom, np.zeros(1, dtype=dtype), np)
    plane_bytes = geom.padded_hw[0] * geom.padded_hw[1] * np.dtype(dtype).itemsize
    return [
        (g.stop - g.start) * (r.stop - r.start) * plane_bytes for g, runs in chunks for r in runs
    ]


def test_cpu_chunks_are_cache_sized() -> None:
    """On NumPy chunks hold at most CPU_CHUNK_BYTES of padded planes (or one plane)."""
    limit = _depthwise.CPU_CHUNK_BYTES
    layer = conv_geometry((32, 128, 28, 28), (128, 1, 3, 3), padding=1, groups=128)
    sizes = _chunk_bytes(layer, np.float32)
    assert 1 < len(sizes) < 32 * 128
    assert max(sizes) <= limit
    assert sum(sizes) == 32 * 128 * 30 * 30 * 4
    # Large planes: runs of a few samples of one channel.
    big = conv_geometry((32, 8, 112, 112), (8, 1, 3, 3), padding=1, groups=8)
    sizes = _chunk_bytes(big, np.float64)
    assert max(sizes) <= limit
    assert len(sizes) > 8
    # A plane larger than the budget is a chunk of its own.
    huge = conv_geometry((2, 2, 400, 400), (2, 1, 3, 3), padding=1, groups=2)
    assert _chunk_bytes(huge, np.float64) == [402 * 402 * 8] * 4
