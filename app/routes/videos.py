"""``/v1/videos``: upload (or fetch) a video, list, read, delete it, get captions, ask questions."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse
from pydantic import ValidationError

from app.deps import AdmittedTenantDep, ReaderDep, ServicesDep, TenantDep, link_query
from app.errors import ApiError, ErrorCode, error_responses
from app.fetch import fetch_url
from app.schemas import (
    Captions,
    JobPublic,
    QuestionCreate,
    QuestionList,
    VideoCreated,
    VideoOptions,
    VideoPage,
    VideoPublic,
    VideoUrlCreate,
)
from app.services import Services
from app.subtitles import to_srt, to_vtt
from app.uploads import Received, receive_multipart
from models.media import MediaError, MediaErrorCode, probe
from models.media.preview import PREVIEW_CONTENT_TYPE, PREVIEW_NAME, needs_preview
from settings import Settings
from storage import S3Storage, Storage, StorageError, source_name
from workers.queue import create_job, rq_job_id
from workers.store import (
    IDEMPOTENCY_TTL_S,
    JobState,
    cancel_key,
    idempotency_key,
    job_key,
    new_id,
    now,
    question_idempotency_key,
    questions_key,
    sha_key,
    video_key,
    videos_key,
)

router = APIRouter(prefix="/v1/videos", tags=["videos"])

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, no spaces
UPLOAD_ERRORS = (
    ErrorCode.UNAUTHORIZED,
    ErrorCode.VALIDATION_ERROR,
    ErrorCode.INVALID_JSON,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    ErrorCode.MISSING_FILE,
    ErrorCode.EMPTY_FILE,
    ErrorCode.FILE_TOO_LARGE,
    ErrorCode.URL_NOT_ALLOWED,
    ErrorCode.FETCH_FAILED,
    ErrorCode.FETCH_TIMEOUT,
    ErrorCode.TOO_MANY_REDIRECTS,
    ErrorCode.QUEUE_FULL,
    ErrorCode.RATE_LIMITED,
    MediaErrorCode.NOT_A_VIDEO,
    MediaErrorCode.UNSUPPORTED_CONTAINER,
    MediaErrorCode.UNSUPPORTED_CODEC,
    MediaErrorCode.NO_VIDEO_STREAM,
    MediaErrorCode.CORRUPT_MEDIA,
    MediaErrorCode.VIDEO_TOO_LONG,
    MediaErrorCode.RESOLUTION_TOO_LARGE,
    MediaErrorCode.FRAME_RATE_TOO_HIGH,
)
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        **VideoOptions.model_json_schema()["properties"],
                    },
                }
            },
            "application/json": {"schema": VideoUrlCreate.model_json_schema()},
        },
    }
}


# ---------------------------------------------------------------------------- helpers


def _owned(record: dict[str, Any] | None, tenant: str, code: str, what: str) -> dict[str, Any]:
    # Another tenant's id is answered exactly like an unknown one: ids are not confirmed.
    if record is None or record.get("tenant") != tenant:
        raise ApiError(code, f"no {what} with this id (it may have expired or been deleted)")
    return record


async def load_video(services: Services, tenant: str, video_id: str) -> dict[str, Any]:
    """The tenant's video record, or 404."""
    raw = await services.redis.get(video_key(video_id))
    return _owned(
        None if raw is None else json.loads(raw), tenant, ErrorCode.VIDEO_NOT_FOUND, "video"
    )


async def public_views(services: Services, videos: list[dict[str, Any]]) -> list[VideoPublic]:
    """Public views of video records, with their caption jobs and links."""
    if not videos:
        return []
    ids = [v["caption_job_id"] for v in videos if v["caption_job_id"]]
    raws = (
        cast(list[str | None], await services.redis.mget([job_key(i) for i in ids])) if ids else []
    )
    found = {i: json.loads(raw) for i, raw in zip(ids, raws, strict=True) if raw is not None}
    jobs = [found.get(v["caption_job_id"]) for v in videos]
    pairs = list(zip(videos, jobs, strict=True))
    return await asyncio.to_thread(_views, services.settings, services.storage, pairs)


