"""The process's memory between the phases of a large analysis: freed tensors handed back to the
system before the next phase allocates, and before figure workers are forked (they inherit every
resident page)."""

from __future__ import annotations


LARGE = 32 * 2 ** 20   # bytes of decoder memory from which releasing pays (1600x640: 58 MB)


def memory_bytes(cfg, batch_size: int) -> int:
    """Bytes of the float32 decoder memory ``[F, B, C]`` of a configuration: the size of the
    largest tensors of every phase (features, keys, values)."""
    h, w = cfg.bev_shape
    v, ph, pw = cfg.pers_shape
    return 4 * int(batch_size) * (h * w + v * ph * pw) * int(cfg.hidden_dim)


def release_free_memory(size: int) -> None:
    """Hand the C heap's free pages back to the system (glibc; elsewhere nothing), for a
    workload whose decoder memory takes ``size`` bytes (:func:`memory_bytes`): from
    :data:`LARGE` on. Below it (800x320: 23 MB) the freed pages are few, and trimming them and
    serving tensors from fresh pages cost more time than they keep.

    The first call also fixes glibc's mmap threshold at 16 MB: by default it rises (up to 32 MB)
    each time a large tensor is freed, after which tensors of camera-feature size (25 MB at
    1600x640) come from the heap and their pages stay resident once freed. At 1600x640 that
    kept 50-100 MB of freed features resident between phases, counted again in every forked
    figure worker. Every call then trims the heap (``malloc_trim``). Called between phases,
    before the largest allocations."""
    global _LIBC
    if size < LARGE:
        return
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
