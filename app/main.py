"""The FastAPI app: wiring only (lifespan, middleware, error handlers, routers)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError as RedisOutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import janitor
from app.bodies import BodyGuard
from app.connections import QuietAcceptErrors
from app.errors import ApiError, ErrorCode, redis_unavailable
from app.routes import direct, health, jobs, videos
from app.services import Services
from settings import Settings, get_settings
from storage import S3Storage, StorageError
from vidcap import __version__

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

STATIC_DIR = Path(__file__).parent / "static"


# The page loads nothing from elsewhere (the service runs offline): only its own files, the
# API, and blob: URLs of videos and captions fetched with the API key.
def page_headers(store_origin: str | None = None) -> dict[str, str]:
    """The page's headers. With an S3 store the page plays media from it (the API redirects
    there) and sends direct uploads to it, so its origin joins media-src and connect-src."""
    extra = f" {store_origin}" if store_origin else ""
    return {
        "Cache-Control": "no-cache",
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
            f"media-src 'self' blob:{extra}; connect-src 'self'{extra}; object-src 'none'; "
            "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


class PageFiles(StaticFiles):
    """The page's scripts and styles: revalidated on every load (ETag), so an upgrade shows."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


class RequestIdMiddleware:
    """Gives every request an id (the client's ``X-Request-ID`` if sane) and echoes it, and
    tells browsers never to sniff a response into another type (``nosniff``).

    A plain ASGI middleware: Starlette's BaseHTTPMiddleware would cost every poll a task.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode(
            "latin-1"
        )
        request_id = given if REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                # No response is ever to be sniffed into another type (an upload as HTML).
                if not any(k.lower() == b"x-content-type-options" for k, _ in headers):
                    headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def _error(request: Request, error: ApiError) -> JSONResponse:
    request_id = getattr(request.state, "request_id", "-")
    return JSONResponse(error.body(request_id), status_code=error.status, headers=error.headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _error(request, exc)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problem = exc.errors()[0]
    if problem.get("type") == "json_invalid":
        return _error(request, ApiError(ErrorCode.INVALID_JSON, "the body is not valid JSON"))
    where = ".".join(str(p) for p in problem["loc"] if p != "body") or "body"
    message = f"{where}: {problem['msg']}"
    return _error(request, ApiError(ErrorCode.VALIDATION_ERROR, message))


def _allowed(request: Request) -> str:
    """Every method the request's path takes. (Starlette's own Allow names only the first
    route that matched the path: "POST" for /v1/videos, which takes GET too.)"""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = ApiError(
            ErrorCode.METHOD_NOT_ALLOWED,
            "this path does not take that method (see the Allow header)",
            headers={"Allow": _allowed(request)},
        )
    elif exc.status_code == 404:
        error = ApiError(ErrorCode.NOT_FOUND, "no such path: see /docs")
    elif exc.status_code == 400:  # FastAPI's "error parsing the body" (e.g. nested too deep)
        error = ApiError(ErrorCode.INVALID_JSON, "the body is not valid JSON")
    else:
        error = ApiError(ErrorCode.VALIDATION_ERROR, str(exc.detail))
    return _error(request, error)


async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis unavailable: %s", exc)
    return _error(request, redis_unavailable())


async def _store_full(request: Request, exc: Exception) -> JSONResponse:
    log.warning("Redis is out of memory: %s", exc)
    error = ApiError(
        ErrorCode.STORE_FULL,
        "the job store is full (Redis reached its memory limit): nothing was changed; try again"
        " later",
        headers={"Retry-After": "60"},
    )
    return _error(request, error)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # Nobody is left to read an answer; the upload's partial file is already removed. Worth a
    # line, not an ERROR with tracebacks (and a 500 handler would have Starlette re-raise it).
    log.info(
        "client went away mid-request: %s %s (request %s)",
        request.method,
        request.url.path,
        getattr(request.state, "request_id", "-"),
    )
    return Response(status_code=499)  # nginx's "client closed request"; never delivered


async def _storage_down(request: Request, exc: Exception) -> JSONResponse:
    log.warning("object store failed: %s", exc)
    error = ApiError(
        ErrorCode.STORAGE_UNAVAILABLE,
        "the video store is not reachable or refused the operation; try again shortly",
        headers={"Retry-After": "5"},
    )
    return _error(request, error)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    request_id = getattr(request.state, "request_id", "-")
    message = f"an internal error occurred; quote request id {request_id} when reporting it"
    return _error(request, ApiError(ErrorCode.INTERNAL_ERROR, message))


async def _janitor(services: Services) -> None:
    while True:
        try:
            await asyncio.to_thread(
                janitor.sweep, services.storage, services.store, services.settings.data_dir
            )
        except Exception as e:  # Redis restarting, a volume hiccup: try again next time
            log.warning("janitor: %s", e)
        await asyncio.sleep(services.settings.janitor_interval_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The vidcap API app, for ``settings`` (default: from the environment)."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        asyncio.get_running_loop().set_exception_handler(QuietAcceptErrors())
        services = Services.connect(settings)
        services.events.start()
        (settings.data_dir / "uploads").mkdir(parents=True, exist_ok=True)
        if isinstance(services.storage, S3Storage):  # a fresh SeaweedFS has no bucket yet
            try:
                await asyncio.to_thread(services.storage.ensure_bucket)
            except StorageError as e:  # /readyz says so until the store answers
                log.error("%s", e)
        log.info("videos are stored in the %s", services.storage.describe())
        app.state.services = services
        app.state.tenants = settings.tenants()
        tasks = [
            asyncio.create_task(services.reaper(), name="reaper"),
            asyncio.create_task(_janitor(services), name="janitor"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await services.close()

    app = FastAPI(
        title="vidcap",
        version=__version__,
        summary="Upload videos; get captions, timestamped segment captions and answers.",
        description=(
            "Authenticate with `Authorization: Bearer KEY`. Every error has the body "
            '`{"error": {"code", "message", "request_id"}}`.'
        ),
        lifespan=lifespan,
    )
    app.add_middleware(BodyGuard, settings=settings)  # innermost: bodies are for routes
    app.add_middleware(jobs.PollFastPath)  # inside RequestIdMiddleware: polls get an id too
    app.add_middleware(RequestIdMiddleware)
    handlers: dict[Any, Any] = {
        ApiError: _api_error,
        RequestValidationError: _validation_error,
        HTTPException: _http_error,
        RedisConnectionError: _redis_down,
        RedisTimeoutError: _redis_down,
        RedisOutOfMemoryError: _store_full,
        StorageError: _storage_down,
        ClientDisconnect: _client_gone,
        Exception: _unexpected,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)
    for router in (direct.uploads_router, direct.router, videos.router, jobs.router, health.router):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> FileResponse:
        """The web page: upload, watch with captions, ask questions (app/static/)."""
        services: Services = request.app.state.services
        headers = page_headers(services.storage.link_origin())
        return FileResponse(STATIC_DIR / "index.html", headers=headers)

    app.mount("/static", PageFiles(directory=STATIC_DIR), name="static")

    return app
