"""The job functions RQ runs: thin calls into models/, with progress and results in our records.

Each function takes our job id only; everything else is in the job's record. A function never
raises into RQ: whatever happens ends up in the record (``succeeded``, ``failed`` with a code,
or ``canceled``), which is what the API reads.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from models.media import MediaError
from models.media.preview import PREVIEW_NAME, needs_preview, write_preview
from models.perception.result import Perception
from storage import ScratchFull, StorageError, Workspace, source_name
from workers import runtime
from workers.queue import attempt_of, retry, rq_job_id
from workers.store import (
    RUNNING_KEY,
    JobState,
    Stage,
    Stale,
    Store,
    alive_key,
    cancel_key,
    job_key,
    missing_key,
    now,
    video_key,
)

if TYPE_CHECKING:
    from models.captioner.pipeline import Segment

log = logging.getLogger(__name__)

# The pipeline's stage names -> the stages a client sees.
STAGES = {
    "decode": Stage.DECODING,
    "features": Stage.FEATURES,
    "fusion": Stage.FUSION,
    "generate": Stage.GENERATING,
}
PREVIEW = "preview"  # the browser preview's entry in a caption job's timings
PERCEPTION = "perception"  # the experts and the features beside them (wall time, overlapped)
PERCEPTION_NAME = "perception.json"  # what the experts found, stored beside the video
FEATURES_NAME = "features.safetensors"  # the captioner's features of the video, beside it
# Share of the percent bar each part of a caption job gets: decoding and features run window
# by window (up to FEATURES_END), then fusion and generation.
FEATURES_END, FUSION_END = 75, 85


class Canceled(Exception):
    """The client canceled the job, or deleted its video."""


class Attempt:
    """One attempt at a job: owns its record's progress, heartbeat and final state.

    Args:
        store: The record store.
        job_id: Our job id.
        rq_id: The RQ job id of this attempt (the record must name the same attempt).
    """

    def __init__(self, store: Store, job_id: str, rq_id: str, tenant: str | None = None) -> None:
        self.store = store
        self.job_id = job_id
        self.rq_id = rq_id
        self.tenant = tenant  # whose running slot this attempt holds (workers/fair.py)
        self.record: dict[str, Any] = {}
        self.windows = 1
        self.windows_done = 0
        self.done = {"speech": 0.0, "frames": 0.0}  # the perception experts' progress
        self.main_stage: Stage | None = None
        self._lock = threading.Lock()
        self.began = time.perf_counter()
        from models.captioner.pipeline import StageTimer  # torch: only ever imported in a worker

        self.timer = StageTimer(on_stage=self.progress)
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def _mine(self, record: dict[str, Any]) -> dict[str, Any]:
        if rq_job_id(record["id"], record["attempts"]) != self.rq_id:
            raise Stale(f"{self.rq_id} was replaced by attempt {record['attempts']}")
        return record

    def start(self) -> dict[str, Any]:
        """Marks the job running and starts the heartbeat.

        Raises:
            Stale: Another attempt owns the job, or it is gone.
            Canceled: It was canceled while queued.
        """
        settings = runtime.settings()

        def change(record: dict[str, Any]) -> dict[str, Any]:
            self._mine(record)
            if record["state"] == JobState.CANCELED:
                raise Canceled()
            if record["state"] != JobState.QUEUED:
                raise Stale(f"job {self.job_id} is {record['state']}")
            record.update(
                state=JobState.RUNNING,
                started_at=now(),
                stage=Stage.PROBING,
                worker=runtime.identity(),
            )
            return record

        def claim(pipe: Any, record: dict[str, Any]) -> None:
            pipe.sadd(RUNNING_KEY, self.job_id)
            pipe.set(alive_key(self.job_id), self.rq_id, ex=math.ceil(settings.worker_lost_after_s))

        try:
            self.record = self.store.update(job_key(self.job_id), change, also=claim)
        except Canceled:
            raise
        self._heartbeat = threading.Thread(
            target=self._beat, name=f"heartbeat-{self.job_id}", daemon=True
        )
        self._heartbeat.start()
        runtime.watchdog().started(self.job_id, float(self.record["timeout_s"]))
        return self.record

    def _beat(self) -> None:
        # Refreshes the alive key well within its TTL; the reaper retries the job if it lapses.
        lease = runtime.settings().worker_lost_after_s
        while not self._stop.wait(lease / 3):
            try:
                self.store.redis.set(alive_key(self.job_id), self.rq_id, ex=math.ceil(lease))
                if self.tenant is not None:
                    runtime.queue().renew(self.tenant, self.rq_id)
            except Exception as e:  # a missed beat is retried; never kill the job
                log.warning("job %s: heartbeat failed: %s", self.job_id, e)

    def progress(self, pipeline_stage: str) -> None:
        """The pipeline's stage hook: checks for cancellation, then records stage and percent."""
        if self.store.cancel_requested(self.job_id):
            raise Canceled()
        if pipeline_stage not in STAGES:  # the perception wrapper, the preview: no new stage
            return
        stage = STAGES[pipeline_stage]
        if pipeline_stage == "features":
            self.windows_done += 1
        if stage in (Stage.DECODING, Stage.FEATURES):
            self.main_stage = stage
            percent = self._perception_percent()
        else:
            percent = {Stage.FUSION: FEATURES_END, Stage.GENERATING: FUSION_END}[stage]
        if self.record.get("kind") == "question":
            percent = {Stage.FUSION: 10, Stage.GENERATING: 50}.get(stage, percent)
        # The whole-video caption and then the segments each pass through fusion and
        # generation: the bar never goes back.
        self.set_progress(stage, max(percent, self.record.get("percent", 0)))

    def perceiving(self, stage: str, done: float) -> None:
        """The perception experts' hook, called from their threads: ``stage`` is
        ``transcribing``, ``tagging`` or ``reading_text``, ``done`` its fraction."""
        if self.store.cancel_requested(self.job_id):
            raise Canceled()
        with self._lock:
            key = "speech" if stage == "transcribing" else "frames"
            self.done[key] = max(self.done[key], min(1.0, done))
            if stage != "transcribing":
                self.main_stage = Stage(stage)
            # Speech runs beside the frame experts and the features: it is what the job is
            # doing only once the rest waits for it.
            waiting = self.done["frames"] >= 1 and self.windows_done >= self.windows
            shown = Stage.TRANSCRIBING if waiting or self.main_stage is None else self.main_stage
            percent = max(self._perception_percent(), self.record.get("percent", 0))
        self.set_progress(shown, percent)

    def perception_done(self) -> None:
        """Marks the experts and the features done (e.g. when both came from the cache)."""
        self.done = {"speech": 1.0, "frames": 1.0}
        self.windows_done = self.windows

    def _perception_percent(self) -> float:
        # Shares of the bar up to FEATURES_END: speech, the frame experts, the features.
        features = min(1.0, self.windows_done / self.windows)
        share = 0.4 * self.done["speech"] + 0.2 * self.done["frames"] + 0.4 * features
        return 5 + (FEATURES_END - 5) * share

    def set_progress(self, stage: Stage, percent: float) -> None:
        """Writes stage and percent to the record and to RQ's job.meta (best effort)."""
        if stage == self.record.get("stage") and round(percent) == self.record.get("percent"):
            return

        def change(record: dict[str, Any]) -> dict[str, Any]:
            self._mine(record)
            record.update(stage=stage, percent=round(percent))
            return record

        try:
            self.record = self.store.update(job_key(self.job_id), change)
            rq_job = get_current_job()
            if rq_job is not None:
                rq_job.meta.update(stage=str(stage), percent=round(percent))
                rq_job.save_meta()
        except Stale:
            raise
        except Exception as e:  # progress is informative; the job goes on
            log.warning("job %s: progress not recorded: %s", self.job_id, e)

    def finish(
        self,
        state: JobState,
        *,
        timings: dict[str, float],
        result: Any = None,
        error: dict[str, str] | None = None,
    ) -> None:
        """Writes the final state; a replaced attempt's result is dropped."""

        def change(record: dict[str, Any]) -> dict[str, Any]:
            self._mine(record)
            if record["state"] != JobState.RUNNING:
                raise Stale(f"job {self.job_id} is already {record['state']}")
            record.update(
                state=state,
                finished_at=now(),
                stage=None,
                percent=100 if state == JobState.SUCCEEDED else record["percent"],
                timings={k: round(v, 4) for k, v in timings.items()},
                result=result,
                error=error,
            )
            return record

        def release(pipe: Any, record: dict[str, Any]) -> None:
            pipe.srem(RUNNING_KEY, self.job_id)
            pipe.delete(alive_key(self.job_id), cancel_key(self.job_id), missing_key(self.job_id))

        self.record = self.store.update(job_key(self.job_id), change, also=release)
        metrics = runtime.metrics()
        code = error["code"] if error else None
        metrics.job_finished(
            self.record["kind"], str(state), time.perf_counter() - self.began, code
        )
        for name, seconds in timings.items():
            metrics.stage_done(name, seconds)
        log.info(
            "job %s: %s %s in %.2fs",
            self.job_id,
            self.record["kind"],
            state,
            time.perf_counter() - self.began,
        )

    def requeue(self) -> None:
        """Puts the job back on the queue at once (the worker is shutting down mid-job)."""

        with contextlib.suppress(Exception):
            self.store.redis.srem(RUNNING_KEY, self.job_id)
            attempt = attempt_of(self.rq_id)[1]
            retry(self.store, runtime.queue(), runtime.settings(), self.job_id, attempt)
            self.store.redis.delete(alive_key(self.job_id))

    def video(self) -> dict[str, Any]:
        """The job's video record.

        Raises:
            Canceled: The video was deleted.
        """
        video = self.store.video(self.record["video_id"])
        if video is None:
            raise Canceled()
        return video

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per client-visible stage so far (a live view of the timer)."""
        seconds = self.timer.seconds
        timings = {STAGES[k].value: v for k, v in seconds.items() if k in STAGES}
        for name in (PREVIEW, PERCEPTION):
            if name in seconds:
                timings[name] = seconds[name]
        return timings

    def stop(self) -> None:
        """Stops the heartbeat and frees the tenant's running slot (best effort: a slot that
        is not freed lapses with its lease)."""
        self._stop.set()
        runtime.watchdog().ended(self.job_id)
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if self.tenant is not None:
            with contextlib.suppress(Exception):
                runtime.queue().release(self.tenant, self.rq_id)


def caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether an exception of ``kind`` caused ``error``, even when a library caught it and
    raised its own (RapidOCR's ONNX engine turns any exception into an ONNXRuntimeError)."""
    seen: BaseException | None = error
    for _ in range(20):  # a chain of causes is short; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def timed_out(error: BaseException) -> bool:
    """Whether RQ's job timeout caused ``error`` (see :func:`caused_by`)."""
    return caused_by(error, JobTimeoutException)


