"""Draw the 1-D and 3-D unfold pictures used on the "How it works" page.

Run by ``docs/conf.py`` at every build (so the pictures cannot go stale), or by
hand::

    python docs/scripts/make_unfold_nd_figures.py docs/_static/generated

which writes ``unfold-1d.png`` and ``unfold-3d.png`` into that folder. As in
``make_im2col_figure.py``, every number drawn comes from :func:`xpconv.unfold`
itself: the inputs hold their own flat index, so each entry of the columns
names the sample or voxel it was copied from.

- 1-D: a signal of 12 samples, kernel 3, stride 2, dilation 2 (4 windows).
- 3-D: a 4x4x4 volume, kernel 2x2x2, stride 2 (8 windows), drawn as its four
  depth slices side by side.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, Rectangle

import xpconv

WINDOW_COLOUR = "#d62728"  # one window: one column of the matrix
SLICE_COLOUR = "#9ecae1"  # one kernel offset: one row of the matrix, a strided slice
GRID_COLOUR = "0.6"

# 1-D
LENGTH = 12
K1, S1, D1 = 3, 2, 2
OUT1 = (LENGTH - D1 * (K1 - 1) - 1) // S1 + 1
WINDOW_1D = 1  # the window outlined
OFFSET_1D = 1  # the kernel offset filled

# 3-D
SIDE = 4
K3, S3 = 2, 2
OUT3 = (SIDE - K3) // S3 + 1
WINDOW_3D = (1, 0, 1)  # output position (d, h, w) whose window is outlined
OFFSET_3D = (0, 1, 1)  # kernel offset (i, j, l) whose strided slice is filled


def _cells(
    ax: plt.Axes,
    values: np.ndarray,
    fill: np.ndarray | None = None,
    *,
    y0: float = 0.0,
    fontsize: float = 9,
) -> None:
    """Draw a 2-D array of integers as labelled cells, row 0 at the top, from height y0."""
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            face = SLICE_COLOUR if fill is not None and fill[r, c] else "white"
            ax.add_patch(
                Rectangle((c, y0 + r), 1, 1, facecolor=face, edgecolor=GRID_COLOUR, lw=0.8)
            )
            label = f"{values[r, c]:g}"
            ax.text(c + 0.5, y0 + r + 0.5, label, ha="center", va="center", fontsize=fontsize)


def _bare(ax: plt.Axes, width: float, height: float, *, top: float = -0.1) -> None:
    ax.set_xlim(-0.1, width + 0.1)
    ax.set_ylim(height + 0.1, top)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _outline(ax: plt.Axes, x: float, y: float, w: float, h: float, **kw: object) -> None:
    style = {"fill": False, "edgecolor": WINDOW_COLOUR, "lw": 2.5} | kw
    ax.add_patch(Rectangle((x, y), w, h, **style))


def _label_matrix(ax: plt.Axes, rows: list[str], cols: list[str], *, ylabel: str) -> None:
    ax.set_yticks(np.arange(len(rows)) + 0.5)
    ax.set_yticklabels(rows, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_xticks(np.arange(len(cols)) + 0.5)
    ax.set_xticklabels(cols, fontsize=7, rotation=90 if len(cols[0]) > 3 else 0)
    ax.set_xlabel("output position (window)", fontsize=9)
    ax.tick_params(length=0)


def _arrow(fig: plt.Figure, src: plt.Axes, dst: plt.Axes) -> None:
    """A horizontal arrow from the right edge of ``src`` to the left of ``dst``'s labels."""
    renderer = fig.canvas.get_renderer()
    to_fig = fig.transFigure.inverted()
    start = src.get_window_extent(renderer).transformed(to_fig)
    end = dst.get_tightbbox(renderer).transformed(to_fig)
    y = (end.y0 + end.y1) / 2
    fig.add_artist(
        FancyArrowPatch(
            (start.x1 + 0.005, y),
            (end.x0 - 0.005, y),
            transform=fig.transFigure,
            arrowstyle="-|>",
            mutation_scale=18,
            color="0.3",
            lw=1.5,
        )
    )