def _views(
    settings: Settings,
    storage: Storage,
    pairs: list[tuple[dict[str, Any], dict[str, Any] | None]],
) -> list[VideoPublic]:
    """Public views of (video, caption job) records, with their links (in a thread: stats)."""
    key = settings.url_signing_key() if settings.tenants() else None
    views = []
    for video, job in pairs:
        base = f"/v1/videos/{video['id']}"
        # Without API keys there is nothing to sign: the plain paths work.
        query = "" if key is None else link_query(key, video["id"], video["tenant"])
        signed = f"&{query}" if query else ""
        result = (job or {}).get("result") or {}
        tracks = {
            t: f"{base}/captions?format=vtt&track={t}{signed}" for t in available_tracks(result)
        }
        views.append(
            VideoPublic.of(
                video,
                job,
                media_url=f"{base}/media" + (f"?{query}" if query else ""),
                captions_url=f"{base}/captions?format=vtt{signed}",
                tracks=tracks,
                playable=(video["media"] is not None and not needs_preview(video["media"]))
                or storage.exists(f"{video['dir']}/{PREVIEW_NAME}"),
            )
        )
    return views


def _options(fields: dict[str, str]) -> VideoOptions:
    try:
        return VideoOptions.model_validate({k: v for k, v in fields.items() if v != ""})
    except ValidationError as e:
        raise ApiError(ErrorCode.VALIDATION_ERROR, _first_problem(e)) from None


def _first_problem(error: ValidationError) -> str:
    problem = error.errors()[0]
    where = ".".join(str(p) for p in problem["loc"]) or "body"
    return f"{where}: {problem['msg']}"


async def _receive(request: Request, services: Services) -> tuple[Received, VideoOptions]:
    """The uploaded (or fetched) file, in the uploads folder, and the options sent with it."""
    settings = services.settings
    spool = settings.data_dir / "uploads"
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        received = await receive_multipart(request, spool, settings.max_upload_bytes)
        try:
            return received, _options(received.fields)
        except ApiError:
            received.path.unlink(missing_ok=True)
            raise
    if kind == "application/json":
        body = bytearray()  # at most MAX_JSON_BODY: the body guard (app/bodies.py) saw to it
        async for chunk in request.stream():
            body += chunk
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # nested too deep for the parser is not JSON to us
            raise ApiError(ErrorCode.INVALID_JSON, "the body is not valid JSON") from None
        try:
            create = VideoUrlCreate.model_validate(data)
        except ValidationError as e:
            raise ApiError(ErrorCode.VALIDATION_ERROR, _first_problem(e)) from None
        received = await fetch_url(
            str(create.url),
            spool,
            max_bytes=settings.max_upload_bytes,
            timeout_s=settings.fetch_timeout_s,
            max_redirects=settings.fetch_max_redirects,
            allow_private=settings.fetch_allow_private,
        )
        return received, VideoOptions.model_validate(create.model_dump(exclude={"url"}))
    raise ApiError(
        ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        'send the video as multipart/form-data (a `file` field), or JSON {"url": ...}',
    )


def video_record(
    settings: Settings,
    tenant: str,
    video_id: str,
    folder: str,
    name: str,
    filename: str | None,
    size: int,
    options: VideoOptions,
) -> dict[str, Any]:
    """A new video's record (no media facts, sha256, dedupe key or caption job yet)."""
    return {
        "id": video_id,
        "tenant": tenant,
        "filename": filename,
        "size_bytes": size,
        "sha256": None,
        "created_at": now(),
        "media": None,
        "options": {
            **options.model_dump(),
            "segment_seconds": options.segment_seconds or settings.default_segment_s,
        },
        "dir": folder,
        "file": name,
        "dedupe_key": None,
        "caption_job_id": None,
    }


def add_video(services: Services, video: dict[str, Any]) -> None:
    """Writes a video's record and lists it among its tenant's videos (one transaction)."""
    store, tenant = services.store, video["tenant"]
    with store.redis.pipeline() as pipe:
        store.put(video_key(video["id"]), video, pipe)
        pipe.zadd(videos_key(tenant), {video["id"]: video["created_at"]})
        # The index outlives none of its videos: it goes with the newest one.
        pipe.expire(videos_key(tenant), services.settings.retention_s)
        pipe.execute()


