"""The workspace limit: results do not depend on it, and it really chunks the work."""

from __future__ import annotations

import threading
import tracemalloc
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

import reference as ref
import xpconv
from reference import assert_close
from xpconv import _depthwise, _engine, _gemm, _pointwise, _tiles
from xpconv._backend import capabilities, materialize
from xpconv._geometry import conv_geometry
from xpconv._shifted import layout
from xpconv._tiles import Tiling, plan_tiles
from xpconv._workspace import (
    DEFAULT_GPU_WORKSPACE_BYTES,
    DEFAULT_WORKSPACE_BYTES,
    get_workspace_limit,
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
    "signal": ((3, 4, 12), (6, 2, 3), {"stride": 2, "padding": 2, "groups": 2}),
    "signal_depthwise": ((3, 4, 12), (4, 1, 4), {"padding": "same", "groups": 4}),
    "volume": ((2, 3, 5, 4, 4), (4, 3, 3, 2, 2), {"padding": (1, 0, 1), "stride": (2, 1, 1)}),
    "rank4": ((2, 2, 3, 3, 2, 3), (3, 2, 2, 2, 1, 2), {"padding": 1}),
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


def test_arrays_on_a_gpu_plan_with_the_gpu_default(backend: Any) -> None:
    """The route takes the GPU default exactly when its arrays are on a GPU."""
    x = backend.asarray(np.ones((2, 3, 6, 6)))
    route = _engine.plan(conv_geometry((2, 3, 6, 6), (4, 3, 3, 3)), x)
    gpu = str(backend) in ("cupy", "torch-cuda")
    assert route.caps.gpu is gpu
    assert route.limit == (DEFAULT_GPU_WORKSPACE_BYTES if gpu else DEFAULT_WORKSPACE_BYTES)


def test_gpu_default_keeps_a_large_layer_in_one_chunk() -> None:
    """75 MB of columns (8 samples of 9.4 MB): a tile per sample under the
    16 MiB default, one tile under the GPU default."""
    x = np.ones((8, 32, 64, 64))
    geom = conv_geometry(x.shape, (8, 32, 3, 3), padding=1)
    caps = capabilities(x)
    tiles = []
    for gpu in (False, True):
        route = _engine.choose(geom, replace(caps, gpu=gpu), get_workspace_limit(gpu=gpu))
        tiles.append(len(_gemm._tiling(route, x, np, ones_row=False)))
    assert tiles == [8, 1]


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


def _spans(tiling: Tiling) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    return [((t.batch.start, t.batch.stop), (t.band.start, t.band.stop)) for t in tiling]


def test_plan_tiles() -> None:
    geom = conv_geometry((8, 1, 5, 3), (1, 1, 1, 1))  # 8 samples of 5 output rows
    everything = [((0, 8), (0, 5))]
    assert _spans(plan_tiles(geom, 10, limit=None)) == everything
    assert _spans(plan_tiles(geom, 10, limit=400)) == everything
    # 50 bytes per sample, 120 allowed -> 2 per chunk at most, split evenly.
    assert _spans(plan_tiles(geom, 10, limit=120)) == [((i, i + 2), (0, 5)) for i in (0, 2, 4, 6)]
    seven = conv_geometry((7, 1, 5, 3), (1, 1, 1, 1))
    assert _spans(plan_tiles(seven, 10, limit=150)) == [
        ((0, 3), (0, 5)),
        ((3, 6), (0, 5)),
        ((6, 7), (0, 5)),
    ]
    # One sample is too big: bands of output rows, sample by sample.
    two = conv_geometry((2, 1, 5, 3), (1, 1, 1, 1))
    bands = plan_tiles(two, 10, limit=30)
    assert not bands.whole_samples
    assert _spans(bands) == [((n, n + 1), r) for n in range(2) for r in ((0, 3), (3, 5))]
    # Smaller than one row: one row at a time.
    assert len(plan_tiles(two, 10, limit=1)) == len(list(plan_tiles(two, 10, limit=1))) == 10


def test_tiles_carry_their_geometry() -> None:
    """A tile is a small convolution of its own: its padded input band, no
    padding left, its band of the output; on every rank."""
    geom = conv_geometry((3, 2, 9, 4, 5), (2, 2, 3, 2, 3), stride=(2, 1, 1), padding=(2, 1, 0))
    tiles = list(plan_tiles(geom, 1, limit=1))
    assert len(tiles) == 3 * geom.out_size[0]
    for tile in tiles:
        sub = tile.geom
        assert sub.batch == 1
        assert sub.pad == ((0, 0),) * 3
        assert sub.out_size == (1, *geom.out_size[1:])
        assert sub.in_size == (tile.rows.stop - tile.rows.start, *geom.padded_size[1:])
        assert tile.rows.start == tile.band.start * 2
        # The tile's own output size follows from its input band.
        assert conv_geometry(sub.input_shape, sub.weight_shape, stride=sub.stride).out_size == (
            sub.out_size
        )


def test_planning_absurd_sizes_is_instant() -> None:
    """Tiles are made lazily: planning 10**12 output rows costs nothing."""
    geom = conv_geometry((1, 1, 2, 2), (1, 1, 1, 1), padding=10**12)
    tiling = plan_tiles(geom, 8, limit=1)
    assert len(tiling) == geom.out_size[0]
    assert tiling.largest.band == slice(0, 1)


def _record_tiles(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, list[Any]]]:
    """Every plan made by the im2col route, as (bytes of columns per output band, tiles)."""
    plans: list[tuple[int, list[Any]]] = []
    original = _tiles.plan_tiles

    def spy(geom: Any, band_bytes: int, limit: int | None) -> Tiling:
        tiling = original(geom, band_bytes, limit)
        plans.append((band_bytes, list(tiling)))
        return tiling

    monkeypatch.setattr(_gemm, "plan_tiles", spy)
    return plans


