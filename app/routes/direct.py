"""Direct uploads: the client sends a video's bytes to the S3 store itself, on presigned links.

1. ``POST /v1/videos/direct`` with the file's name, exact size and the caption options: the
   API makes the video (status ``uploading``) and answers with one presigned PUT link, or,
   above one part's size (``VIDCAP_DIRECT_UPLOAD_PART_MB``), a multipart upload with a link
   per part.
2. The client PUTs the bytes (parts in any order, several at once if it likes). An
   interrupted upload resumes: ``GET /v1/videos/{id}/upload`` lists the parts the store
   already holds and gives fresh links.
3. ``POST /v1/videos/{id}/complete``: the API joins the parts, checks the object (size as
   declared, within the upload limit) and queues the caption job, whose first stage probes the
   file on a worker (a file that is not a video fails there with the media error code, and
   its bytes are removed).

The API never touches the bytes, so a 20 GB upload costs it nothing; the store itself bounds
each part (5 GB in S3) and the completion checks the whole.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.deps import AdmittedTenantDep, ServicesDep, TenantDep
from app.errors import ApiError, ErrorCode, error_responses
from app.routes.videos import add_video, load_video, public_views, video_record
from app.schemas import (
    DirectUpload,
    DirectUploadCreate,
    DirectUploadStarted,
    JobPublic,
    UploadOptions,
    UploadPart,
    VideoCreated,
    VideoOptions,
)
from app.services import Services
from storage import S3Storage
from workers.queue import create_job
from workers.store import new_id, video_key

router = APIRouter(prefix="/v1/videos", tags=["videos"])
uploads_router = APIRouter(prefix="/v1/uploads", tags=["videos"])

MAX_PARTS = 10_000  # S3's most parts of one upload
UPLOAD_NAME = "upload"  # the object's name until a worker has probed it (then source.<ext>)
COMPLETE_LOCK_S = 120


def _lock(video_id: str) -> str:
    """The key held while one request completes the video's upload (one at a time)."""
    return f"vidcap:complete:{video_id}"


def _s3(services: Services) -> S3Storage:
    if not isinstance(services.storage, S3Storage):
        raise ApiError(
            ErrorCode.DIRECT_UPLOAD_UNAVAILABLE,
            "this server stores videos in a local folder: upload through the API instead"
            " (POST /v1/videos with a multipart `file`)",
        )
    return services.storage


@uploads_router.get(
    "", response_model=UploadOptions, responses=error_responses(ErrorCode.UNAUTHORIZED)
)
async def upload_options(services: ServicesDep, tenant: TenantDep) -> UploadOptions:
    """How this server takes uploads: directly into its store (S3), or only through the API;
    and the largest file it takes."""
    settings = services.settings
    direct = isinstance(services.storage, S3Storage)
    return UploadOptions(
        direct=direct,
        max_upload_bytes=settings.max_upload_bytes,
        part_bytes=settings.direct_upload_part_bytes if direct else None,
    )


def _instructions(services: Services, video: dict[str, Any]) -> DirectUpload:
    """Fresh links for every part of the video's pending upload (and which are stored)."""
    storage, pending = _s3(services), video["upload"]
    key, expires = f"{video['dir']}/{video['file']}", services.settings.s3_link_expiry_s
    complete = f"/v1/videos/{video['id']}/complete"
    if pending["upload_id"] is None:
        return DirectUpload(
            url=storage.put_link(key, expires), expires_in_s=expires, complete_url=complete
        )
    stored = storage.uploaded_parts(key, pending["upload_id"]) or {}
    sizes = _part_sizes(video["size_bytes"], pending["part_bytes"])
    parts = [
        UploadPart(
            number=n,
            url=storage.part_link(key, pending["upload_id"], n, expires),
            uploaded=stored.get(n, (-1, ""))[0] == size,
        )
        for n, size in enumerate(sizes, start=1)
    ]
    return DirectUpload(
        part_bytes=pending["part_bytes"], parts=parts, expires_in_s=expires, complete_url=complete
    )


