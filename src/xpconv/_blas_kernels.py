"""Whether the BLAS runs slower kernels than the processor can: a note for the user.

On NumPy every im2col pass is a BLAS product, so the BLAS's kernels set
xpconv's speed. OpenBLAS chooses its kernels from the processors it knows;
one newer than the OpenBLAS build gets a generic choice. An AMD EPYC of family
26 (Zen 5) with NumPy 2.4's OpenBLAS 0.3.31 gets the Haswell (AVX2) kernels
though it has AVX-512, while PyTorch's oneDNN uses AVX-512 on it. Starting
Python with ``OPENBLAS_CORETYPE=SkylakeX`` selects OpenBLAS's AVX-512 kernels
(``docs/performance.md``, design-blas-coretype, has what it changed).

xpconv does not set the variable itself: it must be set before NumPy is
imported, and the choice belongs to the user. ``xpconv info`` and
``xpconv bench`` print the note.
"""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["blas_kernel_notes", "cpuinfo", "kernel_notes"]

# OpenBLAS's names (threadpoolctl's "architecture") of the kernels that use AVX-512.
AVX512_KERNELS = frozenset({"skylakex", "cooperlake", "sapphirerapids"})


def blas_kernel_notes(pools: Iterable[Mapping[str, Any]], cpu_flags: frozenset[str]) -> list[str]:
    """One note per OpenBLAS library (threadpoolctl's ``pools``) that runs kernels
    without AVX-512 on a processor whose ``cpu_flags`` include ``avx512f``."""
    if "avx512f" not in cpu_flags:
        return []
    notes = []
    for pool in pools:
        arch = pool.get("architecture")
        if pool.get("internal_api") != "openblas" or not arch:
            continue
        if str(arch).lower() in AVX512_KERNELS:
            continue
        notes.append(
            f"OpenBLAS {pool.get('version', '?')} runs its {arch} kernels, but this processor "
            "has AVX-512: OPENBLAS_CORETYPE=SkylakeX, set before Python starts, selects its "
            "AVX-512 kernels and can make the products faster (docs/performance.md, "
            f"design-blas-coretype). Library: {pool.get('filepath', '?')}"
        )
    return notes


def cpuinfo(key: str) -> str | None:
    """The value of the first ``key`` line of Linux's /proc/cpuinfo; ``None`` elsewhere."""
    if platform.system() != "Linux":
        return None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return None


def _cpu_flags() -> frozenset[str]:
    """The processor's feature flags (empty where /proc/cpuinfo does not say)."""
    return frozenset((cpuinfo("flags") or "").split())


def kernel_notes() -> list[str]:
    """:func:`blas_kernel_notes` for the BLAS libraries loaded in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return blas_kernel_notes(threadpool_info(), _cpu_flags())
