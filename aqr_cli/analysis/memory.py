"""The process's memory between the phases of a large analysis: freed tensors handed back to the
system before the next phase allocates, and before figure workers are forked (they inherit every
resident page)."""

from __future__ import annotations


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc; elsewhere nothing).

    The first call also fixes glibc's mmap threshold at 16 MB: by default it rises (up to 32 MB)
    each time a large tensor is freed, after which tensors of camera-feature size (25 MB at
    1600x640) come from the heap and their pages stay resident once freed. At 1600x640 that
    kept 50-100 MB of freed features resident between phases, counted again in every forked
    figure worker. Every call then trims the heap (``malloc_trim``). Called between phases,
    before the largest allocations."""
    global _LIBC
    if _LIBC is None:
        _LIBC = _glibc()
        if _LIBC:
            _LIBC.mallopt(_M_MMAP_THRESHOLD, 16 * 2 ** 20)
    if _LIBC:
        _LIBC.malloc_trim(0)


def _glibc():
    """glibc through ctypes when this process uses it, else False."""
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else False
    except OSError:
        return False


_M_MMAP_THRESHOLD = -3   # glibc malloc.h
_LIBC = None