def _store_video(
    services: Services,
    tenant: str,
    received: Received,
    options: VideoOptions,
    info: dict[str, Any],
    idempotency: str | None,
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Moves an accepted upload into place and queues its caption job (in a thread).

    Returns:
        The video record, its caption job record, and whether they were created now (False:
        the same bytes and options, or the same Idempotency-Key, were already stored).
    """
    settings, store = services.settings, services.store
    dedupe = sha_key(tenant, received.sha256, options.key())
    video_id = new_id("vid")
    claimed: list[str] = []
    idempotency_ttl = min(IDEMPOTENCY_TTL_S, settings.retention_s)  # never past the video
    for key, ttl in ((idempotency, idempotency_ttl), (dedupe, settings.retention_s)):
        if key is None:
            continue
        try:
            existing = _claim(services, tenant, key, video_id, ttl)
        except BaseException:  # Redis full or gone at the second key: free the first
            _release(services, claimed, video_id)
            raise
        if existing is not None:
            _release(services, claimed, video_id)
            received.path.unlink(missing_ok=True)
            if key == idempotency:
                _same_request(existing[0], dedupe)
            return *existing, False
        claimed.append(key)
    folder = f"videos/{tenant}/{video_id}"
    name = source_name(info["container"])
    video = video_record(
        settings, tenant, video_id, folder, name, received.filename, received.size, options
    )
    video.update(sha256=received.sha256, media=info, dedupe_key=dedupe)
    try:  # a local store renames the spool file; S3 gets it in multipart parts
        services.storage.put_file(f"{folder}/{name}", received.path, move=True)
        job = create_job(
            store, services.queue, settings, kind="caption", tenant=tenant, video=video
        )
        video["caption_job_id"] = job["id"]
        add_video(services, video)
    except BaseException:
        _release(services, claimed, video_id)
        with contextlib.suppress(StorageError):  # else the janitor removes it: no record
            services.storage.delete_prefix(folder + "/")
        raise
    services.metrics.job_enqueued("caption")
    return video, job, True


# How long an upload waits for another upload of the same bytes (or with the same
# Idempotency-Key) to finish storing its video, before taking the key over.
CLAIM_WAIT_S = 2.0


def _claim(
    services: Services, tenant: str, key: str, video_id: str, ttl: int
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Claims a dedupe or idempotency key for ``video_id`` (atomically, SET NX).

    Returns:
        None when the key is now ours; else the usable video (and caption job) that another
        upload stored under it, which this upload answers with instead.
    """
    store = services.store
    deadline = time.monotonic() + CLAIM_WAIT_S
    while not store.redis.set(key, video_id, nx=True, ex=ttl):
        existing = _existing(services, tenant, key)
        if existing is not None:
            return existing
        holder = store.redis.get(key)
        if holder is not None and (
            store.redis.exists(video_key(str(holder))) or time.monotonic() > deadline
        ):
            # Its video failed or was canceled (uploading again tries again), or its upload
            # never finished storing: the key is ours now.
            store.redis.set(key, video_id, ex=ttl)
            return None
        time.sleep(0.02)  # the other upload is storing its video right now
    return None


def _idempotency(header: str | None, key_of: Callable[[str, str], str], tenant: str) -> str | None:
    """The Redis key of a request's ``Idempotency-Key`` header (None without one)."""
    if header is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(header):
        raise ApiError(
            ErrorCode.VALIDATION_ERROR,
            "Idempotency-Key: 1 to 200 printable ASCII characters without spaces",
        )
    return key_of(tenant, header)


def _same_request(video: dict[str, Any], dedupe: str) -> None:
    """An Idempotency-Key seen before must come with the same request (the same bytes and
    options, which is what the dedupe key says), else 422 (IETF Idempotency-Key draft)."""
    if video.get("dedupe_key") != dedupe:
        raise ApiError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "this Idempotency-Key was used for a different upload (other bytes or options):"
            " use a new key for a new upload",
        )


def _release(services: Services, keys: list[str], video_id: str) -> None:
    """Gives up keys claimed for a video that was not stored."""
    for key in keys:
        if services.store.redis.get(key) == video_id:
            services.store.redis.delete(key)


