"""Worker processes started before a command's heavy imports, running the calls it submits.

A command that writes figures starts a :func:`call_pool` first thing, before it imports torch:
its first worker imports what the calls will need (``preload``: matplotlib and the plot
modules, a small figure drawn to load the fonts) on the second core while the command imports
torch and computes, then forks the other workers with all of that already loaded. The command
submits picklable calls (``submit(func, *args)``: save this deferred figure there) as their data
becomes ready; whichever worker is free runs the next one, in submission order. The parent
itself never needs matplotlib.

Protocol: each call is pickled and appended to an anonymous memory file (``memfd``) that the
workers share; its ``(offset, length)`` goes as one 16-byte message on a pipe every worker reads.
Writes of at most ``PIPE_BUF`` bytes to a pipe are atomic and every message has the same size,
so each 16-byte read takes exactly one call and no call is taken twice. :meth:`CallPool.close`
closes the pipe (the workers drain it and exit) and waits for them; a failed call's message
(``Type: text``) comes back on an error pipe and is raised there as ``RuntimeError``.

The workers run in a process group of their own: a terminal's Ctrl-C reaches the command only,
which kills the whole group when it fails or is interrupted (:meth:`CallPool.abort`), so no
worker goes on writing into a folder that is being removed. A worker that finds the pipe closed
(the command ended, or was killed) exits.

With one worker (``AQR_FIGURE_WORKERS=1``, a one-CPU machine) or without ``fork``/``memfd``
the pool runs each call inline, in :meth:`CallPool.submit`.
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any, Callable, Sequence

_MESSAGE = struct.Struct("<QQ")  # (offset, length) of one pickled call in the memory file
_ERROR_BYTES = 4000  # under PIPE_BUF: one worker's error message is written whole


class CallPool:
    """Calls run by pre-forked workers (see the module docstring); use :func:`call_pool`."""

    def __init__(self, workers: int, preload: Sequence[str] = ()):
        self.workers = workers
        self._leader: int | None = None
        self._calls = self._errors = self._memory = -1
        self._end = 0
        if workers > 1 and hasattr(os, "fork") and hasattr(os, "memfd_create"):
            self._start(list(preload))

    @property
    def inline(self) -> bool:
        """True when calls run in this process (one worker, or no fork/memfd here)."""
        return self._leader is None

    def _start(self, preload: list[str]) -> None:
        self._memory = os.memfd_create("aqr-calls", 0)
        read_calls, self._calls = os.pipe()
        self._errors, write_errors = os.pipe()
        pid = os.fork()
        if pid == 0:  # the leader: never returns into the command
            code = 1
            try:
                os.close(self._calls)
                os.close(self._errors)
                code = _lead(self.workers, preload, read_calls, write_errors, self._memory)
            finally:
                os._exit(code)
        try:  # here as well as in the leader: the group exists before either goes on
            os.setpgid(pid, pid)
        except OSError:
            pass
        self._leader = pid
        os.close(read_calls)
        os.close(write_errors)

    def submit(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func(*args)`` in a worker (inline when :attr:`inline`); ``func`` and ``args``
        must pickle (a module-level function and plain data)."""
        if self._leader is None:
            func(*args)
            return
        data = pickle.dumps((func, args), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(data)
        offset = self._end
        while view:
            view = view[os.pwrite(self._memory, view, offset + len(data) - len(view)):]
        self._end += len(data)
        try:
            os.write(self._calls, _MESSAGE.pack(offset, len(data)))
        except BrokenPipeError:  # every worker has exited: one failed (close() says why)
            self.close()
            raise RuntimeError("figure workers exited early") from None

    def close(self) -> None:
        """Wait until every submitted call has run; raise ``RuntimeError`` with the workers'
        messages if any failed. Idempotent."""
        if self._leader is None:
            return
        if self._calls >= 0:
            os.close(self._calls)
            self._calls = -1
        _, status = os.waitpid(self._leader, 0)  # interrupted here: abort() still kills them
        self._leader = None
        message = _read_all(self._errors)
        self._release()
        if message or os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError("saving figures failed: " + (message or f"worker status {status}"))

    def abort(self) -> None:
        """Kill every worker and reap the leader: the run is failing or was interrupted, its
        remaining calls are not wanted. Idempotent."""
        import signal

        if self._leader is None:
            return
        pid, self._leader = self._leader, None
        for kill in (os.killpg, os.kill):  # the group; the leader even if it has none yet
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        if self._calls >= 0:
            os.close(self._calls)
            self._calls = -1
        self._release()

    def _release(self) -> None:
        for fd in (self._errors, self._memory):
            if fd >= 0:
                os.close(fd)
        self._errors = self._memory = -1

    def __enter__(self) -> "CallPool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def call_pool(workers: int | None = None, preload: Sequence[str] = ()) -> CallPool:
    """A :class:`CallPool` of ``workers`` processes (default :func:`aqr_cli.io.atomic.figure_workers`);
    ``preload``: ``"module"`` to import or ``"module:function"`` to call in the first worker
    before it forks the others. Start it before heavy imports; leave it (``with pool:``, or
    :meth:`~CallPool.close`) before the output it writes is committed, and inside whatever
    removes that output on failure: leaving with an exception kills the workers first."""
    from aqr_cli.io.atomic import figure_workers

    return CallPool(figure_workers() if workers is None else max(1, int(workers)), preload)


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").strip()


def _lead(workers: int, preload: list[str], calls: int, errors: int, memory: int) -> int:
    """The first worker: its own process group, the preloads, then ``workers - 1`` forks of
    itself; all run calls until the pipe is drained. Exit code 0 when every call ran."""
    import gc
    import importlib
    import signal

    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for name in preload:
            module, _, func = name.partition(":")
            loaded = importlib.import_module(module)
            if func:
                getattr(loaded, func)()
    except Exception:  # noqa: BLE001 - a preload is only a head start; the calls import for real
        pass
    gc.collect()
    gc.freeze()  # the preloaded modules: never scanned again, never copied by a collection
    children = []
    for _ in range(workers - 1):
        pid = os.fork()
        if pid == 0:
            os._exit(0 if _serve(calls, errors, memory) else 1)
        children.append(pid)
    ok = _serve(calls, errors, memory)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        ok = ok and os.waitstatus_to_exitcode(status) == 0
    return 0 if ok else 1


def _serve(calls: int, errors: int, memory: int) -> bool:
    """Run calls until the pipe is closed and drained, or this process's parent (the command,
    or the first worker) has died; False (after reporting it) when one failed."""
    parent = os.getppid()
    while os.getppid() == parent and len(data := os.read(calls, _MESSAGE.size)) == _MESSAGE.size:
        offset, length = _MESSAGE.unpack(data)
        try:
            payload = _pread(memory, length, offset)
            func, args = pickle.loads(payload)
            func(*args)
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            try:
                os.write(errors, f"{type(e).__name__}: {e}".encode()[:_ERROR_BYTES])
            except OSError:
                pass
            return False
    return True


def _pread(fd: int, length: int, offset: int) -> bytes:
    parts, got = [], 0
    while got < length:
        chunk = os.pread(fd, length - got, offset + got)
        if not chunk:
            raise EOFError("call payload truncated")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)
