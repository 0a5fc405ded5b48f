"""Keep a long-running sender's memory flat across parts.

A part is built from a few buffers of tens of MB. glibc's malloc raises its mmap threshold after
such a buffer is freed (up to 32 MB), so the next parts' buffers come from the heap, which it rarely
gives back: resident memory creeps up part after part. Fixing the threshold keeps large buffers in
their own mappings, returned to the system when freed; ``trim`` hands back what the heap can spare.
Elsewhere than glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3
_libc = None
try:
    _path = ctypes.util.find_library("c")
    if _path:
        _libc = ctypes.CDLL(_path)
        if not hasattr(_libc, "mallopt") or not hasattr(_libc, "malloc_trim"):
            _libc = None
except OSError:
    _libc = None


def keep_large_buffers_mapped(threshold: int = 1 << 20) -> bool:
    """Buffers of ``threshold`` bytes or more get their own mapping (freed back to the system)."""
    return bool(_libc and _libc.mallopt(_M_MMAP_THRESHOLD, threshold))


def trim() -> None:
    if _libc:
        _libc.malloc_trim(0)
