"""How the processes use memory: CPython's cycle collector tuned for batches, and a long-running sender's
memory kept flat across parts.

The cycle collector runs a young collection every 700 container objects allocated and not yet freed.
Working a batch keeps thousands alive at once (a chunk's records, rows and events), so each batch set
off dozens of collections that walked, promoted and walked again objects that reference counting was
about to free anyway: measured with ``gc.callbacks`` at 100,000 pupils, 13-17 % of the time of
eligibility, delivery and the ingest CLI. :func:`tune_collector` freezes what start-up made (modules,
settings, the app: never garbage, never walked again) and collects the young generation every
``YOUNG`` objects instead. Cycles are still collected (a test holds it); between collections there are
at most ``YOUNG`` more objects alive, a few MB.

A part is built from a few buffers of tens of MB. glibc's malloc raises its mmap threshold after
such a buffer is freed (up to 32 MB), so the next parts' buffers come from the heap, which it rarely
gives back: resident memory creeps up part after part. Fixing the threshold keeps large buffers in
their own mappings, returned to the system when freed; ``trim`` hands back what the heap can spare.
Elsewhere than glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

_M_MMAP_THRESHOLD = -3
YOUNG = 50_000  # container objects allocated, net of those freed, between young collections (CPython: 700)
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


def tune_collector() -> None:
    """Freeze everything made so far and collect the young generation every :data:`YOUNG` objects; the
    older generations keep CPython's ratios (20 young collections a middle one, 10 of those a full one,
    and a full one only when it would walk a quarter more than the last). Called once a process has
    started: by a service before it serves, by the CLI before it runs a command."""
    gc.collect()  # start-up's own garbage goes before the rest is frozen
    gc.freeze()
    gc.set_threshold(YOUNG, 20, 10)
