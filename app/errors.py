"""The API's error vocabulary: every code a client can see, and its HTTP status, in one place.

Every error response has one shape::

    {"error": {"code": "video_too_long", "message": "...", "request_id": "..."}}

Handlers raise :class:`ApiError` with a code from :class:`ErrorCode`; they never invent codes or
statuses. The media layer's codes (models.media.MediaErrorCode) are part of this vocabulary,
so a file refused by the worker and one refused at upload carry the same code.
"""

from __future__ import annotations

from enum import StrEnum
from http import HTTPStatus

from pydantic import BaseModel, Field

from models.media import MediaError, MediaErrorCode


class ErrorCode(StrEnum):
    """Stable machine-readable codes. Never rename one: clients match on them."""

    # the request itself
    UNAUTHORIZED = "unauthorized"  # missing or unknown API key
    NOT_FOUND = "not_found"  # no such route
    METHOD_NOT_ALLOWED = "method_not_allowed"
    VIDEO_NOT_FOUND = "video_not_found"  # unknown id, expired, or another tenant's
    JOB_NOT_FOUND = "job_not_found"
    VALIDATION_ERROR = "validation_error"  # a field is missing or has a bad value
    INVALID_JSON = "invalid_json"  # the body is not JSON
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # neither multipart nor JSON
    MISSING_FILE = "missing_file"  # multipart without a `file` part
    EMPTY_FILE = "empty_file"  # zero bytes
    FILE_TOO_LARGE = "file_too_large"  # over max_upload_mb (stopped while streaming)
    BODY_TOO_LARGE = "body_too_large"  # a JSON body over 64 KiB
    REQUEST_TIMEOUT = "request_timeout"  # the body stopped arriving, or came too slowly
    # fetching {"url": ...}
    URL_NOT_ALLOWED = "url_not_allowed"  # not http(s), or a private address
    FETCH_FAILED = "fetch_failed"  # unreachable, or the server answered with an error
    FETCH_TIMEOUT = "fetch_timeout"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"  # the key came with a different request
    # state
    VIDEO_NOT_READY = "video_not_ready"  # questions need the video's features
    DIRECT_UPLOAD_UNAVAILABLE = "direct_upload_unavailable"  # the store is a local folder
    UPLOAD_NOT_PENDING = "upload_not_pending"  # not a direct upload, or completed already
    UPLOAD_INCOMPLETE = "upload_incomplete"  # parts missing or of the wrong size
    UPLOAD_SIZE_MISMATCH = "upload_size_mismatch"  # the stored bytes are not the size declared
    VIDEO_FAILED = "video_failed"  # the video could not be captioned: no questions
    TRACK_NOT_FOUND = "track_not_found"  # a caption track the video does not have
    JOB_FINISHED = "job_finished"  # cancel of a job that already ended
    # capacity
    QUEUE_FULL = "queue_full"  # the server's queue is full
    TENANT_QUEUE_FULL = "tenant_queue_full"  # this tenant's own waiting jobs are at its limit
    RATE_LIMITED = "rate_limited"
    REDIS_UNAVAILABLE = "redis_unavailable"
    STORE_FULL = "store_full"  # Redis reached its memory limit: nothing new can be stored
    STORAGE_UNAVAILABLE = "storage_unavailable"  # the object store (S3) failed or is unreachable
    NOT_READY = "not_ready"  # /readyz: no worker has its model loaded
    INTERNAL_ERROR = "internal_error"
    # how a job can end (in a job's `error`, never as an HTTP status of their own)
    WORKER_LOST = "worker_lost"  # the worker died mid-job, and retries were used up
    JOB_TIMEOUT = "job_timeout"
    CANCELED = "canceled"
    MODEL_ERROR = "model_error"  # the model failed on an accepted file (a bug: see logs)


