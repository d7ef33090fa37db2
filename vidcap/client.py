"""A small Python client of the vidcap HTTP API.

Example::

    from vidcap.client import VidcapClient

    with VidcapClient("http://127.0.0.1:8000", "my-key") as client:
        created = client.upload("clip.mp4", segment_seconds=2)
        job = client.wait(created["job"]["id"])
        print(job["result"]["caption"])
        question = client.ask(created["video"]["id"], "what colour is the square?")
        print(client.wait(question["id"])["result"]["answer"])

Every method returns the API's JSON as plain ``dict``/``list`` values. Errors answered by the
API raise :class:`VidcapError` with the body's ``code``; a server that cannot be reached
raises it too (``server_unreachable``, ``server_timeout`` or ``connection_error``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote

import httpx

__all__ = ["TERMINAL_STATES", "VidcapClient", "VidcapError"]

TERMINAL_STATES = frozenset({"succeeded", "failed", "canceled"})
"""Job states that do not change any more."""

CHUNK_BYTES = 1024 * 1024
MAX_LONG_POLL_S = 60.0  # the API's cap on ``GET /v1/jobs/{id}?wait=``
POLL_RETRIES = 3  # consecutive connection failures tolerated while long-polling

ProgressCallback = Callable[[int, int], None]
UpdateCallback = Callable[[dict[str, Any]], None]


class VidcapError(Exception):
    """An error answered by the API, or a failure to reach it.

    Attributes:
        code: The API's stable error code (``video_not_found``, ``unauthorized``, ...), or
            ``server_unreachable``, ``server_timeout``, ``connection_error`` or
            ``wait_timeout`` for failures on the client's side.
        message: A human-readable explanation.
        status: The HTTP status, or None when no response was received.
        request_id: The server's request id (quote it in bug reports), when known.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id

    def to_dict(self) -> dict[str, Any]:
        """The error as ``{"code", "message"}``, plus ``status`` and ``request_id`` if known."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.status is not None:
            out["status"] = self.status
        if self.request_id is not None:
            out["request_id"] = self.request_id
        return out

    @classmethod
    def from_response(cls, response: httpx.Response) -> VidcapError:
        """The error an API response describes (``{"error": {"code", "message", ...}}``).

        Args:
            response: A response with a 4xx or 5xx status; its body must have been read.

        Returns:
            The error. A body not in the API's error shape (a proxy's page, say) gives the
            code ``http_<status>`` and the start of the body as the message.
        """
        request_id = response.headers.get("x-request-id")
        try:
            error = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
            request_id = error.get("request_id") or request_id
        except (ValueError, KeyError, TypeError):
            code = f"http_{response.status_code}"
            message = response.text.strip()[:500] or response.reason_phrase
        return cls(code, message, status=response.status_code, request_id=request_id)

    @classmethod
    def from_transport(cls, error: httpx.TransportError, server: str) -> VidcapError:
        """The error for a request that got no response (refused, timed out, cut off)."""
        detail = str(error) or type(error).__name__
        if isinstance(error, httpx.ConnectError):
            return cls("server_unreachable", f"cannot connect to {server}: {detail}")
        if isinstance(error, httpx.TimeoutException):
            return cls("server_timeout", f"{server} did not answer in time: {detail}")
        return cls("connection_error", f"the connection to {server} failed: {detail}")


def _is_terminal(job: dict[str, Any]) -> bool:
    return job.get("state") in TERMINAL_STATES


def _multipart_header(name: str, filename: str | None = None, content_type: str = "") -> bytes:
    # Quoting as browsers do (WHATWG): '"' and line breaks percent-encoded, the rest UTF-8.
    def escape(text: str) -> str:
        return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")

    disposition = f'form-data; name="{escape(name)}"'
    if filename is not None:
        disposition += f'; filename="{escape(filename)}"'
    lines = [f"Content-Disposition: {disposition}"]
    if content_type:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _chunks(path: Path, offset: int, length: int, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``length`` bytes of ``path`` from ``offset``, read ``size`` at a time (never whole)."""
    done = 0
    with path.open("rb") as f:
        f.seek(offset)
        while done < length:
            chunk = f.read(min(size, length - done))
            if not chunk:
                raise OSError(f"{path} shrank while it was being uploaded")
            yield chunk
            done += len(chunk)


