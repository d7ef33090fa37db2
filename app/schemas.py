"""Request and response bodies of the API (they are also its OpenAPI schema).

Records in Redis (workers/store.py) keep Unix times and internal fields; ``*Public`` models are
what clients see: RFC 3339 times, no tenant, no file paths.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AnyUrl, BaseModel, ConfigDict, Field, field_validator

from models.media import MediaInfo
from workers.store import VIDEO_STATUS, JobState, Stage, VideoStatus


def _time(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


class VideoOptions(BaseModel):
    """How to caption a video (multipart form fields, or fields of the JSON body)."""

    model_config = ConfigDict(extra="forbid")

    frames_per_second: float | None = Field(
        default=None, gt=0, le=30, description="Frames sampled per second (default: the model's)."
    )
    max_frames: int | None = Field(
        default=None, ge=1, le=4096, description="At most this many frames in all."
    )
    segment_seconds: float | None = Field(
        default=None,
        ge=0.5,
        le=3600,
        description="Length of each timestamped segment caption (default: the server's).",
    )

    def key(self) -> str:
        """A short digest of the options that change features (for same-bytes dedupe)."""
        data = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:16]


class VideoUrlCreate(VideoOptions):
    """``POST /v1/videos`` with a JSON body: the server fetches the video."""

    url: AnyUrl = Field(description="An http or https address of a video file.")


class QuestionCreate(BaseModel):
    """``POST /v1/videos/{id}/questions``."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, description="A question about the video.")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("the question is blank")
        return value


class Segment(BaseModel):
    """A caption of ``[start, end)`` seconds of the video."""

    start: float
    end: float
    text: str


class JobError(BaseModel):
    """Why a job failed or was canceled."""

    code: str = Field(description="Stable code: a media code, worker_lost, job_timeout, ...")
    message: str


class JobPublic(BaseModel):
    """A job: captioning a video, or answering a question about it."""

    id: str
    kind: Literal["caption", "question"]
    video_id: str
    state: JobState
    stage: Stage | None = Field(description="What a running job is doing.")
    percent: int = Field(ge=0, le=100)
    created_at: str
    started_at: str | None
    finished_at: str | None
    timings: dict[str, float] = Field(description="Seconds per stage, once known.")
    attempts: int = Field(description="1, or more when a worker was lost and the job retried.")
    question: str | None = None
    result: dict[str, Any] | None = Field(
        description="caption jobs: {caption, segments}; question jobs: {question, answer}."
    )
    error: JobError | None
    cancel_requested: bool

    @classmethod
    def of(cls, record: dict[str, Any]) -> JobPublic:
        """The public view of a job record."""
        return cls.model_validate(
            {
                **record,
                "created_at": _time(record["created_at"]),
                "started_at": _time(record["started_at"]),
                "finished_at": _time(record["finished_at"]),
            }
        )


class VideoPublic(BaseModel):
    """A video, with its caption once ready."""

    id: str
    filename: str | None
    size_bytes: int
    sha256: str
    created_at: str
    status: VideoStatus
    media: MediaInfo
    options: dict[str, Any]
    caption_job_id: str
    caption: str | None = None
    segments: list[Segment] | None = None
    error: JobError | None = None
    playable: bool = Field(
        description="Whether browsers can play `media_url`: the upload plays as it is, or the "
        "worker has made an H.264/AAC mp4 preview of it."
    )
    media_url: str = Field(
        description="The video's bytes for a `<video src>` (Range requests work): the browser "
        "preview when there is one, else the upload. Signed: works without a key, for at "
        "least 12 h."
    )
    captions_url: str = Field(
        description="The captions as WebVTT for a `<track src>`; signed like `media_url`."
    )

    @classmethod
    def of(
        cls,
        video: dict[str, Any],
        job: dict[str, Any] | None,
        *,
        media_url: str,
        captions_url: str,
        playable: bool,
    ) -> VideoPublic:
        """The public view of a video record and its caption job's record (and its links)."""
        state = JobState(job["state"]) if job else JobState.FAILED
        result = (job or {}).get("result") or {}
        error = (job or {}).get("error")
        if job is None:
            error = {"code": "job_not_found", "message": "the caption job's record expired"}
        return cls.model_validate(
            {
                **video,
                "created_at": _time(video["created_at"]),
                "status": VIDEO_STATUS[state],
                "caption": result.get("caption"),
                "segments": result.get("segments"),
                "error": error,
                "playable": playable,
                "media_url": media_url,
                "captions_url": captions_url,
            }
        )


class VideoCreated(BaseModel):
    """The answer to an upload: the video and the job that captions it."""

    video: VideoPublic
    job: JobPublic


class VideoPage(BaseModel):
    """A page of videos, newest first."""

    videos: list[VideoPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: end.")


class Captions(BaseModel):
    """A video's captions as JSON."""

    video_id: str
    caption: str
    segments: list[Segment]


class QuestionList(BaseModel):
    """The questions asked about a video, oldest first."""

    questions: list[JobPublic]


class Health(BaseModel):
    """``/healthz`` and ``/readyz``."""

    status: Literal["ok", "ready"]
    workers: list[dict[str, Any]] | None = None