def _span(ax: plt.Axes, x0: float, x1: float, y: float, text: str) -> None:
    """A double-headed arrow from x0 to x1 at height y, labelled to its right."""
    ax.add_patch(
        FancyArrowPatch((x0, y), (x1, y), arrowstyle="<|-|>", mutation_scale=10, color="0.25")
    )
    ax.text(x1 + 0.2, y, text, ha="left", va="center", fontsize=8, color="0.25")


def _legend(fig: plt.Figure, window: str, offset: str) -> None:
    """Explain the red outline (one window, one column) and the blue fill (one offset, one row)."""
    handles = [
        Rectangle((0, 0), 1, 1, fill=False, edgecolor=WINDOW_COLOUR, lw=2.5),
        Rectangle((0, 0), 1, 1, facecolor=SLICE_COLOUR, edgecolor=GRID_COLOUR),
    ]
    fig.legend(
        handles,
        [window, offset],
        loc="lower left",
        bbox_to_anchor=(0.01, 0.01),
        fontsize=9,
        frameon=False,
    )


def draw_1d(path: Path) -> Path:
    """Write the 1-D picture to ``path`` (PNG) and return the path."""
    signal = np.arange(LENGTH, dtype=np.float64).reshape(1, 1, LENGTH)
    cols = xpconv.unfold(signal, (K1,), stride=S1, dilation=D1)[0]  # (K, OUT)
    read = [OFFSET_1D * D1 + S1 * p for p in range(OUT1)]  # the samples offset i reads
    taps = [WINDOW_1D * S1 + D1 * i for i in range(K1)]  # the samples window p reads
    assert [int(v) for v in cols[OFFSET_1D]] == read
    assert [int(v) for v in cols[:, WINDOW_1D]] == taps

    lane = 0.8  # height of one window's lane under the signal
    lanes_top = 2.0
    height = lanes_top + (OUT1 - 1) * lane + 0.35
    fig, (ax_sig, ax_cols) = plt.subplots(
        1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [LENGTH + 2.2, OUT1 + 2]}
    )
    in_slice = np.zeros((1, LENGTH), dtype=bool)
    in_slice[0, read] = True
    _cells(ax_sig, signal[0], fill=in_slice)
    for t in taps:
        _outline(ax_sig, t, 0, 1, 1)
    # One lane per window: a dot on each sample it reads.
    for p in range(OUT1):
        y = lanes_top + p * lane
        xs = [p * S1 + D1 * i + 0.5 for i in range(K1)]
        colour = WINDOW_COLOUR if p == WINDOW_1D else "0.35"
        ax_sig.plot([xs[0], xs[-1]], [y, y], color=colour, lw=1.2, zorder=1)
        ax_sig.scatter(xs, [y] * K1, s=36, color=colour, zorder=2)
        ax_sig.scatter([xs[OFFSET_1D]], [y], s=90, facecolor="none", edgecolor="#3182bd", lw=1.8)
        ax_sig.text(-0.25, y, f"window {p}", ha="right", va="center", fontsize=8, color=colour)
    # Stride: from one window's first tap to the next's; dilation: between two taps.
    _span(ax_sig, 0.5, 0.5 + S1, lanes_top - 0.5, f"stride {S1}")
    between = lanes_top + WINDOW_1D * lane - lane / 2
    start = WINDOW_1D * S1 + 0.5
    _span(ax_sig, start + D1, start + 2 * D1, between, f"dilation {D1}")
    _bare(ax_sig, LENGTH, height)
    ax_sig.set_xlim(-2.3, LENGTH + 0.1)
    ax_sig.set_title(
        f"signal x: {LENGTH} samples, sample = its index; kernel {K1}, stride {S1}, dilation {D1}",
        fontsize=10,
    )

    row_fill = np.zeros(cols.shape, dtype=bool)
    row_fill[OFFSET_1D, :] = True
    _cells(ax_cols, cols.astype(int), fill=row_fill)
    _outline(ax_cols, WINDOW_1D, 0, 1, K1)
    _bare(ax_cols, OUT1, K1)
    _label_matrix(
        ax_cols, [str(i) for i in range(K1)], [str(p) for p in range(OUT1)], ylabel="kernel offset"
    )
    ax_cols.set_title(f"unfold(x, ({K1},), stride={S1}, dilation={D1})", fontsize=10)

    _legend(
        fig,
        f"window {WINDOW_1D}: one column",
        f"kernel offset {OFFSET_1D}: one row, a strided slice (circled: its tap in each window)",
    )
    fig.subplots_adjust(left=0.01, right=0.98, top=0.9, bottom=0.2, wspace=0.18)
    _arrow(fig, ax_sig, ax_cols)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def draw_3d(path: Path) -> Path:
    """Write the 3-D picture to ``path`` (PNG) and return the path."""
    volume = np.arange(SIDE**3, dtype=np.float64).reshape(1, 1, SIDE, SIDE, SIDE)
    cols = xpconv.unfold(volume, (K3, K3, K3), stride=S3)[0]  # (K**3, OUT**3)
    offsets = [(i, j, k) for i in range(K3) for j in range(K3) for k in range(K3)]
    windows = [(a, b, c) for a in range(OUT3) for b in range(OUT3) for c in range(OUT3)]
    row = offsets.index(OFFSET_3D)
    column = windows.index(WINDOW_3D)

    # The voxels one kernel offset reads: one strided slice per axis.
    in_slice = np.zeros((SIDE,) * 3, dtype=bool)
    in_slice[tuple(slice(i, i + S3 * (OUT3 - 1) + 1, S3) for i in OFFSET_3D)] = True
    assert sorted(cols[row].astype(int)) == sorted(np.flatnonzero(in_slice))
    window = tuple(slice(S3 * p, S3 * p + K3) for p in WINDOW_3D)
    assert sorted(cols[:, column].astype(int)) == sorted(volume[0, 0][window].ravel().astype(int))

    ratios = [SIDE] * SIDE + [0.4 * SIDE, len(windows) + 0.4]
    fig, axes = plt.subplots(1, SIDE + 2, figsize=(12, 4.0), gridspec_kw={"width_ratios": ratios})
    slices, spacer, ax_cols = axes[:SIDE], axes[SIDE], axes[SIDE + 1]
    spacer.axis("off")
    top_gap = (len(offsets) - SIDE) / 2  # centre the slices on the matrix's height
    for d, ax in enumerate(slices):
        _cells(ax, volume[0, 0, d], fill=in_slice[d], y0=top_gap)
        depth = window[0]
        if depth.start <= d < depth.stop:
            h, w = window[1], window[2]
            _outline(ax, w.start, top_gap + h.start, K3, K3)
        _bare(ax, SIDE, top_gap + SIDE, top=-0.1)
        ax.set_ylim(len(offsets) + 0.1, -0.1)
        ax.set_title(f"x[{d}, :, :]", fontsize=10, y=1 - top_gap / (len(offsets) + 0.2))
    fig.text(
        0.01,
        0.9,
        f"volume x: {SIDE}x{SIDE}x{SIDE}, voxel = its index, as {SIDE} depth slices; "
        f"kernel {K3}x{K3}x{K3}, stride {S3}",
        fontsize=10,
        ha="left",
    )

    row_fill = np.zeros(cols.shape, dtype=bool)
    row_fill[row, :] = True
    _cells(ax_cols, cols.astype(int), fill=row_fill)
    _outline(ax_cols, column, 0, 1, len(offsets))
    _bare(ax_cols, len(windows), len(offsets))
    _label_matrix(
        ax_cols,
        [f"({i},{j},{k})" for i, j, k in offsets],
        [f"({a},{b},{c})" for a, b, c in windows],
        ylabel="kernel offset (i, j, l)",
    )
    ax_cols.set_title(f"unfold(x, {K3}, stride={S3})", fontsize=10)

    _legend(
        fig,
        f"window of output position {WINDOW_3D}: one column (a {K3}x{K3}x{K3} block)",
        f"kernel offset {OFFSET_3D}: one row (a strided slice on every axis)",
    )
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.2, wspace=0.12)
    _arrow(fig, slices[-1], ax_cols)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def draw(folder: Path) -> list[Path]:
    """Write ``unfold-1d.png`` and ``unfold-3d.png`` into ``folder``."""
    return [draw_1d(folder / "unfold-1d.png"), draw_3d(folder / "unfold-3d.png")]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    draw(Path(args[0]) if args else Path())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
