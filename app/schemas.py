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
from models.perception.languages import language_code
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
    language: str | None = Field(
        default=None,
        description="The spoken language as an ISO 639-1 code (`en`, `ru`, ...), or `auto` "
        "(the default): detected per stretch of speech.",
    )
    translate: bool = Field(
        default=False,
        description="Also translate non-English speech to English (a `translation` track).",
    )

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        return language_code(value)

    def key(self) -> str:
        """A short digest of the options that change features (for same-bytes dedupe)."""
        data = json.dumps(self.model_dump(), sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:16]


class VideoUrlCreate(VideoOptions):
    """``POST /v1/videos`` with a JSON body: the server fetches the video."""

    url: AnyUrl = Field(description="An http or https address of a video file.")


class DirectUploadCreate(VideoOptions):
    """``POST /v1/videos/direct``: a video the client will send to the store itself."""

    filename: str = Field(min_length=1, max_length=255, description="The file's name.")
    size_bytes: int = Field(gt=0, description="The file's exact size; checked at completion.")


class UploadOptions(BaseModel):
    """``GET /v1/uploads``: how this server takes uploads."""

    direct: bool = Field(
        description="Whether it offers direct uploads to its store (POST /v1/videos/direct)."
    )
    max_upload_bytes: int = Field(description="The largest file it takes.")
    part_bytes: int | None = Field(
        description="Direct uploads larger than this go in parts of this size."
    )


class UploadPart(BaseModel):
    """One part of a multipart direct upload: PUT its bytes to ``url``."""

    number: int = Field(ge=1, description="1-based; part N holds bytes (N-1)*part_bytes on.")
    url: str
    uploaded: bool = Field(description="The store already holds this part (a resumed upload).")


class DirectUpload(BaseModel):
    """Where to send a direct upload's bytes: one PUT (``url``) or parts (``parts``)."""

    method: Literal["PUT"] = "PUT"
    url: str | None = Field(default=None, description="The whole file, for a single PUT.")
    part_bytes: int | None = Field(
        default=None, description="Size of every part but the last, for a multipart upload."
    )
    parts: list[UploadPart] | None = None
    expires_in_s: int = Field(description="The links stop working this long from now.")
    complete_url: str = Field(description="POST here once every byte is sent.")


class DirectUploadStarted(BaseModel):
    """The answer to ``POST /v1/videos/direct`` and ``GET /v1/videos/{id}/upload``."""

    video: VideoPublic
    upload: DirectUpload


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


class SpeechSegment(BaseModel):
    """A stretch of speech in the transcript."""

    start: float
    end: float
    text: str
    language: str = Field(description="ISO 639-1 code of this stretch's language.")
    confidence: float = Field(ge=0, le=1)


class TranscriptPublic(BaseModel):
    """What is said in the video (Whisper)."""

    language: str | None = Field(description="The language heard most; null without speech.")
    language_probability: float
    task: Literal["transcribe", "translate"]
    model: str
    segments: list[SpeechSegment]


class TextItem(BaseModel):
    """Text read on screen, with the time it is visible."""

    start: float
    end: float
    text: str
    confidence: float
    box: list[float] = Field(description="left, top, right, bottom as fractions of the frame.")


class Tag(BaseModel):
    """Something seen (an ImageNet class) with the common names people use for it."""

    label: str
    names: list[str] = Field(description='Common names, most specific first ("dog", "animal").')
    score: float


class TimedTags(BaseModel):
    """Tags of one stretch of the video."""

    start: float
    end: float
    tags: list[Tag]


class Tags(BaseModel):
    """What is seen: over the whole video and per segment."""

    video: list[Tag]
    segments: list[TimedTags]


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
        description="caption jobs: {caption, segments, transcript, ...}; question jobs:"
        " {question, answer, evidence: [{kind, start, end, snippet}]} (evidence: the moments"
        " the answer rests on, kind speech, text, visual or audio; empty when there are none)."
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
    sha256: str | None = Field(
        description="Of the uploaded bytes; for a direct upload, once a worker has read it."
    )
    created_at: str
    status: VideoStatus
    media: MediaInfo | None = Field(
        description="What the file holds; for a direct upload, once a worker has probed it."
    )
    options: dict[str, Any]
    caption_job_id: str | None = Field(description="None while a direct upload is pending.")
    caption: str | None = None
    segments: list[Segment] | None = None
    transcript: TranscriptPublic | None = None
    translation: TranscriptPublic | None = Field(
        default=None, description="The speech in English, when `translate` was asked."
    )
    on_screen_text: list[TextItem] | None = None
    tags: Tags | None = None
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
        description="The default track as WebVTT for a `<track src>` (speech when there is "
        "speech, else the description); signed like `media_url`."
    )
    tracks: dict[str, str] = Field(
        default_factory=dict,
        description="Each caption track the video has (`speech`, `description`, `translation`) "
        "-> its signed WebVTT link.",
    )

    @classmethod
    def of(
        cls,
        video: dict[str, Any],
        job: dict[str, Any] | None,
        *,
        media_url: str,
        captions_url: str,
        tracks: dict[str, str],
        playable: bool,
    ) -> VideoPublic:
        """The public view of a video record and its caption job's record (and its links)."""
        state = JobState(job["state"]) if job else JobState.FAILED
        result = (job or {}).get("result") or {}
        error = (job or {}).get("error")
        status = VIDEO_STATUS[state]
        if video.get("upload") is not None:  # a direct upload not completed yet
            status, error = VideoStatus.UPLOADING, None
        elif job is None:
            error = {"code": "job_not_found", "message": "the caption job's record expired"}
        return cls.model_validate(
            {
                **video,
                "created_at": _time(video["created_at"]),
                "status": status,
                "caption": result.get("caption"),
                "segments": result.get("segments"),
                "transcript": result.get("transcript"),
                "translation": result.get("translation"),
                "on_screen_text": result.get("on_screen_text"),
                "tags": result.get("tags"),
                "error": error,
                "playable": playable,
                "media_url": media_url,
                "captions_url": captions_url,
                "tracks": tracks,
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
    """One caption track of a video as JSON: its cues, and for the description the caption of
    the whole video."""

    video_id: str
    track: Literal["speech", "description", "translation"]
    language: str | None = Field(description="The speech's language (speech tracks).")
    caption: str | None = Field(description="The whole-video description (description track).")
    segments: list[Segment]


class QuestionList(BaseModel):
    """The questions asked about a video, oldest first."""

    questions: list[JobPublic]


class Health(BaseModel):
    """``/healthz`` and ``/readyz``."""

    status: Literal["ok", "ready"]
    workers: list[dict[str, Any]] | None = None
