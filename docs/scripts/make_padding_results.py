"""Render ``benchmarks/results/padding/*.json`` (from ``benchmarks/padding_modes.py``) as Markdown.

Run by ``docs/conf.py`` at every build; the "Padding" page includes the
result, so the figures it shows are always those of the committed runs.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

MODES = ("reflect", "replicate", "circular", "symmetric")


def _modes_table(rows: list[dict[str, Any]]) -> list[str]:
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    by = {(r["layer"], r["mode"]): r for r in rows}
    lines = [
        "| layer | zeros (ms) | " + " | ".join(f"`{m}`" for m in MODES) + " |",
        "|---|---|" + "---|" * len(MODES),
    ]
    for layer in layers:
        zeros = by[(layer, "zeros")]
        cells = []
        for mode in MODES:
            row = by[(layer, mode)]
            theirs = row.get("torch_over_zeros")
            torch_text = f" (torch {theirs:.2f})" if theirs is not None else ""
            cells.append(f"{row['xpconv_over_zeros']:.2f}{torch_text}")
        lines.append(f"| {layer} | {zeros['xpconv_ms']:.1f} | " + " | ".join(cells) + " |")
    return lines


def _complex_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| layer | xpconv (ms) | torch (ms) | xpconv / torch |", "|---|---|---|---|"]
    lines += [
        f"| {r['layer']} | {r['xpconv_ms']:.1f} | {r['torch_ms']:.1f} | "
        f"{r['xpconv_over_torch']:.2f} |"
        for r in rows
    ]
    return lines


def _threads(threads: dict[str, int]) -> str:
    """{'blas:openblas': 1, 'torch': 1} -> 'openblas 1, torch 1'."""
    return ", ".join(f"{name.split(':')[-1]} {count}" for name, count in threads.items())


def render(results_dir: Path) -> str:
    """Markdown for every run in ``results_dir`` (empty text when there is none)."""
    parts = []
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        meta = data["meta"]
        parts += [
            f"`{path.name}`: {meta['machine']}, {meta['date']}, NumPy {meta['numpy']}, "
            f"PyTorch {meta['torch']}, {meta['rounds']} rounds of {meta['repeat']} calls, "
            f"threads: {_threads(meta['threads'])}.",
            "",
        ]
        for dtype in dict.fromkeys(r["dtype"] for r in data["padding_modes"]):
            parts += [
                f"Forward + backward with each mode over the same call with zero padding "
                f"({dtype}; in brackets PyTorch's `F.pad` + convolution over its "
                "zero-padded convolution):",
                "",
                *_modes_table([r for r in data["padding_modes"] if r["dtype"] == dtype]),
                "",
            ]
        parts += [
            "complex128 forward + backward, xpconv over PyTorch's complex convolution:",
            "",
            *_complex_table(data["complex128"]),
            "",
        ]
    return "\n".join(parts) + ("\n" if parts else "")
