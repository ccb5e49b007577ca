"""Memory allocator settings of a batch worker process: reuse freed memory instead of faulting in fresh pages.

Each forward pass of a member allocates and frees feature maps of 10-60 MB
(16-32 channels on the low-resolution grid of a 512 x 512 x 60 series).
glibc's malloc serves blocks that large with a new ``mmap`` and unmaps them
when freed, so the kernel faults in and zeroes every page again on the next
pass. Outside Dask, glibc raises its mmap threshold after the first such
free (up to 32 MB) and keeps most of them in the heap; a Dask nanny starts
its worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand memory back to the
system between tasks), which fixes the threshold at 128 KiB. Measured on one
512 x 512 x 60 phantom at one PyTorch thread: 710,000 page faults and 3.9 s
of CPU for the five forward passes in a Dask worker's environment, against
0 faults and 2.6 s once freed memory is kept (the masks are the same: only
where the memory comes from changes).

A local cluster starts its workers with :data:`WORKER_ENVIRON` (glibc reads
it before any thread exists, so the task threads share the main heap too: a
thread's own arena maps every block above 64 MiB afresh whatever the
threshold). :class:`KeepFreedMemory` sets the thresholds in workers started
elsewhere (``--scheduler``) as they join. glibc only (Linux); other C
libraries ignore both.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

#: Blocks below this size come from the heap, and up to this much free memory stays in it, bytes.
KEEP_BYTES = 256 << 20
#: Environment variables of a local cluster's worker processes (they replace Dask's MALLOC_TRIM_THRESHOLD_).
WORKER_ENVIRON = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(KEEP_BYTES),
    "MALLOC_TRIM_THRESHOLD_": str(KEEP_BYTES),
}
# mallopt(3) parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def keep_freed_memory(keep_bytes: int = KEEP_BYTES) -> bool:
    """Let this process's malloc reuse up to ``keep_bytes`` of freed memory instead of returning it at once.

    Sets glibc's mmap threshold and trim threshold to ``keep_bytes``: blocks
    smaller than that come from the heap, and freed memory at its top stays
    mapped up to that size. The process's peak memory is about the same (a
    forward pass reaches it either way); it is held between tasks.

    Parameters
    ----------
    keep_bytes : int
        Threshold in bytes (default :data:`KEEP_BYTES`, 256 MiB).

    Returns
    -------
    bool
        True where glibc took both settings; False on other C libraries (nothing changed).
    """
    libc = _libc()
    if libc is None:
        return False
    done = [libc.mallopt(_M_MMAP_THRESHOLD, keep_bytes), libc.mallopt(_M_TRIM_THRESHOLD, keep_bytes)]
    return all(value == 1 for value in done)


class KeepFreedMemory(WorkerPlugin):
    """A Dask worker plugin: :func:`keep_freed_memory` in each worker as it joins (restarted ones too)."""

    name = "cacscore-keep-freed-memory"
    idempotent = True

    def setup(self, worker: Any) -> None:
        """Apply the settings in the worker's process."""
        keep_freed_memory()
