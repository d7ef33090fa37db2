"""The HTTP connection layer's defences (uvicorn's h11 protocol, with deadlines and a bound).

The audit found that uvicorn waits forever for a request head: 4,000 half-open connections
were never closed, and 2 x 10,000 idle ones used up the API's file descriptors, after which
``/healthz`` timed out and every refused accept logged a traceback. Here:

- **A deadline for the request head.** A connection must deliver a whole request head within
  ``head_timeout_s`` of opening (or of its previous response ending); otherwise it is closed.
  This covers idle connections that never send a byte and heads sent a byte at a time.
  (Bodies have their own pace rules: :mod:`app.bodies`.)
- **A bound on open connections.** Past ``max_connections`` a new connection is closed at
  once, so the process keeps descriptors for the ones it serves.
- **Quiet accept errors.** When the process does run out of descriptors, asyncio reports each
  failed accept; those reports are logged once per interval with a count.
- :func:`raise_file_limit` lifts the soft descriptor limit to the hard one at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

ACCEPT_LOG_EVERY_S = 10.0


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and a connection bound.

    The class attributes are set by :func:`protocol_class` from the settings.
    """

    head_timeout_s: float = 10.0
    max_connections: int = 10_000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            transport.abort()  # no descriptors spent on one more connection
            return
        self._arm_head()

    def _arm_head(self) -> None:
        self._disarm_head()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_late)

    def _disarm_head(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.abort()  # no whole request head in time: nothing to answer

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm_head()  # the head is in; the body has its own rules

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head()  # the next request's head gets the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head()
        super().connection_lost(exc)


def protocol_class(head_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's ``http=`` with these limits."""
    return type(
        "VidcapH11Protocol",
        (GuardedH11Protocol,),
        {"head_timeout_s": head_timeout_s, "max_connections": max_connections},
    )


def raise_file_limit() -> int:
    """Lifts this process's soft limit of open files to its hard limit; returns the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("could not raise the open-file limit from %d: %s", soft, e)
    return soft


class QuietAcceptErrors:
    """A loop exception handler: failed accepts (out of descriptors) are logged once per
    ``every_s`` with a count; everything else goes to the default handler."""

    def __init__(self, every_s: float = ACCEPT_LOG_EVERY_S) -> None:
        self.every_s = every_s
        self.last = 0.0
        self.count = 0

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if "accept" not in message:
            loop.default_exception_handler(context)
            return
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.every_s:
            log.error(
                "%d connection(s) could not be accepted in the last %.0f s: %s (%s)",
                self.count,
                self.every_s,
                message,
                context.get("exception"),
            )
            self.last, self.count = now, 0
