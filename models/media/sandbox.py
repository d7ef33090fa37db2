"""Run untrusted decoding in a child process with a wall-clock timeout and a memory limit.

A crafted or broken file can make FFmpeg hang, crash or allocate without bound. Each call
here runs in a fresh child: a hang becomes ``decode_timeout``, a crash or an exhausted memory
budget becomes ``decoder_crashed``, and the calling process (an API server or a worker holding
a model on the GPU) carries on. The child is always reaped before the call returns.

Children come from a ``forkserver``: a small server process started once, with PyAV and numpy
imported, that forks a child per call. Forking the caller itself is unsafe once it has threads
or CUDA state (PyTorch, RQ heartbeats); spawning a fresh interpreter per call costs ~0.3 s.
The children do not re-run the caller's ``__main__`` module (multiprocessing's default): a
script that imported torch would otherwise import it again in every decode child (seconds).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import resource
import signal
import sys
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import context, popen_forkserver
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from models.media.errors import MediaError, MediaErrorCode

log = logging.getLogger(__name__)

T = TypeVar("T")

_CONTEXT = mp.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["models.media._pyav"])
# What the child is told the caller's main module is: nothing to re-import.
_NO_MAIN = types.ModuleType("__main__")


class _Popen(popen_forkserver.Popen):
    """Starts a forkserver child without the caller's ``__main__`` in its preparation data.

    multiprocessing makes each child import the parent's main script (as ``__mp_main__``) so
    that functions defined there can be unpickled. Our targets live in importable modules, so
    the child skips it; the swap lasts only while the launch data is pickled.
    """

    def _launch(self, process_obj: Any) -> None:
        real = sys.modules["__main__"]
        sys.modules["__main__"] = _NO_MAIN
        try:
            super()._launch(process_obj)  # type: ignore[misc]  # private, absent from typeshed
        finally:
            sys.modules["__main__"] = real


class _Process(context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> _Popen:
        return _Popen(process_obj)


@dataclass(frozen=True)
class ChildStats:
    """What the child process used.

    Attributes:
        wall_s: Seconds from start to result, as seen by the parent.
        peak_rss_mb: The child's peak resident memory in MiB.
    """

    wall_s: float
    peak_rss_mb: float


def _child(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...], memory_mb: int) -> None:
    if memory_mb > 0:
        # RLIMIT_AS counts address space that threads and allocators reserve but never touch,
        # and trips long before real use; RLIMIT_DATA counts private writable memory.
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    try:
        value = fn(*args)
        reply: tuple[Any, ...] = ("ok", value, _peak_rss_mb())
    except MediaError as e:
        reply = ("media_error", e.code.value, e.message)
    except ValueError as e:
        reply = ("value_error", str(e))
    except MemoryError:
        reply = (
            "media_error",
            MediaErrorCode.DECODER_CRASHED.value,
            f"decoding needed more than its memory limit of {memory_mb} MB",
        )
    except BaseException as e:
        reply = ("exception", f"{type(e).__name__}: {e}", traceback.format_exc())
    try:
        conn.send(reply)
    except MemoryError:
        conn.send(("media_error", MediaErrorCode.DECODER_CRASHED.value, "out of memory"))
    finally:
        conn.close()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_isolated(
    fn: Callable[..., T], *args: Any, timeout_s: float, memory_mb: int = 0
) -> tuple[T, ChildStats]:
    """Call ``fn(*args)`` in a child process and return its result.

    Args:
        fn: A module-level function (it is pickled by reference).
        *args: Picklable arguments.
        timeout_s: Wall-clock limit; the child is killed when it runs out.
        memory_mb: Memory limit for the child (0: none).

    Returns:
        ``fn``'s return value, and what the child used.

    Raises:
        MediaError: The child's own media errors, ``decode_timeout`` or ``decoder_crashed``.
        ValueError: ``fn`` rejected its arguments.
        RuntimeError: ``fn`` raised something else (a bug, not a bad file).
    """
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _Process(target=_child, args=(sender, fn, args, memory_mb), daemon=True)
    started = time.perf_counter()
    try:
        child.start()
        sender.close()  # the parent keeps only its end, so a dead child reads as EOF
        if not receiver.poll(timeout_s):
            raise MediaError(
                MediaErrorCode.DECODE_TIMEOUT,
                f"decoding took longer than {timeout_s:g} s and was stopped",
            )
        try:
            reply = receiver.recv()
        except EOFError:
            child.join(5)
            raise MediaError(MediaErrorCode.DECODER_CRASHED, _death(child.exitcode)) from None
    finally:
        if child.is_alive():
            child.kill()
        if child.pid is not None:
            child.join()
        receiver.close()
        child.close()
    wall = time.perf_counter() - started
    kind = reply[0]
    if kind == "ok":
        return reply[1], ChildStats(wall_s=wall, peak_rss_mb=reply[2])
    if kind == "media_error":
        raise MediaError(reply[1], reply[2])
    if kind == "value_error":
        raise ValueError(reply[1])
    log.error("media child failed: %s\n%s", reply[1], reply[2])
    raise RuntimeError(f"media child failed: {reply[1]}")


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (possibly out of memory)" if name == "SIGKILL" else ""
        return f"the decoder crashed ({name}){hint}"
    return f"the decoder exited unexpectedly (exit code {exitcode})"