def _existing(
    services: Services, tenant: str, key: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The video (and caption job) a dedupe or idempotency key points to, if still usable."""
    store = services.store
    video_id = store.redis.get(key)
    video = store.video(str(video_id)) if video_id else None
    if video is None or video["tenant"] != tenant:
        return None
    job = store.job(video["caption_job_id"])
    # A failed or canceled video is not reused: uploading it again tries again.
    if job is None or job["state"] in (JobState.FAILED, JobState.CANCELED):
        return None
    return video, job


async def _created(
    services: Services, video: dict[str, Any], job: dict[str, Any], new: bool
) -> JSONResponse:
    (view,) = await asyncio.to_thread(_views, services.settings, services.storage, [(video, job)])
    body = VideoCreated(video=view, job=JobPublic.of(job))
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202 if new else 200,
        headers={"Location": f"/v1/videos/{video['id']}"},
    )


# ---------------------------------------------------------------------------- routes


@router.post(
    "",
    status_code=202,
    response_model=VideoCreated,
    openapi_extra=UPLOAD_BODY,
    responses={
        200: {"model": VideoCreated, "description": "Already stored (same bytes or key)."},
        **error_responses(*UPLOAD_ERRORS),
    },
)
async def create_video(
    request: Request,
    services: ServicesDep,
    tenant: AdmittedTenantDep,
    idempotency_key_header: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Upload a video (multipart `file`) or have the server fetch one (JSON `{"url": ...}`).

    The file is streamed to storage and probed before it is accepted; the answer (202) holds
    the video and the job that captions it. The same bytes with the same options, or a retry
    with the same `Idempotency-Key`, return the stored video and its job (200).
    """
    idempotency = _idempotency(idempotency_key_header, idempotency_key, tenant)
    received, options = await _receive(request, services)
    try:
        if idempotency is not None:  # a retry: the same request gets the same answer
            existing = await asyncio.to_thread(_existing, services, tenant, idempotency)
            if existing is not None:
                _same_request(existing[0], sha_key(tenant, received.sha256, options.key()))
                return await _created(services, *existing, False)
        limits = services.settings.media_limits()
        info = await asyncio.to_thread(probe, received.path, limits=limits)
        video, job, new = await asyncio.to_thread(
            _store_video,
            services,
            tenant,
            received,
            options,
            info.model_dump(mode="json"),
            idempotency,
        )
    except MediaError as e:
        raise ApiError.from_media(e) from None
    finally:
        received.path.unlink(missing_ok=True)  # moved into place, or refused
    return await _created(services, video, job, new)


@router.get("", response_model=VideoPage, responses=error_responses(ErrorCode.UNAUTHORIZED))
async def list_videos(
    services: ServicesDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> VideoPage:
    """Your videos, newest first, with their status; follow `next_cursor` for more."""
    position = None
    if cursor:
        try:
            score, _, video_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition(" ")
            position = (float(score), video_id)
        except ValueError:
            raise ApiError(
                ErrorCode.VALIDATION_ERROR, "cursor: not a cursor from this API"
            ) from None
    videos, after = await asyncio.to_thread(services.store.list_videos, tenant, limit, position)
    next_cursor = None
    if after is not None:
        next_cursor = base64.urlsafe_b64encode(f"{after[0]!r} {after[1]}".encode()).decode()
    return VideoPage(videos=await public_views(services, videos), next_cursor=next_cursor)


@router.get(
    "/{video_id}",
    response_model=VideoPublic,
    responses=error_responses(ErrorCode.UNAUTHORIZED, ErrorCode.VIDEO_NOT_FOUND),
)
async def get_video(video_id: str, services: ServicesDep, tenant: TenantDep) -> VideoPublic:
    """A video: its media facts, status, and caption and segments once ready."""
    video = await load_video(services, tenant, video_id)
    return (await public_views(services, [video]))[0]


def _delete(services: Services, video: dict[str, Any]) -> None:
    """Removes a video's file, features, records and jobs (queued ones leave the queue)."""
    store = services.store
    job_ids = [video["caption_job_id"], *store.redis.lrange(questions_key(video["id"]), 0, -1)]
    job_ids = [j for j in job_ids if j]  # none yet while a direct upload is pending
    with store.redis.pipeline() as pipe:
        for job_id in job_ids:
            job = store.job(str(job_id))
            if job is not None and job["state"] == JobState.RUNNING:
                # It stops at its next stage and, finding no record, writes nothing.
                pipe.set(cancel_key(job["id"]), 1, ex=job["timeout_s"] + 60)
            elif job is not None and job["state"] == JobState.QUEUED:
                services.queue.withdraw(job["tenant"], rq_job_id(job["id"], job["attempts"]), pipe)
            pipe.delete(job_key(str(job_id)))
        pipe.delete(video_key(video["id"]), questions_key(video["id"]))
        pipe.zrem(videos_key(video["tenant"]), video["id"])
        if video.get("dedupe_key") and store.redis.get(video["dedupe_key"]) == video["id"]:
            pipe.delete(video["dedupe_key"])
        pipe.execute()
    pending = video.get("upload") or {}
    if pending.get("upload_id") and isinstance(services.storage, S3Storage):
        services.storage.abort_upload(f"{video['dir']}/{video['file']}", pending["upload_id"])
    # After the records: a failure here leaves objects without a record, which the janitor
    # removes; never a record without its file.
    services.storage.delete_prefix(video["dir"] + "/")


@router.delete(
    "/{video_id}",
    status_code=204,
    responses=error_responses(ErrorCode.UNAUTHORIZED, ErrorCode.VIDEO_NOT_FOUND),
)
async def delete_video(video_id: str, services: ServicesDep, tenant: TenantDep) -> Response:
    """Delete a video: its file, cached features, records, questions and pending jobs."""
    video = await load_video(services, tenant, video_id)
    await asyncio.to_thread(_delete, services, video)
    return Response(status_code=204)


async def _ready(services: Services, video: dict[str, Any]) -> dict[str, Any]:
    """The video's finished caption job, or 409 saying why there is none yet."""
    if video["caption_job_id"] is None:
        raise ApiError(
            ErrorCode.VIDEO_NOT_READY,
            "the video's upload is not complete: send its bytes, then POST "
            f"/v1/videos/{video['id']}/complete",
        )
    raw = await services.redis.get(job_key(video["caption_job_id"]))
    job = None if raw is None else json.loads(raw)
    if job is not None and job["state"] == JobState.SUCCEEDED:
        return cast(dict[str, Any], job)
    if job is None or job["state"] in (JobState.FAILED, JobState.CANCELED):
        reason = (job or {}).get("error") or {"message": "its record expired"}
        raise ApiError(
            ErrorCode.VIDEO_FAILED, f"the video could not be captioned: {reason['message']}"
        )
    raise ApiError(
        ErrorCode.VIDEO_NOT_READY,
        f"the video is still being captioned (job {job['id']} is {job['state']}); "
        "poll the job, then try again",
    )


def available_tracks(result: dict[str, Any]) -> list[str]:
    """The caption tracks a caption job's result has, the default first: the speech when
    something is said, then the description, then the English translation when asked."""
    tracks = ["description"]
    if result.get("speech_cues"):
        tracks.insert(0, "speech")
    if result.get("translation_cues"):
        tracks.append("translation")
    return tracks


CAPTION_TYPES = {
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
}


@router.get(
    "/{video_id}/captions",
    response_model=Captions,
    responses={
        200: {
            "content": {t.split(";")[0]: {"schema": {"type": "string"}} for t in CAPTION_TYPES},
            "description": "JSON, WebVTT or SRT.",
        },
        **error_responses(
            ErrorCode.UNAUTHORIZED,
            ErrorCode.VIDEO_NOT_FOUND,
            ErrorCode.VIDEO_NOT_READY,
            ErrorCode.VIDEO_FAILED,
            ErrorCode.TRACK_NOT_FOUND,
        ),
    },
)
async def get_captions(
    video_id: str,
    services: ServicesDep,
    tenant: ReaderDep,
    format: Annotated[str, Query(pattern="^(json|vtt|srt)$")] = "json",
    track: Annotated[
        str | None,
        Query(
            pattern="^(speech|description|translation)$",
            description="`speech` (subtitles of what is said), `description` (what the "
            "captioner writes) or `translation` (the speech in English, when asked at upload). "
            "Default: speech when the video has speech, else the description.",
        ),
    ] = None,
) -> Response:
    """A caption track as JSON, WebVTT or SRT: the subtitles of the speech, or the description
    of the whole video and its timestamped segments.

    Takes the API key, or the `expires` and `sig` of the video's signed `captions_url` (for a
    `<track src>`, which cannot send a key).
    """
    video = await load_video(services, tenant, video_id)
    result = (await _ready(services, video))["result"]
    tracks = available_tracks(result)
    chosen = track or tracks[0]
    if chosen not in tracks:
        raise ApiError(
            ErrorCode.TRACK_NOT_FOUND,
            f"this video has no {chosen} track (it has: {', '.join(tracks)})",
        )
    if chosen == "description":
        cues, caption, language = result["segments"], result["caption"], None
    else:
        cues, caption = result[f"{chosen}_cues"], None
        language = "en" if chosen == "translation" else result["transcript"]["language"]
    if format == "json":
        body = Captions.model_validate(
            {
                "video_id": video_id,
                "track": chosen,
                "language": language,
                "caption": caption,
                "segments": cues,
            }
        )
        return JSONResponse(body.model_dump(mode="json"))
    text = to_vtt(cues, caption=caption) if format == "vtt" else to_srt(cues)
    stem = Path(video.get("filename") or video_id).stem or video_id
    if track is not None:
        stem = f"{stem}.{chosen}"
    return PlainTextResponse(
        text,
        media_type=CAPTION_TYPES[format],
        headers={"Content-Disposition": f'inline; filename="{_ascii(stem)}.{format}"'},
    )


# Content types of the uploads, by MediaInfo.container. A .mov is ISO media like an mp4 and is
# served as video/mp4: Firefox refuses to play anything labelled video/quicktime.
MEDIA_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/mp4",
    "webm": "video/webm",
    "mkv": "video/x-matroska",
    "avi": "video/x-msvideo",
    "mpegts": "video/mp2t",
    "mpeg": "video/mpeg",
    "flv": "video/x-flv",
    "ogg": "video/ogg",
}


def _media_file(storage: Storage, video: dict[str, Any]) -> tuple[str, str]:
    """The object to play (the browser preview when there is one) and its content type."""
    preview = f"{video['dir']}/{PREVIEW_NAME}"
    if storage.exists(preview):
        return preview, PREVIEW_CONTENT_TYPE
    source = f"{video['dir']}/{video['file']}"
    if not storage.exists(source):
        raise ApiError(MediaErrorCode.FILE_NOT_FOUND, "the video's file is no longer stored")
    container = (video["media"] or {}).get("container")  # None: not probed yet
    return source, MEDIA_TYPES.get(str(container), "application/octet-stream")


@router.get(
    "/{video_id}/media",
    response_class=FileResponse,
    responses={
        200: {
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in {*MEDIA_TYPES.values()}
            },
            "description": "The whole file (`Accept-Ranges: bytes`).",
        },
        206: {"description": "The byte range asked for with `Range` (`Content-Range`)."},
        307: {
            "description": "With an S3 store: a presigned link to the object, which answers"
            " `Range` requests itself (valid `VIDCAP_S3_LINK_EXPIRY_S`)."
        },
        416: {"description": "The range lies outside the file (plain text)."},
        **error_responses(ErrorCode.UNAUTHORIZED, ErrorCode.VIDEO_NOT_FOUND),
    },
)
async def get_media(video_id: str, services: ServicesDep, tenant: ReaderDep) -> Response:
    """The video's bytes for a `<video>` element, with `Range` requests (seeking).

    Serves the H.264/AAC mp4 preview the worker makes of files browsers cannot play (see
    `playable`), else the upload itself. Takes the API key, or the `expires` and `sig` of the
    video's signed `media_url` (a `<video src>` cannot send a key). With an S3 store the answer
    is a redirect to a presigned link of the object, checked here first like the bytes.
    """
    video = await load_video(services, tenant, video_id)
    storage = services.storage
    key, media_type = await asyncio.to_thread(_media_file, storage, video)
    # The name offered is ours (video id, probed container), never the uploader's.
    filename = f"{video_id}{Path(key).suffix}"
    link = storage.url(
        key,
        expires_s=services.settings.s3_link_expiry_s,
        content_type=media_type,
        filename=filename,
    )
    # no-cache: the same link serves the preview once the worker has made it.
    if link is not None:
        return RedirectResponse(link, status_code=307, headers={"Cache-Control": "no-store"})
    path = storage.local_path(key)
    assert path is not None  # a store without links keeps its files on this disk
    headers = {
        "Cache-Control": "private, no-cache",
        "Content-Disposition": f'inline; filename="{filename}"',
    }
    return FileResponse(path, media_type=media_type, headers=headers)