def _part_sizes(size: int, part_bytes: int) -> list[int]:
    count = math.ceil(size / part_bytes)
    return [part_bytes] * (count - 1) + [size - part_bytes * (count - 1)]


def _start(services: Services, tenant: str, body: DirectUploadCreate) -> dict[str, Any]:
    """Makes the video record of a direct upload (and the store's multipart upload)."""
    settings, storage = services.settings, _s3(services)
    video_id = new_id("vid")
    folder = f"videos/{tenant}/{video_id}"
    upload_id, part_bytes = None, None
    part = settings.direct_upload_part_bytes
    if body.size_bytes > part:  # one PUT up to one part's size, else parts
        part_bytes = max(part, math.ceil(body.size_bytes / MAX_PARTS))
        upload_id = storage.start_upload(f"{folder}/{UPLOAD_NAME}")
    options = VideoOptions.model_validate(body.model_dump(exclude={"filename", "size_bytes"}))
    video = video_record(
        settings, tenant, video_id, folder, UPLOAD_NAME, body.filename, body.size_bytes, options
    )
    video.update(direct=True, upload={"upload_id": upload_id, "part_bytes": part_bytes})
    try:
        add_video(services, video)
    except BaseException:
        if upload_id is not None:
            storage.abort_upload(f"{folder}/{UPLOAD_NAME}", upload_id)
        raise
    return video


@router.post(
    "/direct",
    status_code=201,
    response_model=DirectUploadStarted,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED,
        ErrorCode.VALIDATION_ERROR,
        ErrorCode.FILE_TOO_LARGE,
        ErrorCode.DIRECT_UPLOAD_UNAVAILABLE,
        ErrorCode.QUEUE_FULL,
        ErrorCode.RATE_LIMITED,
    ),
)
async def start_direct_upload(
    body: DirectUploadCreate, services: ServicesDep, tenant: AdmittedTenantDep
) -> JSONResponse:
    """Start a direct upload: the answer holds presigned links to send the bytes to the
    store (one PUT, or one per part), then POST `complete_url`. Only with an S3 store."""
    _s3(services)
    limit = services.settings.max_upload_bytes
    if body.size_bytes > limit:
        raise ApiError(
            ErrorCode.FILE_TOO_LARGE,
            f"the file is {body.size_bytes} bytes; the limit is {limit} bytes",
        )
    video = await asyncio.to_thread(_start, services, tenant, body)
    upload = await asyncio.to_thread(_instructions, services, video)
    (view,) = await public_views(services, [video])
    started = DirectUploadStarted(video=view, upload=upload)
    return JSONResponse(
        started.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/v1/videos/{video['id']}"},
    )


@router.get(
    "/{video_id}/upload",
    response_model=DirectUploadStarted,
    responses=error_responses(
        ErrorCode.UNAUTHORIZED, ErrorCode.VIDEO_NOT_FOUND, ErrorCode.UPLOAD_NOT_PENDING
    ),
)
async def resume_direct_upload(
    video_id: str, services: ServicesDep, tenant: TenantDep
) -> DirectUploadStarted:
    """A pending direct upload's links, fresh, with the parts the store holds already
    (`uploaded`): send the others, then POST `complete_url`."""
    video = await load_video(services, tenant, video_id)
    if video.get("upload") is None:
        raise ApiError(ErrorCode.UPLOAD_NOT_PENDING, "this video's upload is not pending")
    upload = await asyncio.to_thread(_instructions, services, video)
    (view,) = await public_views(services, [video])
    return DirectUploadStarted(video=view, upload=upload)


