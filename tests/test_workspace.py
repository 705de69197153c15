"""The workspace limit: results do not depend on it, and it really chunks the work."""

from __future__ import annotations

import threading
import tracemalloc
from typing import Any

import numpy as np
import pytest

import reference as ref
import xpconv
from reference import assert_close
from xpconv import _depthwise, _workspace
from xpconv._workspace import (
    DEFAULT_GPU_WORKSPACE_BYTES,
    DEFAULT_WORKSPACE_BYTES,
    Tile,
    get_workspace_limit,
    plan_tiles,
    workspace_limit,
)

# (input shape, weight shape, keyword arguments)
CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], dict[str, Any]]] = {
    "plain": ((5, 3, 7, 6), (4, 3, 3, 3), {"padding": 1}),
    "strided_dilated": (
        (3, 4, 11, 9),
        (6, 2, 3, 2),
        {"stride": (2, 1), "padding": 2, "dilation": 2, "groups": 2},
    ),
    "depthwise": ((4, 3, 6, 6), (3, 1, 3, 3), {"groups": 3, "padding": "same"}),
    "kernel1x1": ((3, 5, 4, 4), (2, 5, 1, 1), {"padding": 1}),
    # padding wider than the kernel: some bands of rows lie wholly in the padding
    "wide_padding": ((2, 3, 5, 4), (2, 3, 2, 2), {"padding": (4, 3), "stride": (2, 1)}),
    # 1x1, stride 1, no padding: no im2col; only the weight gradient is chunked
    "pointwise": ((3, 5, 4, 4), (2, 5, 1, 1), {}),
}
# None: one chunk; 10**9: one chunk too; 600 bytes: chunks of a few samples or
# bands of rows; 1 byte: one output row of one sample at a time.
LIMITS = [None, 10**9, 600, 1]


def test_default_limit() -> None:
    assert get_workspace_limit() == DEFAULT_WORKSPACE_BYTES


def test_gpu_default_limit() -> None:
    assert get_workspace_limit(gpu=True) == DEFAULT_GPU_WORKSPACE_BYTES > DEFAULT_WORKSPACE_BYTES
    with workspace_limit(1234):  # an explicit limit holds on every device
        assert get_workspace_limit(gpu=True) == get_workspace_limit() == 1234
    with workspace_limit(None):
        assert get_workspace_limit(gpu=True) is None


def test_arrays_on_a_gpu_plan_with_the_gpu_default(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """conv2d asks plan_tiles for the GPU default exactly when its arrays are on a GPU."""
    asked: list[bool] = []
    original = _workspace.plan_tiles

    def spy(*args: Any, **kw: Any) -> list[Tile]:
        asked.append(kw.get("gpu", False))
        return original(*args, **kw)

    monkeypatch.setattr("xpconv.functional.plan_tiles", spy)
    x = backend.asarray(np.ones((2, 3, 6, 6)))
    w = backend.asarray(np.ones((4, 3, 3, 3)))
    xpconv.conv2d_backward(xpconv.conv2d(x, w), x, w)
    gpu = str(backend) in ("cupy", "torch-cuda")
    assert asked
    assert set(asked) == {gpu}


def test_gpu_default_keeps_a_large_layer_in_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """75 MB of columns (8 samples of 9.4 MB): a chunk per sample under the
    16 MiB default, one chunk under the GPU default."""
    x, w = np.ones((8, 32, 64, 64)), np.ones((8, 32, 3, 3))
    plans = _record_tiles(monkeypatch)
    xpconv.conv2d(x, w, padding=1)
    monkeypatch.setattr("xpconv.functional.on_gpu", lambda _a: True)
    xpconv.conv2d(x, w, padding=1)
    assert [len(tiles) for _, tiles in plans] == [8, 1]


def test_context_manager_sets_and_restores() -> None:
    with workspace_limit(1234) as value:
        assert value == 1234
        assert get_workspace_limit() == 1234
        with workspace_limit(None):
            assert get_workspace_limit() is None
        assert get_workspace_limit() == 1234
    assert get_workspace_limit() == DEFAULT_WORKSPACE_BYTES


def test_limit_restored_after_exception() -> None:
    with pytest.raises(RuntimeError), workspace_limit(10):
        raise RuntimeError
    assert get_workspace_limit() == DEFAULT_WORKSPACE_BYTES


def test_limit_is_per_thread() -> None:
    seen: list[int | None] = []
    with workspace_limit(77):
        thread = threading.Thread(target=lambda: seen.append(get_workspace_limit()))
        thread.start()
        thread.join()
    assert seen == [DEFAULT_WORKSPACE_BYTES]


@pytest.mark.parametrize("bad", [0, -5])
def test_nonpositive_limit_rejected(bad: int) -> None:
    with pytest.raises(ValueError, match="nbytes"), workspace_limit(bad):
        pass


@pytest.mark.parametrize("bad", [1.5, "16M", True])
def test_non_integer_limit_rejected(bad: object) -> None:
    with pytest.raises(TypeError, match="nbytes"), workspace_limit(bad):  # type: ignore[arg-type]
        pass


def test_plan_tiles() -> None:
    everything = [Tile(slice(0, 8), slice(0, 5))]
    assert plan_tiles(8, 5, 10, limit=None) == everything
    assert plan_tiles(8, 5, 10, limit=400) == everything
    # 50 bytes per sample, 120 allowed -> 2 per chunk at most, split evenly.
    assert plan_tiles(8, 5, 10, limit=120) == [
        Tile(slice(i, i + 2), slice(0, 5)) for i in range(0, 8, 2)
    ]
    assert plan_tiles(7, 5, 10, limit=150) == [
        Tile(slice(0, 3), slice(0, 5)),
        Tile(slice(3, 6), slice(0, 5)),
        Tile(slice(6, 7), slice(0, 5)),
    ]
    # One sample is too big: bands of output rows, sample by sample.
    bands = plan_tiles(2, 5, 10, limit=30)
    assert bands == [Tile(slice(n, n + 1), r) for n in range(2) for r in (slice(0, 3), slice(3, 5))]
    # Smaller than one row: one row at a time.
    assert len(plan_tiles(2, 5, 10, limit=1)) == 10


def _record_tiles(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[Tile]]]:
    """Every plan made, as (bytes of columns per output row, tiles)."""
    plans: list[tuple[int, list[Tile]]] = []
    original = _workspace.plan_tiles

    def spy(batch: int, out_rows: int, bytes_per_row: int, *args: Any, **kw: Any) -> list[Tile]:
        tiles = original(batch, out_rows, bytes_per_row, *args, **kw)
        plans.append((bytes_per_row, tiles))
        return tiles

    monkeypatch.setattr("xpconv.functional.plan_tiles", spy)
    return plans


