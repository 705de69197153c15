"""Draw the im2col / col2im picture used on the "How it works" page.

Run by ``docs/conf.py`` at every build (so the picture cannot go stale), or by
hand::

    python docs/scripts/make_im2col_figure.py docs/_static/generated/im2col.png

The numbers in the picture come from :func:`xpconv.unfold` and :func:`xpconv.fold`
themselves, not from a hand-written table: a 5x5 single-channel image whose
pixels hold their own flat index, a 3x3 kernel, stride 1 (so 3x3 = 9 windows).
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

H = W = 5
K = 3
OH, OW = H - K + 1, W - K + 1
WINDOW = (1, 0)  # the output pixel (row, col) whose window is outlined
OFFSET = (0, 1)  # the kernel offset (i, j) whose strided slice is filled

WINDOW_COLOUR = "#d62728"
SLICE_COLOUR = "#9ecae1"
TEXT_KW = {"ha": "center", "va": "center", "fontsize": 9}


def _grid(ax: plt.Axes, values: np.ndarray, fill: np.ndarray | None = None) -> None:
    """Draw a matrix of integers as a grid of labelled cells (row 0 at the top)."""
    rows, cols = values.shape
    for r in range(rows):
        for c in range(cols):
            face = SLICE_COLOUR if fill is not None and fill[r, c] else "white"
            ax.add_patch(Rectangle((c, r), 1, 1, facecolor=face, edgecolor="0.6", lw=0.8))
            ax.text(c + 0.5, r + 0.5, f"{values[r, c]:g}", **TEXT_KW)
    ax.set_xlim(-0.1, cols + 0.1)
    ax.set_ylim(rows + 0.1, -0.1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _outline(ax: plt.Axes, x: float, y: float, w: float, h: float) -> None:
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=WINDOW_COLOUR, lw=2.5))


def draw(path: Path) -> Path:
    """Write the figure to ``path`` (PNG) and return the path."""
    image = np.arange(H * W, dtype=np.float64).reshape(1, 1, H, W)
    cols = xpconv.unfold(image, K)[0]  # (K*K, OH*OW): rows = offsets, cols = windows
    coverage = xpconv.fold(np.ones_like(cols), (H, W), K)[0]  # windows covering each pixel

    i, j = OFFSET
    wr, wc = WINDOW
    window_index = wr * OW + wc
    offset_index = i * K + j
    in_slice = np.zeros((H, W), dtype=bool)
    in_slice[i : i + OH, j : j + OW] = True  # stride 1: offset (i, j) reads x[i:i+OH, j:j+OW]
    row_fill = np.zeros(cols.shape, dtype=bool)
    row_fill[offset_index, :] = True

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.9), gridspec_kw={"width_ratios": [W, OH * OW, W]})
    ax_in, ax_cols, ax_fold = axes

    _grid(ax_in, image[0, 0], fill=in_slice)
    _outline(ax_in, wc, wr, K, K)
    ax_in.set_title("input x: 5x5, pixel = its index", fontsize=10)

    _grid(ax_cols, cols.astype(int), fill=row_fill)
    _outline(ax_cols, window_index, 0, 1, K * K)
    ax_cols.set_title("im2col: cols = unfold(x, 3)", fontsize=10)
    ax_cols.set_yticks(np.arange(K * K) + 0.5)
    ax_cols.set_yticklabels([f"({a},{b})" for a in range(K) for b in range(K)], fontsize=8)
    ax_cols.set_ylabel("kernel offset (i, j)", fontsize=9)
    ax_cols.set_xticks(np.arange(OH * OW) + 0.5)
    ax_cols.set_xticklabels([f"({a},{b})" for a in range(OH) for b in range(OW)], fontsize=7)
    ax_cols.set_xlabel("output pixel (window)", fontsize=9)

    _grid(ax_fold, coverage.astype(int))
    ax_fold.set_title("col2im: fold(ones_like(cols))", fontsize=10)

    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.12, wspace=0.28)
    renderer = fig.canvas.get_renderer()
    to_fig = fig.transFigure.inverted()
    for src, dst in ((ax_in, ax_cols), (ax_cols, ax_fold)):
        start = src.get_window_extent(renderer).transformed(to_fig)
        end = dst.get_tightbbox(renderer).transformed(to_fig)  # includes tick labels
        y = (start.y0 + start.y1) / 2
        arrow = FancyArrowPatch(
            (start.x1 + 0.01, y),
            (end.x0 - 0.01, y),
            transform=fig.transFigure,
            arrowstyle="-|>",
            mutation_scale=18,
            color="0.3",
            lw=1.5,
        )
        fig.add_artist(arrow)

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path("im2col.png")
    draw(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