class _MultipartFile:
    """A ``multipart/form-data`` body of small fields and one file, streamed from disk.

    The file is read in chunks of ``CHUNK_BYTES`` while the body is sent, never whole; its
    size is read up front so the request carries a ``Content-Length``.
    """

    def __init__(
        self,
        path: Path,
        fields: dict[str, str],
        on_progress: ProgressCallback | None,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.boundary = f"vidcap-{uuid.uuid4().hex}"
        self.on_progress = on_progress
        self.chunk_bytes = chunk_bytes
        dash = f"--{self.boundary}\r\n".encode()
        head = bytearray()
        for name, value in fields.items():
            head += dash + _multipart_header(name) + value.encode("utf-8") + b"\r\n"
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        head += dash + _multipart_header("file", path.name, content_type)
        self.head = bytes(head)
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def content_type(self) -> str:
        """The request's Content-Type, with the boundary."""
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int:
        """The body's length in bytes."""
        return len(self.head) + self.size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        if self.on_progress is not None:
            self.on_progress(0, self.size)
        yield self.head
        for chunk in _chunks(self.path, 0, self.size, self.chunk_bytes):
            yield chunk
            # Back here: the transport has taken the chunk.
            sent += len(chunk)
            if self.on_progress is not None:
                self.on_progress(sent, self.size)
        yield self.tail


class VidcapClient:
    """A client of a vidcap server (synchronous; one connection pool, reused).

    Use it as a context manager, or call :meth:`close` when done.

    Args:
        server: The server's base address, e.g. ``http://127.0.0.1:8000``.
        api_key: The API key, sent as ``Authorization: Bearer KEY``. Default: the
            ``VIDCAP_API_KEY`` environment variable; no key at all sends no header (for a
            server run without keys).
        timeout: Seconds to wait for a connection, or for each read or write of a request.
    """

    def __init__(self, server: str, api_key: str | None = None, *, timeout: float = 60.0) -> None:
        self.server = server.rstrip("/")
        self.timeout = timeout
        key = api_key if api_key is not None else os.environ.get("VIDCAP_API_KEY")
        headers = {"Accept": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)
        self._direct: bool | None = None  # whether the server takes direct uploads

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> VidcapClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise VidcapError.from_transport(e, self.server) from e
        if response.is_error:
            raise VidcapError.from_response(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise VidcapError(
                "invalid_response",
                f"{method} {path} answered {response.status_code} without JSON",
                status=response.status_code,
                request_id=response.headers.get("x-request-id"),
            ) from None

    @staticmethod
    def _options(
        segment_seconds: float | None,
        frames_per_second: float | None,
        max_frames: int | None,
        language: str | None = None,
        translate: bool = False,
    ) -> dict[str, Any]:
        options = {
            "segment_seconds": segment_seconds,
            "frames_per_second": frames_per_second,
            "max_frames": max_frames,
            "language": language,
            "translate": True if translate else None,
        }
        return {k: v for k, v in options.items() if v is not None}

    # ------------------------------------------------------------------ videos

    def upload(
        self,
        path: str | os.PathLike[str],
        *,
        segment_seconds: float | None = None,
        frames_per_second: float | None = None,
        max_frames: int | None = None,
        language: str | None = None,
        translate: bool = False,
        idempotency_key: str | None = None,
        on_progress: ProgressCallback | None = None,
        direct: bool | None = None,
        resume_dir: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """Upload a video file and queue its captioning.

        The file is streamed in 1 MiB chunks (never read whole) with its ``Content-Length``
        declared up front, so a server refuses an oversized file at once.

        A server that stores videos in S3 offers direct uploads, which this uses by default:
        the bytes go straight to the store on presigned links (in parts above the server's
        part size), then the upload is completed. An interrupted direct upload resumes where
        it stopped when the same file is uploaded again with the same options: the video it
        belongs to is remembered in ``resume_dir`` until the upload completes.

        Args:
            path: The video file.
            segment_seconds: Length of each timestamped segment caption (server default if
                None).
            frames_per_second: Frames sampled per second (the model's default if None).
            max_frames: At most this many frames in all.
            language: The spoken language as an ISO 639-1 code (``en``, ``ru``, ...), or
                ``auto``/None to detect it (an unknown code: ``validation_error``).
            translate: Also translate the speech to English (a ``translation`` track).
            idempotency_key: Retrying with the same key returns the first upload's video
                instead of storing a second one.
            on_progress: Called as ``on_progress(bytes_sent, total)`` with the file's bytes
                sent so far: first with 0 (or what a resumed upload had sent), then after
                each chunk, lastly with ``total``.
            direct: True: a direct upload or an error; False: always through the API; None
                (default): direct when the server offers it. A request with an
                ``idempotency_key`` goes through the API.
            resume_dir: Where unfinished direct uploads are remembered (default
                ``~/.cache/vidcap/uploads``).

        Returns:
            ``{"video": VideoPublic, "job": JobPublic}``: the job captions the video.

        Raises:
            VidcapError: The API refused the upload (``file_too_large``, ``not_a_video``,
                ...), or the server could not be reached.
            OSError: The file cannot be read.
        """
        options = self._options(segment_seconds, frames_per_second, max_frames, language, translate)
        if direct or (direct is None and idempotency_key is None and self._offers_direct()):
            return self._upload_direct(Path(path), options, on_progress, resume_dir)
        fields = {k: "true" if v is True else str(v) for k, v in options.items()}
        body = _MultipartFile(Path(path), fields, on_progress)
        headers = {"Content-Type": body.content_type, "Content-Length": str(body.content_length)}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return cast(dict[str, Any], self._json("POST", "/v1/videos", content=body, headers=headers))

    def _offers_direct(self) -> bool:
        """Whether the server takes direct uploads (asked once per client)."""
        if self._direct is None:
            try:
                self._direct = bool(self._json("GET", "/v1/uploads")["direct"])
            except VidcapError as e:
                if e.status != 404:
                    raise
                self._direct = False  # a server from before direct uploads
        return self._direct

    def _upload_direct(
        self,
        path: Path,
        options: dict[str, Any],
        on_progress: ProgressCallback | None,
        resume_dir: str | os.PathLike[str] | None,
    ) -> dict[str, Any]:
        """A direct upload (see :meth:`upload`), resumed when it was interrupted before."""
        stat = path.stat()
        size = stat.st_size
        marker = f"{self.server}|{path.resolve()}|{size}|{stat.st_mtime_ns}|"
        marker += json.dumps(options, sort_keys=True)
        folder = Path(resume_dir or Path.home() / ".cache" / "vidcap" / "uploads")
        state = folder / (hashlib.sha256(marker.encode()).hexdigest()[:32] + ".json")
        started = None
        if state.is_file():
            with contextlib.suppress(VidcapError, ValueError, KeyError):
                video_id = json.loads(state.read_text())["video_id"]
                started = self._json("GET", f"/v1/videos/{quote(video_id, safe='')}/upload")
        if started is None:
            body = {"filename": path.name, "size_bytes": size, **options}
            started = self._json("POST", "/v1/videos/direct", json=body)
            folder.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({"video_id": started["video"]["id"]}))
        upload = started["upload"]
        pieces: list[tuple[str, int, int]] = []  # (url, offset, length) still to send
        if upload["url"] is not None:
            pieces.append((upload["url"], 0, size))
        else:
            part = int(upload["part_bytes"])
            for p in upload["parts"]:
                offset = (p["number"] - 1) * part
                if not p["uploaded"]:
                    pieces.append((p["url"], offset, min(part, size - offset)))
        sent = size - sum(length for _, _, length in pieces)
        if on_progress is not None:
            on_progress(sent, size)
        # The links carry their own signature: no API key goes to the store.
        with httpx.Client(timeout=self.timeout) as store:
            for url, offset, length in pieces:
                self._put_piece(store, path, url, offset, length, sent, size, on_progress)
                sent += length
        created = cast(dict[str, Any], self._json("POST", upload["complete_url"]))
        state.unlink(missing_ok=True)
        return created

    def _put_piece(
        self,
        store: httpx.Client,
        path: Path,
        url: str,
        offset: int,
        length: int,
        before: int,
        total: int,
        on_progress: ProgressCallback | None,
    ) -> None:
        """PUTs ``length`` bytes of ``path`` from ``offset`` to a presigned link, streamed."""

        def chunks() -> Iterator[bytes]:
            done = before
            for chunk in _chunks(path, offset, length):
                yield chunk
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, total)

        try:
            response = store.put(url, content=chunks(), headers={"Content-Length": str(length)})
        except httpx.TransportError as e:
            raise VidcapError.from_transport(e, url.split("?")[0]) from e
        if response.is_error:
            raise VidcapError(
                "upload_failed",
                f"the store refused a part of the upload ({response.status_code}):"
                f" {response.text[:300]}",
                status=response.status_code,
            )

    def upload_url(
        self,
        url: str,
        *,
        segment_seconds: float | None = None,
        frames_per_second: float | None = None,
        max_frames: int | None = None,
        language: str | None = None,
        translate: bool = False,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Have the server fetch a video from an http(s) address and queue its captioning.

        Args:
            url: Where the server downloads the video from.
            segment_seconds: As for :meth:`upload`.
            frames_per_second: As for :meth:`upload`.
            max_frames: As for :meth:`upload`.
            language: As for :meth:`upload`.
            translate: As for :meth:`upload`.
            idempotency_key: As for :meth:`upload`.

        Returns:
            ``{"video": VideoPublic, "job": JobPublic}``.

        Raises:
            VidcapError: The API refused it (``url_not_allowed``, ``fetch_failed``, ...), or
                the server could not be reached.
        """
        options = self._options(segment_seconds, frames_per_second, max_frames, language, translate)
        body = {"url": url, **options}
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        return cast(dict[str, Any], self._json("POST", "/v1/videos", json=body, headers=headers))

    def video(self, video_id: str) -> dict[str, Any]:
        """A video: media facts, status, and its caption and segments once ready.

        Raises:
            VidcapError: ``video_not_found`` (404), among others.
        """
        return cast(dict[str, Any], self._json("GET", f"/v1/videos/{quote(video_id, safe='')}"))

    def videos(self, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page of your videos, newest first.

        Args:
            limit: Videos per page (1 to 100).
            cursor: ``next_cursor`` of the previous page; None for the first page.

        Returns:
            ``{"videos": [VideoPublic, ...], "next_cursor": str | None}``.
        """
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return cast(dict[str, Any], self._json("GET", "/v1/videos", params=params))

    def delete(self, video_id: str) -> None:
        """Delete a video with its file, features, questions and pending jobs.

        Raises:
            VidcapError: ``video_not_found`` (404), among others.
        """
        self._request("DELETE", f"/v1/videos/{quote(video_id, safe='')}")

    def captions(
        self, video_id: str, format: str = "json", *, track: str | None = None
    ) -> dict[str, Any] | str:
        """One caption track of a captioned video.

        Args:
            video_id: The video.
            format: ``json``, ``vtt`` (WebVTT) or ``srt``.
            track: ``speech`` (subtitles of what is said), ``description`` (the captioner's
                segments) or ``translation`` (the speech in English, when asked at upload);
                None: the server's default, speech when the video has speech.

        Returns:
            For ``json``, ``{"video_id", "track", "language", "caption", "segments"}``
            (``caption``: the whole-video description, on the description track only);
            otherwise the subtitle file's text.

        Raises:
            VidcapError: ``video_not_found``, ``video_not_ready``, ``video_failed``,
                ``track_not_found`` (the video has no such track), ...
        """
        path = f"/v1/videos/{quote(video_id, safe='')}/captions"
        params = {"format": format}
        if track is not None:
            params["track"] = track
        if format == "json":
            return cast(dict[str, Any], self._json("GET", path, params=params))
        return self._request("GET", path, params=params).text

    def ask(self, video_id: str, question: str) -> dict[str, Any]:
        """Ask a question about a captioned video.

        Returns:
            The queued question job (JobPublic); :meth:`wait` for its ``result.answer``.

        Raises:
            VidcapError: ``video_not_found``, ``video_not_ready``, ``validation_error``, ...
        """
        path = f"/v1/videos/{quote(video_id, safe='')}/questions"
        return cast(dict[str, Any], self._json("POST", path, json={"question": question}))

    def questions(self, video_id: str) -> list[dict[str, Any]]:
        """The question jobs of a video, oldest first, with their answers once ready."""
        path = f"/v1/videos/{quote(video_id, safe='')}/questions"
        return cast(list[dict[str, Any]], self._json("GET", path)["questions"])

    # ------------------------------------------------------------------ jobs

    def job(self, job_id: str) -> dict[str, Any]:
        """A job's state, stage, percent, timings, and its result or error (JobPublic)."""
        return cast(dict[str, Any], self._json("GET", f"/v1/jobs/{quote(job_id, safe='')}"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job: a queued one ends at once, a running one at its next stage.

        Returns:
            The job after the request (``canceled``, or still ``running`` with
            ``cancel_requested``).

        Raises:
            VidcapError: ``job_finished`` (409) when it already ended, ``job_not_found``, ...
        """
        path = f"/v1/jobs/{quote(job_id, safe='')}/cancel"
        return cast(dict[str, Any], self._json("POST", path))

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        on_update: UpdateCallback | None = None,
    ) -> dict[str, Any]:
        """Follow a job until it ends, and return it.

        Follows the job's server-sent events; if the stream breaks (or the server cannot
        stream), goes on by long-polling ``GET /v1/jobs/{id}?wait=``.

        Args:
            job_id: The job.
            timeout: Give up after this many seconds (None: wait as long as it takes).
            on_update: Called with the job (JobPublic) first as it is now, then after each
                change, lastly in its final state; never twice in a row with the same job.

        Returns:
            The job in a final state: ``succeeded`` (see ``result``), ``failed`` or
            ``canceled`` (see ``error``). A failed job is returned, not raised.

        Raises:
            VidcapError: ``wait_timeout`` when ``timeout`` passed first; ``job_not_found``,
                ``unauthorized``, ...; or the server could not be reached.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: dict[str, Any] | None = None

        def seen(job: dict[str, Any]) -> bool:
            nonlocal last
            if job != last:
                last = job
                if on_update is not None:
                    on_update(job)
            return _is_terminal(job)

        try:
            for job in self._events(job_id, deadline):
                if seen(job):
                    return job
        except VidcapError as e:
            if e.status is None or e.status < 500:
                raise  # the job's or the key's problem: polling would not help
        except httpx.TransportError:
            pass  # the stream broke: poll instead
        return self._poll(job_id, deadline, seen)

    def _left(self, deadline: float | None, job_id: str) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise VidcapError("wait_timeout", f"job {job_id} did not end in time")
        return left

    def _events(self, job_id: str, deadline: float | None) -> Iterator[dict[str, Any]]:
        """The jobs sent by ``GET /v1/jobs/{id}/events``, until the stream ends."""
        left = self._left(deadline, job_id)
        # The server sends a keep-alive every 15 s, so a read never waits longer than that
        # unless the connection is gone.
        read = self.timeout if left is None else min(self.timeout, left + 1)
        path = f"/v1/jobs/{quote(job_id, safe='')}/events"
        try:
            with self._http.stream(
                "GET",
                path,
                headers={"Accept": "text/event-stream"},
                timeout=httpx.Timeout(self.timeout, read=read),
            ) as response:
                if response.is_error:
                    response.read()
                    raise VidcapError.from_response(response)
                event, data = "message", list[str]()
                for line in response.iter_lines():
                    self._left(deadline, job_id)
                    if line == "":
                        if event == "job" and data:
                            yield json.loads("\n".join(data))
                        event, data = "message", []
                    elif line.startswith(":"):
                        continue  # a keep-alive
                    else:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "event":
                            event = value
                        elif name == "data":
                            data.append(value)
        except httpx.ReadTimeout:
            self._left(deadline, job_id)  # our deadline, or a silent server: poll then
            raise

    def _poll(
        self, job_id: str, deadline: float | None, seen: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """Long-polls the job until ``seen`` says it ended."""
        path = f"/v1/jobs/{quote(job_id, safe='')}"
        failures = 0
        while True:
            left = self._left(deadline, job_id)
            wait = MAX_LONG_POLL_S if left is None else max(0.0, min(MAX_LONG_POLL_S, left))
            try:
                response = self._http.get(
                    path,
                    params={"wait": round(wait, 3)},
                    timeout=httpx.Timeout(self.timeout, read=wait + self.timeout),
                )
            except httpx.TransportError as e:
                failures += 1
                if failures > POLL_RETRIES:
                    raise VidcapError.from_transport(e, self.server) from e
                pause = 2.0 ** (failures - 1)  # 1, 2, 4 s: a server restarting
                time.sleep(pause if left is None else min(pause, left))
                continue
            failures = 0
            if response.is_error:
                raise VidcapError.from_response(response)
            job = cast(dict[str, Any], response.json())
            if seen(job):
                return job