def _record_depthwise_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> list[tuple[int | None, list[int], int]]:
    """Every split made by the depthwise kernel, as (bytes of padded input per
    job allowed, bytes of each job, bytes of one padded row of one plane)."""
    chunkings: list[tuple[int | None, list[int], int]] = []
    original = _depthwise._jobs

    def spy(geom: Any, budget: int | None, item: int) -> Any:
        jobs = original(geom, budget, item)
        sizes = [_depthwise._job_elements(job) * item for job in jobs]
        row = (layout(geom).plane // geom.padded_size[0] + layout(geom).reach) * item
        chunkings.append((budget, sizes, row))
        return jobs

    monkeypatch.setattr(_depthwise, "_jobs", spy)
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
    y_ref = ref.conv(x, w, b, **kw)
    gy = rng.standard_normal(y_ref.shape)
    gx_ref, gw_ref, gb_ref = ref.conv_backward(gy, x, w, **kw)
    xb, wb, bb, gyb = (backend.asarray(a, dtype=dtype) for a in (x, w, b, gy))
    plans = _record_tiles(monkeypatch)
    chunkings = _record_depthwise_chunks(monkeypatch)
    pointwise_chunks = _record_pointwise_chunks(monkeypatch)
    with workspace_limit(limit):
        y = xpconv.conv(xb, wb, bb, **kw)
        grads = xpconv.conv_backward(gyb, xb, wb, **kw)
    # Dask runs its graph here, after the block, in one pass: its tasks apply
    # the limit that was in force when the graph was built.
    y, *grads = materialize([y, *grads])
    assert_close(backend, y, y_ref, like=xb)
    for got, want in zip(grads, (gx_ref, gw_ref, gb_ref), strict=True):
        assert_close(backend, got, want, like=xb)
    if case.endswith("depthwise"):  # no im2col: chunks of padded planes instead
        _check_depthwise_chunks(chunkings, limit)
        return
    if case == "pointwise":  # no im2col: the weight gradient's batch chunks
        product_bytes = w_shape[0] * w_shape[1] * np.dtype(dtype).itemsize
        _check_pointwise_chunks(pointwise_chunks, limit, x_shape[0], product_bytes)
        return
    assert plans, "conv2d did not plan its work through plan_tiles"
    if limit is None or limit >= 10**9:
        assert all(len(tiles) == 1 for _, tiles in plans), plans
        return
    # Every tile's columns fit in the limit, or the tile is a single output row.
    for band_bytes, tiles in plans:
        for tile in tiles:
            n, rows = tile.batch.stop - tile.batch.start, tile.band.stop - tile.band.start
            assert n * rows * band_bytes <= limit or n == rows == 1, (band_bytes, tiles)
    assert any(len(tiles) > 1 for _, tiles in plans), plans


def _record_pointwise_chunks(monkeypatch: pytest.MonkeyPatch) -> list[list[slice]]:
    """The batch chunks of every pointwise weight gradient."""
    chunks: list[list[slice]] = []

    def spy(total: int, most: int) -> list[slice]:
        chunks.append(_tiles.even_split(total, most))
        return chunks[-1]

    monkeypatch.setattr(_pointwise, "even_split", spy)
    return chunks


def _check_pointwise_chunks(
    chunks: list[list[slice]], limit: int | None, batch: int, product_bytes: int
) -> None:
    assert len(chunks) == 1, chunks  # the weight gradient alone is chunked
    if limit is None or limit >= 10**9:
        assert chunks == [[slice(0, batch)]]
        return
    # (n, O, C) products of at most `limit` bytes, or one sample
    sizes = [c.stop - c.start for c in chunks[0]]
    assert sum(sizes) == batch
    assert all(n * product_bytes <= limit or n == 1 for n in sizes), chunks
    assert limit >= batch * product_bytes or len(sizes) > 1, chunks


def _check_depthwise_chunks(
    chunkings: list[tuple[int | None, list[int], int]], limit: int | None
) -> None:
    # Forward, weight gradient, and the input gradient's own depthwise
    # convolution (col2im on Dask, whose weight values are not read).
    assert len(chunkings) in (2, 3), chunkings
    if limit is None or limit >= 10**9:
        assert all(len(sizes) == 1 for _, sizes, _ in chunkings), chunkings
        return
    # A job's padded input takes at most a third of the limit (shared by the
    # threads working side by side), or is one row of one plane (and its
    # kernel's reach of rows).
    for budget, sizes, row in chunkings:
        assert budget is not None
        assert budget <= limit // 3
        assert all(size <= budget or size <= 8 * row for size in sizes), chunkings
        assert len(sizes) > 1, chunkings


@pytest.mark.parametrize(
    ("c", "o", "plans_made"),
    [(3, 4, 3), (4, 3, 3)],
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
    # Forward, then the backward pass: the col2im loop and the weight gradient's
    # loop, or the input gradient's own convolution and the weight gradient's loop.
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


# (x shape, weight shape, kwargs) of layers whose full im2col matrix is several
# times the limit: a signal with the col2im input gradient (stride 2), a
# volume with the transposed-convolution input gradient (stride 1, O <= C).
PEAK_CASES = {
    "signal": ((8, 16, 2048), (16, 16, 9), {"stride": 2, "padding": 4}),
    "volume": ((2, 8, 16, 16, 16), (8, 8, 3, 3, 3), {"padding": 1}),
}


@pytest.mark.parametrize("case", list(PEAK_CASES))
def test_peak_memory_bounded_by_limit_in_every_rank(case: str) -> None:
    """Forward and backward allocate at most the results, the workspace and
    two more workspace-sized pieces (a tile's padded input and its output
    gradient), whatever the rank: far below the full im2col matrix."""
    x_shape, w_shape, kw = PEAK_CASES[case]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    y_shape = ref.conv(x[:1, :, ...], w, **kw).shape[1:]
    gy = rng.standard_normal((x_shape[0], *y_shape)).astype(np.float32)
    geom = conv_geometry(x_shape, w_shape, **kw)
    full_cols = geom.column_rows * geom.batch * geom.out_volume * 4
    limit = 2**18
    assert full_cols > 16 * limit
    peaks = []
    with workspace_limit(limit):
        xpconv.conv_backward(gy, x, w, **kw)  # warm-up
        for run in (
            lambda: xpconv.conv(x, w, **kw),
            lambda: xpconv.conv_backward(gy, x, w, **kw),
        ):
            tracemalloc.start()
            try:
                run()
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
    forward_bound = gy.nbytes + 3 * limit + 2**16
    backward_bound = x.nbytes + w.nbytes + 3 * limit + 2**16
    assert peaks[0] <= forward_bound, (peaks, forward_bound)
    assert peaks[1] <= backward_bound, (peaks, backward_bound)


# One layer per route, each with a full im2col matrix (or, for the routes
# without one, a padded input or a product) many times the limit.
ROUTE_PEAKS = {
    "gemm-per-sample": ((16, 4, 64, 64), (8, 4, 3, 3), {"padding": 1}),
    "gemm-one-product": ((8, 32, 32, 32), (16, 32, 3, 3), {"padding": 1, "stride": 2}),
    "gemm-transposed-input-grad": ((4, 32, 32, 32), (16, 32, 3, 3), {"padding": 1}),
    "depthwise": ((8, 16, 64, 64), (16, 1, 3, 3), {"padding": 1, "groups": 16}),
    "depthwise-large-plane": ((1, 2, 512, 512), (2, 1, 3, 3), {"padding": 1, "groups": 2}),
    "pointwise": ((64, 128, 8, 8), (128, 128, 1, 1), {}),
    "signal": ((8, 16, 4096), (16, 16, 9), {"padding": 4, "stride": 2}),
    "volume-depthwise": ((2, 8, 16, 32, 32), (8, 1, 3, 3, 3), {"padding": 1, "groups": 8}),
}


@pytest.mark.parametrize("case", list(ROUTE_PEAKS))
def test_every_route_stays_within_the_limit(case: str) -> None:
    """Peak memory of the forward and backward passes of every route, NumPy,
    under a small limit: the results plus at most three limits (workspace,
    a tile's padded input, a tile of the output or its gradient), with every
    depthwise thread sharing the same limit."""
    x_shape, w_shape, kw = ROUTE_PEAKS[case]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    gy = np.ones_like(xpconv.conv(x, w, b, **kw))
    limit = 2**18
    with workspace_limit(limit):
        xpconv.conv_backward(gy, x, w, **kw)  # warm-up: imports, caches
        peaks = []
        for run in (
            lambda: xpconv.conv(x, w, b, **kw),
            lambda: xpconv.conv_backward(gy, x, w, **kw),
        ):
            tracemalloc.start()
            try:
                run()
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
    slack = 2**16
    forward_bound = gy.nbytes + 3 * limit + slack
    backward_bound = x.nbytes + w.nbytes + b.nbytes + 3 * limit + slack
    assert peaks[0] <= forward_bound, (case, peaks, forward_bound)
    assert peaks[1] <= backward_bound, (case, peaks, backward_bound)
