"""Draw the padding-modes picture of the "Padding modes" page.

Run by ``docs/conf.py`` at every build (so the picture cannot go stale), or by
hand::

    python docs/scripts/make_padding_figure.py docs/_static/generated/padding-modes.png

Every number drawn comes from xpconv itself: a 1-tap kernel of one returns
its padded input, so ``xpconv.conv1d(x, ones((1, 1, 1)), padding=3,
padding_mode=mode)`` is the signal 1..5 extended by three samples on each
side, one row per mode. The input samples are shaded; the padding is white.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

import xpconv

MODES = ("zeros", "reflect", "replicate", "circular", "symmetric")
SIGNAL = np.arange(1.0, 6.0)  # 1..5: a value names its sample
PAD = 3
INPUT_COLOUR = "#9ecae1"
GRID_COLOUR = "0.6"


def padded(mode: str) -> np.ndarray:
    """The signal as the convolution sees it with ``mode``: xpconv's own answer."""
    y = xpconv.conv1d(SIGNAL.reshape(1, 1, -1), np.ones((1, 1, 1)), padding=PAD, padding_mode=mode)
    return np.asarray(y[0, 0])


def draw(path: Path) -> None:
    width = SIGNAL.size + 2 * PAD
    fig, ax = plt.subplots(figsize=(7.5, 3.2))
    for row, mode in enumerate(MODES):
        for col, value in enumerate(padded(mode)):
            inside = PAD <= col < PAD + SIGNAL.size
            face = INPUT_COLOUR if inside else "white"
            ax.add_patch(Rectangle((col, row), 1, 1, facecolor=face, edgecolor=GRID_COLOUR))
            ax.text(col + 0.5, row + 0.5, f"{value:g}", ha="center", va="center", fontsize=10)
        ax.text(
            -0.3, row + 0.5, repr(mode), ha="right", va="center", fontsize=10, family="monospace"
        )
    for edge in (PAD, PAD + SIGNAL.size):
        ax.plot([edge, edge], [-0.15, len(MODES) + 0.15], color="#d62728", lw=2)
    ax.set_xlim(-3.2, width + 0.1)
    ax.set_ylim(len(MODES) + 0.1, -0.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.text(
        PAD + SIGNAL.size / 2, -0.35, "input", ha="center", va="bottom", fontsize=9, color="0.25"
    )
    for x in (PAD / 2, PAD + SIGNAL.size + PAD / 2):
        ax.text(x, -0.35, f"padding={PAD}", ha="center", va="bottom", fontsize=9, color="0.25")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    draw(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("padding-modes.png"))