def _wait_for_redis(store: Store, limit_s: float) -> bool:
    """Waits until Redis answers (True) or ``limit_s`` passes (False: the reaper of whichever
    process sees Redis first retries the job)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(RedisError):
            store.redis.ping()
            return True
        time.sleep(0.5)
    return False


@contextlib.contextmanager
def attempt(job_id: str) -> Iterator[Attempt | None]:
    """Runs one attempt of a job; yields None when there is nothing to do.

    Every way out ends in the record: success is written by the body; a media error, a
    timeout, a cancel or a bug end the job here. A shutdown of the worker mid-job
    (SystemExit, KeyboardInterrupt) puts the job back on the queue for another worker.
    """
    rq_job = get_current_job()
    rq_id = rq_job.id if rq_job is not None else rq_job_id(job_id, 1)
    tenant = rq_job.meta.get("tenant") if rq_job is not None else None
    if rq_job is not None and tenant is None:  # queued before jobs named their tenant
        record = runtime.store().job(job_id)
        tenant = record["tenant"] if record is not None else None
    current = Attempt(runtime.store(), job_id, rq_id, tenant)
    try:
        current.start()
    except Stale as e:
        log.info("job %s: nothing to do (%s)", job_id, e)
        current.stop()
        yield None
        return
    except Canceled:
        log.info("job %s: canceled before it started", job_id)
        current.stop()
        yield None
        return
    try:
        yield current
    except Stale as e:
        log.info("job %s: stopped, %s", job_id, e)
    except Canceled:
        with contextlib.suppress(Stale):
            current.finish(
                JobState.CANCELED,
                timings=current.timings,
                error={"code": "canceled", "message": "the job was canceled"},
            )
    except MediaError as e:
        with contextlib.suppress(Stale):
            current.finish(JobState.FAILED, timings=current.timings, error=e.to_dict())
    except ScratchFull as e:
        error = {"code": "scratch_full", "message": f"the worker has no room for the video: {e}"}
        with contextlib.suppress(Stale):
            current.finish(JobState.FAILED, timings=current.timings, error=error)
    except StorageError as e:
        # The object store failed past its client's retries: another attempt may find it back.
        if attempt_of(rq_id)[1] < runtime.settings().max_attempts:
            log.warning("job %s: object store failed (%s); queued another attempt", job_id, e)
            current.requeue()
            return
        log.error("job %s: object store failed on its last attempt: %s", job_id, e)
        error = {
            "code": "storage_unavailable",
            "message": "the video store could not be read or written; try again later",
        }
        with contextlib.suppress(Stale):
            current.finish(JobState.FAILED, timings=current.timings, error=error)
    except Exception as e:
        if caused_by(e, RedisError) and not timed_out(e):
            # Redis went away for longer than the client rides out (a restart that loads a
            # big file): the job did nothing wrong. Once Redis answers it goes back on the
            # queue (unless a reaper did that already); it is never failed for this.
            log.warning("job %s: Redis lost mid-job (%s); requeued once it is back", job_id, e)
            if _wait_for_redis(current.store, runtime.settings().worker_lost_after_s * 4):
                current.requeue()
            return
        if timed_out(e):
            error = {
                "code": "job_timeout",
                "message": f"the job ran longer than its limit of {current.record['timeout_s']} s",
            }
        else:
            log.exception("job %s: failed", job_id)
            error = {
                "code": "model_error",
                "message": "the model failed on this video; the error is in the worker's log",
            }
        with contextlib.suppress(Stale):
            current.finish(JobState.FAILED, timings=current.timings, error=error)
    except BaseException:
        log.warning("job %s: worker stopping mid-job, putting the job back", job_id)
        current.requeue()
        raise
    finally:
        current.stop()


def caption_video(job_id: str) -> None:
    """Captions a video: speech, on-screen text and tags (the perception experts), features,
    then the description and its segments. Features and what the experts found are stored
    beside the video, so a retry or a question never runs them again."""
    from models.captioner.features import VideoFeatures
    from models.captioner.pipeline import CaptionPipeline

    with attempt(job_id) as job:
        if job is None:
            return
        pipe, video = runtime.pipeline(), job.video()
        with runtime.workspace(video) as ws:
            if video["media"] is None:  # a direct upload: nobody has looked at it yet
                video = probe_upload(ws, video)
            if not isinstance(pipe, CaptionPipeline):
                caption_grounded(job, video, ws)
                return
            options, media = video["options"], video["media"]
            sampling = {
                "frames_per_second": options.get("frames_per_second"),
                "max_total_frames": options.get("max_frames"),
            }
            frames = pipe.sample_count(media["duration_s"], media["frame_count"], **sampling)
            job.windows = math.ceil(frames / pipe.config.max_frames)
            features: VideoFeatures | None = None
            cached = ws.get(FEATURES_NAME)
            if cached is not None:  # an earlier attempt got this far
                with contextlib.suppress(Exception):
                    features = VideoFeatures.load(cached)
                    pipe.check_features(features)
            found = _stored_perception(ws)
            source = _source(ws, video) if found is None or features is None else None

            def extract() -> VideoFeatures:
                assert source is not None
                return features or pipe.extract(source, timer=job.timer, **sampling)

            if found is None:
                assert source is not None
                found, features = _perceive(job, source, video, during=extract)
            else:
                features = extract()
            job.perception_done()
            if not ws.exists(video["file"]):
                raise Canceled()  # the video was deleted meanwhile
            features.save(ws.path(FEATURES_NAME))
            ws.put(FEATURES_NAME)
            found.save(ws.path(PERCEPTION_NAME))
            ws.put(PERCEPTION_NAME)
            make_preview(job, ws, video)
            caption = pipe.caption(features, timer=job.timer)
            segments = pipe.caption_segments(features, options["segment_seconds"], timer=job.timer)
            finish_caption(job, caption, segments, found)


def probe_upload(ws: Workspace, video: dict[str, Any]) -> dict[str, Any]:
    """A direct upload's first stage: probe the bytes the client sent to the store, as the
    API probes a streamed upload, and name the object after its container.

    Returns:
        The video record with its media facts, sha256 and stored name.

    Raises:
        MediaError: Not a video vidcap takes (the job fails with its code; the bytes, of no
            use, are removed from the store).
        Canceled: The video was deleted meanwhile.
    """
    import hashlib

    from models.media import probe

    source = _source(ws, video)
    try:
        info = probe(source, limits=runtime.settings().media_limits())
    except MediaError:
        runtime.storage().delete_prefix(video["dir"] + "/")
        raise
    digest = hashlib.sha256()
    with source.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    name = source_name(info.container)
    ws.rename(video["file"], name)

    def change(record: dict[str, Any]) -> dict[str, Any]:
        record.update(media=info.model_dump(mode="json"), file=name, sha256=digest.hexdigest())
        return record

    try:
        return runtime.store().update(video_key(video["id"]), change)
    except Stale:
        raise Canceled() from None  # the record is gone: deleted while being probed


def _perceive(
    job: Attempt, source: Path, video: dict[str, Any], during: Callable[[], Any] | None = None
) -> tuple[Perception, Any]:
    """The perception experts on the video, as its options ask (timed as ``perception``);
    ``during`` runs beside them (the captioner's features), its result returned second."""
    options = video["options"]
    with job.timer.stage(PERCEPTION):
        return runtime.perceiver().run(
            source,
            segment_seconds=options["segment_seconds"],
            language=options.get("language"),
            translate=bool(options.get("translate")),
            on_progress=job.perceiving,
            during=during,
        )


def _source(ws: Workspace, video: dict[str, Any]) -> Path:
    """The uploaded file, local (fetched into scratch from a remote store)."""
    source = ws.get(video["file"])
    if source is None:
        raise Canceled()  # deleted before the job got to it
    return source


def _stored_perception(ws: Workspace) -> Perception | None:
    """What the experts found, stored by an earlier attempt (None: not stored, unreadable)."""
    path = ws.get(PERCEPTION_NAME)
    if path is None:
        return None
    try:
        return Perception.load(path)
    except Exception:
        return None


def caption_grounded(job: Attempt, video: dict[str, Any], ws: Workspace) -> None:
    """:func:`caption_video` with the grounded captioner: the experts run, then the model
    reads what they found (stored as ``context.npz``: questions read it back)."""
    from models.captioner.grounded_pipeline import CONTEXT_NAME, GroundedPipeline
    from models.captioner.grounding import DESCRIBE
    from models.captioner.pipeline import Segment

    settings, pipe = runtime.settings(), runtime.pipeline()
    assert isinstance(pipe, GroundedPipeline)
    options = video["options"]
    job.windows = 1  # no feature windows: the context is built once the experts are done
    found = _stored_perception(ws)  # an earlier attempt got this far
    if found is None:
        found, _ = _perceive(job, _source(ws, video), video)
    job.perception_done()
    if not ws.exists(video["file"]):
        raise Canceled()  # the video was deleted meanwhile
    found.save(ws.path(PERCEPTION_NAME))
    ws.put(PERCEPTION_NAME)
    ctx = None
    stored = ws.get(CONTEXT_NAME)
    if stored is not None:
        with contextlib.suppress(Exception):
            ctx = pipe.load_context(stored)
    if ctx is None:
        ctx = pipe.context(found, _source(ws, video), limits=settings.media_limits())
        pipe.save_context(ctx, ws.path(CONTEXT_NAME))
        ws.put(CONTEXT_NAME)
    make_preview(job, ws, video)
    # The description and every segment's in one call (batched with other jobs' calls).
    spans, items = pipe.segment_items(ctx, options["segment_seconds"])
    written = runtime.generate([(ctx, DESCRIBE), *items], job.timer)
    segments = [Segment(s, e, a.text) for (s, e), a in zip(spans, written[1:], strict=True)]
    finish_caption(job, written[0].text, segments, found)


def finish_caption(job: Attempt, caption: str, segments: list[Segment], found: Perception) -> None:
    """A caption job's result: the description, its segments and what the experts found."""
    from models.perception.runner import public_view

    job.finish(
        JobState.SUCCEEDED,
        timings={**job.timings, **found.timings},
        result={
            "caption": caption,
            "segments": [
                {"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
                for s in segments
            ],
            **public_view(found),
        },
    )


def make_preview(job: Attempt, ws: Workspace, video: dict[str, Any]) -> None:
    """Stores ``preview.mp4`` (H.264/AAC) beside a video browsers cannot play as uploaded.

    Best effort: a failure is logged and the caption goes on without a preview (the API then
    serves the upload itself). The transcode runs in the media sandbox, bounded by the decode
    timeout, and is timed as the job's ``preview`` stage.
    """
    if not needs_preview(video["media"]) or ws.exists(PREVIEW_NAME):  # an earlier attempt
        return
    with job.timer.stage(PREVIEW):  # also checks for a cancel first
        try:
            dest = ws.path(PREVIEW_NAME)
            write_preview(_source(ws, video), dest, limits=runtime.settings().media_limits())
            ws.put(PREVIEW_NAME)
        except (JobTimeoutException, Canceled):
            raise
        except Exception as e:  # the caption matters more than the preview
            log.warning("job %s: no browser preview for %s: %s", job.job_id, video["id"], e)


def answer_question(job_id: str) -> None:
    """Answers a question from the video's cached features or context (no second decode).

    The grounded captioner's answers carry evidence: the moments they rest on."""
    from models.captioner.features import VideoFeatures
    from models.captioner.grounded_pipeline import CONTEXT_NAME, GroundedPipeline

    with attempt(job_id) as job:
        if job is None:
            return
        question = job.record["question"]
        pipe = runtime.pipeline()
        evidence: list[dict[str, Any]] = []
        with runtime.workspace(job.video()) as ws:
            stored = ws.get(CONTEXT_NAME if isinstance(pipe, GroundedPipeline) else FEATURES_NAME)
            if stored is None:
                raise Canceled()  # the video was deleted since the question was asked
            if isinstance(pipe, GroundedPipeline):
                ctx = pipe.load_context(stored)
                (found,) = runtime.generate([(ctx, question)], job.timer)
                answer, evidence = found.text, [e.to_dict() for e in found.evidence]
            else:
                answer = pipe.answer(VideoFeatures.load(stored), question, timer=job.timer)
        job.finish(
            JobState.SUCCEEDED,
            timings=job.timings,
            result={"question": question, "answer": answer, "evidence": evidence},
        )