def _complete(services: Services, video: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Joins and checks the uploaded object, then queues the caption job."""
    storage, store, settings = _s3(services), services.store, services.settings
    key = f"{video['dir']}/{video['file']}"
    pending = video["upload"]
    if pending["upload_id"] is not None:
        stored = storage.uploaded_parts(key, pending["upload_id"])
        if stored is not None:  # None: joined already by an earlier, interrupted completion
            sizes = _part_sizes(video["size_bytes"], pending["part_bytes"])
            wrong = [n for n, size in enumerate(sizes, 1) if stored.get(n, (-1, ""))[0] != size]
            if wrong:
                shown = ", ".join(map(str, wrong[:20])) + (" ..." if len(wrong) > 20 else "")
                raise ApiError(
                    ErrorCode.UPLOAD_INCOMPLETE,
                    f"parts missing or of the wrong size: {shown} (of {len(sizes)}); send them"
                    f" (GET /v1/videos/{video['id']}/upload gives fresh links), then complete",
                )
            storage.complete_upload(
                key, pending["upload_id"], {n: etag for n, (_, etag) in stored.items()}
            )
    found = storage.stat(key)
    if found is None:
        raise ApiError(
            ErrorCode.UPLOAD_INCOMPLETE,
            "the store holds no bytes for this video yet: PUT the file to the upload link first",
        )
    if found.size != video["size_bytes"]:
        storage.delete_prefix(video["dir"] + "/")
        if pending["upload_id"] is not None:
            video = {**video, "upload": {**pending, "upload_id": storage.start_upload(key)}}
            store.put(video_key(video["id"]), video)
        raise ApiError(
            ErrorCode.UPLOAD_SIZE_MISMATCH,
            f"the store received {found.size} bytes, not the {video['size_bytes']} declared;"
            " they were discarded: upload the file again",
        )
    video = {**video, "upload": None}
    job = create_job(store, services.queue, settings, kind="caption", tenant=video["tenant"],
                     video=video)  # fmt: skip
    video["caption_job_id"] = job["id"]
    store.put(video_key(video["id"]), video)
    services.metrics.job_enqueued("caption")
    return video, job


@router.post(
    "/{video_id}/complete",
    status_code=202,
    response_model=VideoCreated,
    responses={
        200: {"model": VideoCreated, "description": "Completed before (a retry)."},
        **error_responses(
            ErrorCode.UNAUTHORIZED,
            ErrorCode.VIDEO_NOT_FOUND,
            ErrorCode.UPLOAD_NOT_PENDING,
            ErrorCode.UPLOAD_INCOMPLETE,
            ErrorCode.UPLOAD_SIZE_MISMATCH,
            ErrorCode.DIRECT_UPLOAD_UNAVAILABLE,
        ),
    },
)
async def complete_direct_upload(
    video_id: str, services: ServicesDep, tenant: TenantDep
) -> JSONResponse:
    """Finish a direct upload: the parts are joined, the object checked, and the caption job
    queued (202 with the video and the job). A retry after success answers 200 with them."""
    video = await load_video(services, tenant, video_id)
    if not video.get("direct"):
        raise ApiError(ErrorCode.UPLOAD_NOT_PENDING, "this video was not a direct upload")
    lock = _lock(video_id)
    if video.get("upload") is None or not await services.redis.set(
        lock, 1, nx=True, ex=COMPLETE_LOCK_S
    ):
        return await _completed_before(services, tenant, video_id)
    try:
        video, job = await asyncio.to_thread(_complete, services, video)
    finally:
        await services.redis.delete(lock)
    (view,) = await public_views(services, [video])
    body = VideoCreated(video=view, job=JobPublic.of(job))
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/v1/jobs/{job['id']}"},
    )


async def _completed_before(services: Services, tenant: str, video_id: str) -> JSONResponse:
    """A second completion: the first one's answer once it is done, else 409."""
    lock = _lock(video_id)
    while await services.redis.exists(lock):  # another request is completing it right now
        await asyncio.sleep(0.1)
    video = await load_video(services, tenant, video_id)
    if video.get("upload") is not None or video["caption_job_id"] is None:
        raise ApiError(
            ErrorCode.UPLOAD_NOT_PENDING,
            "another request was completing this upload and did not finish: complete it again",
        )
    job = await asyncio.to_thread(services.store.job, video["caption_job_id"])
    if job is None:
        raise ApiError(ErrorCode.UPLOAD_NOT_PENDING, "this video was completed; its job expired")
    (view,) = await public_views(services, [video])
    body = VideoCreated(video=view, job=JobPublic.of(job))
    return JSONResponse(body.model_dump(mode="json"), status_code=200)