def _ascii(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "captions"


@router.post(
    "/{video_id}/questions",
    status_code=202,
    response_model=JobPublic,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        ErrorCode.VIDEO_NOT_FOUND,
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.INVALID_JSON,
        ErrorCode.VIDEO_NOT_READY,
        ErrorCode.VIDEO_FAILED,
        ErrorCode.QUEUE_FULL,
        ErrorCode.RATE_LIMITED,
    ),
)
async def ask(
    video_id: str,
    body: QuestionCreate,
    services: ServicesDep,
    tenant: AdmittedTenantDep,
    idempotency_key_header: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Ask a question about a video; it is answered from the video's cached features.

    A retry with the same `Idempotency-Key` and question returns the first job (200); the key
    with another question or video is refused (422 `idempotency_key_reused`).
    """
    limit = services.settings.max_question_chars
    if len(body.question) > limit:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"question: at most {limit} characters")
    idempotency = _idempotency(idempotency_key_header, question_idempotency_key, tenant)
    video = await load_video(services, tenant, video_id)
    await _ready(services, video)
    fingerprint = hashlib.sha256(f"{video['id']}\n{body.question}".encode()).hexdigest()
    job, new = await asyncio.to_thread(
        _ask_once, services, tenant, video, body.question, idempotency, fingerprint
    )
    return JSONResponse(
        JobPublic.of(job).model_dump(mode="json"),
        status_code=202 if new else 200,
        headers={"Location": f"/v1/jobs/{job['id']}"},
    )


def _ask_once(
    services: Services,
    tenant: str,
    video: dict[str, Any],
    question: str,
    idempotency: str | None,
    fingerprint: str,
) -> tuple[dict[str, Any], bool]:
    """The question's job: made now (True), or the one an earlier request with the same
    Idempotency-Key made (False)."""
    redis = services.store.redis
    ttl = min(IDEMPOTENCY_TTL_S, services.settings.retention_s)  # never past the video
    claim = json.dumps({"fingerprint": fingerprint, "job": None})
    deadline = time.monotonic() + CLAIM_WAIT_S
    while idempotency is not None and not redis.set(idempotency, claim, nx=True, ex=ttl):
        raw = redis.get(idempotency)
        held = json.loads(raw) if raw else None
        if held is None:
            continue  # it just expired: claim it
        if held["fingerprint"] != fingerprint:
            raise ApiError(
                ErrorCode.IDEMPOTENCY_KEY_REUSED,
                "this Idempotency-Key was used for a different question (or video): use a new"
                " key for a new question",
            )
        earlier = services.store.job(held["job"]) if held["job"] else None
        if earlier is not None:
            return earlier, False
        if held["job"] is not None or time.monotonic() > deadline:
            redis.set(idempotency, claim, ex=ttl)  # its job is gone: ours now
            break
        time.sleep(0.02)  # the other request is making its job right now
    try:
        job = create_job(
            services.store, services.queue, services.settings,
            kind="question", tenant=tenant, video=video, question=question,
        )  # fmt: skip
    except BaseException:
        if idempotency is not None:
            redis.delete(idempotency)
        raise
    if idempotency is not None:
        done = json.dumps({"fingerprint": fingerprint, "job": job["id"]})
        redis.set(idempotency, done, ex=ttl)
    services.metrics.job_enqueued("question")
    return job, True


@router.get(
    "/{video_id}/questions",
    response_model=QuestionList,
    responses=error_responses(ErrorCode.UNAUTHORIZED, ErrorCode.VIDEO_NOT_FOUND),
)
async def list_questions(video_id: str, services: ServicesDep, tenant: TenantDep) -> QuestionList:
    """The questions asked about a video, oldest first, with their answers."""
    video = await load_video(services, tenant, video_id)
    ids = cast(list[str], await services.redis.lrange(questions_key(video["id"]), 0, -1))
    raws = (
        cast(list[str | None], await services.redis.mget([job_key(i) for i in ids])) if ids else []
    )
    return QuestionList(questions=[JobPublic.of(json.loads(r)) for r in raws if r is not None])
