"""The body guard: what a request must get past before any handler reads its body.

Audited weak spots it closes: a JSON route read a whole 300 MB body into memory before it
checked the API key (FastAPI parses declared bodies before running dependencies), and a body
sent at one byte a second, or promised by Content-Length and never sent, held the request
(and its upload file) forever.

For every request with a body, in this order:

1. **The key.** Under ``/v1/``, with keys configured, a missing or unknown key is answered
   401 at once; not a byte of the body is read.
2. **The size.** A Content-Length over the route's limit is answered 413 at once: uploads
   (``POST /v1/videos``, multipart) may be ``max_upload_mb`` plus the form's overhead, every
   other body 64 KiB (``body_too_large``). A JSON body is read here, up to its limit, and
   handed on whole; an upload streams on to its handler (which stops it at ``max_upload_mb``).
3. **One tenant's share.** At most ``max_uploads_per_tenant`` uploads of one tenant stream in
   at once (per API process); one more is 429 ``rate_limited``, other tenants are unaffected.
4. **The pace.** No bytes for ``body_idle_s``, or on average fewer than ``body_min_rate_bps``
   once ``body_idle_s`` has passed, is answered 408 ``request_timeout``; an upload's partial
   file is removed by its handler as for any other failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.deps import tenant_of
from app.errors import ApiError, ErrorCode
from app.uploads import BODY_OVERHEAD_BYTES, too_large
from settings import Settings

log = logging.getLogger(__name__)

MAX_JSON_BODY = 64 * 1024
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


class _Pace:
    """Reads body messages, failing a body that stalls or crawls (step 3 above)."""

    def __init__(self, receive: Receive, settings: Settings) -> None:
        self.receive = receive
        self.idle_s = settings.body_idle_s
        self.min_rate = settings.body_min_rate_bps
        self.began = time.monotonic()
        self.bytes = 0

    async def __call__(self) -> Message:
        try:
            message = await asyncio.wait_for(self.receive(), self.idle_s)
        except TimeoutError:
            raise ApiError(
                ErrorCode.REQUEST_TIMEOUT,
                f"no part of the body arrived for {self.idle_s:g} s",
            ) from None
        if message["type"] == "http.request":
            self.bytes += len(message.get("body", b""))
            elapsed = time.monotonic() - self.began
            crawling = elapsed > self.idle_s and self.bytes / elapsed < self.min_rate
            if message.get("more_body", False) and crawling:
                raise ApiError(
                    ErrorCode.REQUEST_TIMEOUT,
                    f"the body arrives too slowly ({self.bytes / elapsed:.0f} bytes/s;"
                    f" at least {self.min_rate} are needed)",
                )
        return message


class BodyGuard:
    """ASGI middleware: the key, the size and the pace of every request body (module doc)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.uploading: Counter[str] = Counter()  # uploads streaming in now, per tenant

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        tenant = None
        try:
            if scope["path"].startswith("/v1/"):
                authorization = headers.get(b"authorization", b"").decode("latin-1")
                tenant = tenant_of(authorization, scope["app"].state.tenants)
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            upload = (
                scope["method"] == "POST"
                and scope["path"].rstrip("/") == "/v1/videos"
                and kind == b"multipart/form-data"
            )
            limit = self.settings.max_upload_bytes + BODY_OVERHEAD_BYTES if upload else None
            declared = headers.get(b"content-length", b"").decode("latin-1")
            if declared.isdigit() and int(declared) > (limit or MAX_JSON_BODY):
                raise too_large(self.settings.max_upload_bytes) if upload else _json_too_large()
            pace = _Pace(receive, self.settings)
            if upload:
                await self._upload(scope, pace, send, tenant or "")
                return
            body = await _whole(pace)
        except ApiError as error:
            await send_error(scope, send, error, close=True)
            return
        except ClientDisconnect:
            log.info("client went away mid-body: %s %s", scope["method"], scope["path"])
            return
        await self.app(scope, _replay(body, receive), send)

    async def _upload(self, scope: Scope, receive: Receive, send: Send, tenant: str) -> None:
        """Streams an upload on to its handler (which answers errors from ``receive`` and
        removes its partial file), at most ``max_uploads_per_tenant`` per tenant at once."""
        limit = self.settings.max_uploads_per_tenant
        if self.uploading[tenant] >= limit:
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"{limit} uploads of yours are arriving already; send this one when one ends",
                headers={"Retry-After": "5"},
            )
        self.uploading[tenant] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.uploading[tenant] -= 1
            if not self.uploading[tenant]:
                del self.uploading[tenant]


def _json_too_large() -> ApiError:
    return ApiError(
        ErrorCode.BODY_TOO_LARGE, f"the body is over {MAX_JSON_BODY // 1024} KiB (JSON bodies)"
    )


async def _whole(pace: _Pace) -> bytes:
    """The body, read here up to MAX_JSON_BODY bytes."""
    body = bytearray()
    while True:
        message = await pace()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        body += message.get("body", b"")
        if len(body) > MAX_JSON_BODY:
            raise _json_too_large()
        if not message.get("more_body", False):
            return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body read here, then waits for a disconnect."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def send_error(scope: Scope, send: Send, error: ApiError, *, close: bool = False) -> None:
    """The error's JSON response, sent straight from an ASGI middleware; ``close``: the body
    was not (wholly) read, so the connection is not kept."""
    request_id = scope.get("state", {}).get("request_id", "-")
    payload = json.dumps(error.body(request_id)).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