STATUS: dict[str, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.VIDEO_NOT_FOUND: 404,
    ErrorCode.JOB_NOT_FOUND: 404,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.MISSING_FILE: 422,
    ErrorCode.EMPTY_FILE: 422,
    ErrorCode.FILE_TOO_LARGE: 413,
    ErrorCode.BODY_TOO_LARGE: 413,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.URL_NOT_ALLOWED: 422,
    ErrorCode.FETCH_FAILED: 422,
    ErrorCode.FETCH_TIMEOUT: 422,
    ErrorCode.TOO_MANY_REDIRECTS: 422,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 422,
    ErrorCode.VIDEO_NOT_READY: 409,
    ErrorCode.DIRECT_UPLOAD_UNAVAILABLE: 409,
    ErrorCode.UPLOAD_NOT_PENDING: 409,
    ErrorCode.UPLOAD_INCOMPLETE: 409,
    ErrorCode.UPLOAD_SIZE_MISMATCH: 422,
    ErrorCode.TRACK_NOT_FOUND: 404,
    ErrorCode.VIDEO_FAILED: 409,
    ErrorCode.JOB_FINISHED: 409,
    ErrorCode.QUEUE_FULL: 429,
    ErrorCode.TENANT_QUEUE_FULL: 429,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.REDIS_UNAVAILABLE: 503,
    ErrorCode.STORE_FULL: 507,
    ErrorCode.STORAGE_UNAVAILABLE: 503,
    ErrorCode.NOT_READY: 503,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.WORKER_LOST: 500,
    ErrorCode.JOB_TIMEOUT: 500,
    ErrorCode.CANCELED: 409,
    ErrorCode.MODEL_ERROR: 500,
    # The file is not a video we can read at all: the media type is wrong.
    MediaErrorCode.NOT_A_VIDEO: 415,
    MediaErrorCode.UNSUPPORTED_CONTAINER: 415,
    MediaErrorCode.UNSUPPORTED_CODEC: 415,
    MediaErrorCode.NO_VIDEO_STREAM: 415,
    # A video, but not one we accept or can decode.
    MediaErrorCode.CORRUPT_MEDIA: 422,
    MediaErrorCode.VIDEO_TOO_LONG: 422,
    MediaErrorCode.RESOLUTION_TOO_LARGE: 422,
    MediaErrorCode.FRAME_RATE_TOO_HIGH: 422,
    MediaErrorCode.TOO_MANY_FRAMES: 422,
    MediaErrorCode.DECODE_TIMEOUT: 422,
    MediaErrorCode.DECODER_CRASHED: 422,
    MediaErrorCode.FILE_NOT_FOUND: 500,  # a stored upload went missing: our fault
}


# The body's models live here so that the OpenAPI schema documents the one error shape.
class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str = Field(description="Stable machine-readable code (see app/errors.py).")
    message: str = Field(description="A sentence for people.")
    request_id: str = Field(description="Also in the X-Request-ID header; quote it in reports.")


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """An error answered to the client with its code's HTTP status.

    Args:
        code: An :class:`ErrorCode` or a media layer code.
        message: A sentence for the person calling the API: what was wrong, what to do.
        headers: Extra response headers (``Retry-After`` for 429 and 503).
    """

    def __init__(self, code: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        if code not in STATUS:
            raise ValueError(f"{code!r} is not in the API's error vocabulary (app/errors.py)")
        super().__init__(code, message)
        self.code = str(code)
        self.message = message
        self.headers = headers or {}

    @property
    def status(self) -> int:
        """The HTTP status of this error's code."""
        return STATUS[self.code]

    @classmethod
    def from_media(cls, error: MediaError) -> ApiError:
        """The API error for a media layer error (same code, same message)."""
        return cls(error.code.value, error.message)

    def body(self, request_id: str) -> dict[str, dict[str, str]]:
        """The JSON body of the response."""
        return {"error": {"code": self.code, "message": self.message, "request_id": request_id}}


def error_responses(*codes: str) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses=`` for a route: each status it can answer, and the codes behind it."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(STATUS[code], []).append(str(code))
    return {
        status: {
            "model": ErrorBody,
            "description": f"{HTTPStatus(status).phrase}: " + ", ".join(f"`{c}`" for c in found),
        }
        for status, found in sorted(by_status.items())
    }


def redis_unavailable() -> ApiError:
    """The answer while Redis does not answer (down, restarting, stalled)."""
    return ApiError(
        ErrorCode.REDIS_UNAVAILABLE,
        "the job store is not reachable; try again shortly",
        headers={"Retry-After": "5"},
    )