def _record_depthwise_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[int, int, list[int]]]:
    """Every chunking made by the depthwise kernel, as (threads sharing the
    limit, bytes per padded plane, planes in each chunk)."""
    chunkings: list[tuple[int, int, list[int]]] = []
    original = _depthwise._chunks

    def spy(geom: Any, like: Any, xp: Any, workers: int = 1) -> list[tuple[slice, list[slice]]]:
        chunks = original(geom, like, xp, workers)
        plane_bytes = geom.padded_hw[0] * geom.padded_hw[1] * xp.finfo(like.dtype).bits // 8
        sizes = [(g.stop - g.start) * (r.stop - r.start) for g, runs in chunks for r in runs]
        chunkings.append((workers, plane_bytes, sizes))
        return chunks

    monkeypatch.setattr(_depthwise, "_chunks", spy)
    return chunkings


@pytest.mark.parametrize("limit", LIMITS, ids=str)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_results_do_not_depend_on_limit(
    backend: Any, case: str, limit: int | None, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if ref.is_slow(backend) and limit in (1, 10**9):
        pytest.skip("thinned on slow eager backends (set XPCONV_TEST_THOROUGH=1 to run)")
    x_shape, w_shape, kw = CASES[case]
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    y_ref = ref.conv2d(x, w, b, **kw)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref, gb_ref = ref.conv2d_backward(gy, x, w, **kw)
    xb, wb, bb, gyb = (backend.asarray(a, dtype=dtype) for a in (x, w, b, gy))
    plans = _record_tiles(monkeypatch)
    chunkings = _record_depthwise_chunks(monkeypatch)
    with workspace_limit(limit):
        y = xpconv.conv2d(xb, wb, bb, **kw)
        grads = xpconv.conv2d_backward(gyb, xb, wb, **kw)
    assert_close(backend, y, y_ref, like=xb)
    assert_close(backend, grads.input, gx_ref, like=xb)
    assert_close(backend, grads.weight, gw_ref, like=xb)
    assert_close(backend, grads.bias, gb_ref, like=xb)
    if case == "depthwise":  # no im2col: chunks of padded planes instead
        _check_depthwise_chunks(chunkings, limit)
        return
    assert plans, "conv2d did not plan its work through plan_tiles"
    if limit is None or limit >= 10**9:
        assert all(len(tiles) == 1 for _, tiles in plans), plans
        return
    # Every tile's columns fit in the limit, or the tile is a single output row.
    for row_bytes, tiles in plans:
        for tile in tiles:
            n, rows = tile.batch.stop - tile.batch.start, tile.rows.stop - tile.rows.start
            assert n * rows * row_bytes <= limit or n == rows == 1, (row_bytes, tiles)
    if case != "pointwise":  # its (n, O, C) weight-gradient products are tiny
        assert any(len(tiles) > 1 for _, tiles in plans), plans


def _check_depthwise_chunks(chunkings: list[tuple[int, int, list[int]]], limit: int | None) -> None:
    # Forward, weight gradient, and the input gradient's own depthwise convolution.
    assert len(chunkings) == 3, chunkings
    if limit is None or limit >= 10**9:
        assert all(len(sizes) == 1 for _, _, sizes in chunkings), chunkings
        return
    # A chunk's padded input takes at most a third of the limit's share of each
    # thread working on chunks at the same time, or is one plane.
    for workers, plane_bytes, sizes in chunkings:
        share = limit // (3 * workers)
        assert all(size * plane_bytes <= share or size == 1 for size in sizes), chunkings
        assert len(sizes) > 1, chunkings


@pytest.mark.parametrize(
    ("c", "o", "plans_made"),
    [(3, 4, 2), (4, 3, 3)],
    ids=["col2im-input-grad", "stride1-input-grad"],
)
def test_small_limit_chunks_and_matches_on_numpy(
    monkeypatch: pytest.MonkeyPatch, c: int, o: int, plans_made: int
) -> None:
    """Chunked and unchunked results agree to rounding (the BLAS may block
    a narrower product differently, so only the last bit may change)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, c, 9, 9))
    w = rng.standard_normal((o, c, 3, 3))
    gy = rng.standard_normal((6, o, 9, 9))
    with workspace_limit(None):
        y0 = xpconv.conv2d(x, w, padding=1)
        g0 = xpconv.conv2d_backward(gy, x, w, padding=1)
    plans = _record_tiles(monkeypatch)
    per_sample = 4 * 9 * 9 * 9 * 8  # the larger of C, O times KH*KW*OH*OW float64 bytes
    with workspace_limit(2 * per_sample):
        y1 = xpconv.conv2d(x, w, padding=1)
        g1 = xpconv.conv2d_backward(gy, x, w, padding=1)
    # Forward, then the backward pass: one loop for both gradients (col2im), or
    # the weight gradient's loop and the input gradient's own convolution.
    assert len(plans) == plans_made, plans
    assert all(len(tiles) >= 3 for _, tiles in plans), plans
    np.testing.assert_allclose(y0, y1, rtol=1e-13)
    np.testing.assert_allclose(g0.input, g1.input, rtol=1e-13)
    np.testing.assert_allclose(g0.weight, g1.weight, rtol=1e-12)
    assert y1.flags.c_contiguous
    assert g1.input.flags.c_contiguous


def test_conv_transpose_respects_limit(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    g = rng.standard_normal((4, 3, 4, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    expected = ref.conv_transpose2d(g, w, stride=2, padding=1, output_padding=1)
    plans = _record_tiles(monkeypatch)
    gb, wb = backend.asarray(g), backend.asarray(w)
    with workspace_limit(100):
        out = xpconv.conv_transpose2d(gb, wb, stride=2, padding=1, output_padding=1)
    assert len(plans[0][1]) > 1
    assert_close(backend, out, expected, like=gb)


def test_peak_memory_bounded_by_limit() -> None:
    """The extra memory follows the documented formula, far below the full im2col matrix."""
    rng = np.random.default_rng(0)
    n, c, h, w_, o = 32, 16, 32, 32, 16
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((n, o, h, w_)).astype(np.float32)
    limit = 2**20
    full_cols = c * 9 * n * h * w_ * 4  # 18 MiB
    padded = n * c * (h + 2) * (w_ + 2) * 4
    chunk_out = o * h * w_ * 4 * (limit // (c * 9 * h * w_ * 4))
    with workspace_limit(limit):
        xpconv.conv2d_backward(gy, x, w, padding=1)  # warm-up
        tracemalloc.start()
        try:
            grads = xpconv.conv2d_backward(gy, x, w, padding=1)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert grads.input.shape == x.shape
    # padded input + padded input gradient + its cropped copy + workspace + one
    # output-gradient chunk + small change.
    bound = 2 * padded + x.nbytes + limit + chunk_out + 2**16
    assert peak <= 1.1 * bound, (peak, bound)
    assert peak < full_cols
