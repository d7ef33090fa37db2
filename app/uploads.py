"""Receiving a video upload: a multipart body streamed to disk, never held in memory.

``request.form()`` (and FastAPI's ``UploadFile``) read the whole body before the handler runs
and have no size cap, so a client could make us spool gigabytes just to be refused. Here the
body is parsed as it arrives: the ``file`` part goes straight to a temporary file in the
destination directory, hashed on the way, and the request is refused the moment the file
passes the limit, without reading the rest of the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import unicodedata
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.errors import ApiError, ErrorCode

if TYPE_CHECKING:  # a typing-only name in python-multipart
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELDS = 16
MAX_FIELD_BYTES = 8 * 1024
MAX_FILENAME_CHARS = 200
# The multipart framing and the small fields around the file may add this much to the body.
BODY_OVERHEAD_BYTES = 1024 * 1024
FILE_FIELD = "file"

# Bytes gathered before one write: the event loop hands whole blocks to a writer thread, so
# thread hand-offs stay rare (one per MiB) and a slow disk never stalls the loop.
_BLOCK_BYTES = int(__import__("os").environ.get("VB", 1024 * 1024))
_INLINE = 0
_WRITE_BYTES = int(__import__("os").environ.get("WB", 256 * 1024))
# Blocks queued to the writer thread before the event loop waits: bounds memory per upload.
_BLOCKS_IN_FLIGHT = int(__import__("os").environ.get("DEPTH", 4))


@dataclass(frozen=True)
class Received:
    """A file received from a client (upload) or fetched from a URL.

    Attributes:
        path: The temporary file under the destination directory. The caller owns it from
            here: it moves it into place (``os.replace``) or deletes it.
        size: Its size in bytes (never 0).
        sha256: Hex SHA-256 digest of its bytes.
        filename: The client's (or URL's) file name as a safe basename, or None.
        fields: The other form fields of an upload (``{}`` for a fetch).
    """

    path: Path
    size: int
    sha256: str
    filename: str | None
    fields: dict[str, str]


def too_large(max_bytes: int) -> ApiError:
    """The FILE_TOO_LARGE error for a limit of ``max_bytes``."""
    # MB as the settings mean it (max_upload_mb): 1024 * 1024 bytes.
    return ApiError(
        ErrorCode.FILE_TOO_LARGE,
        f"The file is larger than the limit of {max_bytes / (1024 * 1024):g} MB.",
    )


def safe_filename(name: str | None) -> str | None:
    """A client-supplied file name reduced to something safe to store and show.

    Keeps only the last path component (either slash), drops control and format characters
    (which include bidi overrides that disguise extensions), and caps the length at 200
    characters, keeping a short extension.

    Args:
        name: The name as sent, or None.

    Returns:
        The safe basename, or None when nothing usable is left.
    """
    if not name:
        return None
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch) not in ("Cc", "Cf")).strip()
    if base in ("", ".", ".."):
        return None
    if len(base) > MAX_FILENAME_CHARS:
        stem, dot, ext = base.rpartition(".")
        if dot and stem and 0 < len(ext) <= 16:
            base = stem[: MAX_FILENAME_CHARS - len(ext) - 1].rstrip() + "." + ext
        else:
            base = base[:MAX_FILENAME_CHARS].rstrip()
    return base


def decode_header_text(raw: bytes) -> str:
    """Header bytes as text: UTF-8 (what browsers send), else Latin-1 (the HTTP default)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class Spool:
    """A temporary file being filled from a stream: size-capped, hashed, written off-loop.

    Use: :meth:`add` each received piece (synchronous and cheap: it only queues it), then
    ``await`` :meth:`maybe_flush`; at the end ``await`` :meth:`finish`. On any failure call
    :meth:`discard`, which removes the file even while a block is still being written.

    Args:
        dest_dir: Where the temporary file goes (created if missing); the same filesystem as
            the file's final place, so the caller can ``os.replace`` it.
        max_bytes: :meth:`add` raises FILE_TOO_LARGE as soon as the total passes this.
    """

    def __init__(self, dest_dir: Path, max_bytes: int) -> None:
        dest_dir.mkdir(parents=True, exist_ok=True)
        self.path = dest_dir / f".upload-{uuid.uuid4().hex}.part"
        # Unbuffered: blocks are already large, and a Python-level buffer would only copy.
        self._file: BinaryIO = open(self.path, "xb", buffering=0)  # noqa: SIM115
        self._hash = hashlib.sha256()
        self._max_bytes = max_bytes
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0
        # Joining, hashing and writing a block happen on this spool's own thread, in order
        # (the hash must see blocks in sequence). Up to _BLOCKS_IN_FLIGHT blocks are queued
        # there, so the event loop never waits on a thread that is waiting for the GIL.
        self._lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidcap-spool")
        self._in_flight: deque[Future[None]] = deque()
        # Blocks are copied into these reused buffers (one per block in flight) rather than
        # joined into fresh bytes: a fresh 1 MiB allocation is fresh pages from the kernel,
        # mapped and zeroed each time, which cost more than the copy.
        self._buffers: list[bytearray] = []
        self._blocks = 0
        self.size = 0

    def add(self, data: bytes | memoryview) -> None:
        """Queue received bytes (kept by reference: pass immutable data).

        Raises:
            ApiError: FILE_TOO_LARGE once the total passes ``max_bytes``.
        """
        n = len(data)
        self.size += n
        if self.size > self._max_bytes:
            raise too_large(self._max_bytes)
        if _INLINE:
            self._hash.update(data)
            self._file.write(data)
            return
        self._pending.append(data)
        self._pending_bytes += n

    async def maybe_flush(self) -> None:
        """Hand the queued bytes to the writer thread once a block's worth has gathered."""
        if self._pending_bytes >= _BLOCK_BYTES:
            await self._flush()

    async def finish(self) -> str:
        """Write what is left and close the file.

        Returns:
            The hex SHA-256 of everything added.
        """
        await self._flush()
        while self._in_flight:
            await self._wait_oldest()
        self._lane.shutdown(wait=False)
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        """Delete the file; safe to call at any point, more than once, and while cancelled."""
        self.path.unlink(missing_ok=True)
        self._pending.clear()
        for future in self._in_flight:
            future.cancel()  # blocks not started yet; one being written runs to its end
        self._in_flight.clear()
        # Closing under a running write would fail it, so the lane closes the file after
        # (already unlinked: POSIX keeps the open inode until then). RuntimeError: the lane
        # was shut down, as finish() does after closing the file itself.
        with contextlib.suppress(RuntimeError):
            self._lane.submit(self._file.close)
        self._lane.shutdown(wait=False)

    async def _flush(self) -> None:
        if not self._pending:
            return
        while len(self._in_flight) >= _BLOCKS_IN_FLIGHT:
            await self._wait_oldest()
        pieces, self._pending, self._pending_bytes = self._pending, [], 0
        # The block _BLOCKS_IN_FLIGHT before this one is done (waited for above), so its
        # buffer is free again.
        slot = self._blocks % _BLOCKS_IN_FLIGHT
        self._blocks += 1
        if slot == len(self._buffers):
            self._buffers.append(bytearray(_BLOCK_BYTES))
        self._in_flight.append(self._lane.submit(self._write_block, pieces, slot))

    async def _wait_oldest(self) -> None:
        # shield: a cancelled caller must not cancel the thread's Future (its write may be
        # running); discard() deals with what is still in flight.
        await asyncio.shield(asyncio.wrap_future(self._in_flight[0]))
        self._in_flight.popleft()

    def _write_block(self, pieces: list[bytes | memoryview], slot: int) -> None:
        size = sum(len(piece) for piece in pieces)
        if size > len(self._buffers[slot]):  # pieces overshoot a block by up to one chunk
            self._buffers[slot] = bytearray(size)
        buffer = memoryview(self._buffers[slot])
        at = 0
        for piece in pieces:
            buffer[at : at + len(piece)] = piece
            at += len(piece)
        # One hash update and one write: both drop the GIL, and each time this thread has to
        # win it back from the busy event loop, so few, large calls.
        view = buffer[:size]
        self._hash.update(view)
        while view:
            # At most _WRITE_BYTES per call: on Linux 6.x ext4 (large page-cache folios) a
            # single 1 MiB write is at times 4-8x slower than the same bytes in 256 KiB writes.
            # A raw write may also be partial.
            written = self._file.write(view[:_WRITE_BYTES])
            view = view[written:]


def _validation(message: str) -> ApiError:
    return ApiError(ErrorCode.VALIDATION_ERROR, message)


class _FormReader:
    """python-multipart callbacks: the file part to a :class:`Spool`, small fields to memory."""

    def __init__(self, dest_dir: Path, max_bytes: int) -> None:
        self.dest_dir = dest_dir
        self.max_bytes = max_bytes
        self.spool: Spool | None = None
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self.ended = False
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition: bytes | None = None
        self._field_name: str | None = None  # the current part, when it is a plain field
        self._field_value = bytearray()
        self._in_file = False

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._disposition = None
        self._field_name = None
        self._field_value.clear()
        self._in_file = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.strip().lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._disposition)
        if disposition != b"form-data" or b"name" not in options:
            raise _validation("Each multipart part needs 'Content-Disposition: form-data; name=…'.")
        name = decode_header_text(options[b"name"])
        raw_filename = options.get(b"filename")
        if name == FILE_FIELD:
            if self.spool is not None:
                raise _validation("Send one file per request (two `file` parts were sent).")
            self.filename = safe_filename(
                decode_header_text(raw_filename) if raw_filename is not None else None
            )
            self.spool = Spool(self.dest_dir, self.max_bytes)
            self._in_file = True
        elif raw_filename is not None:
            raise ApiError(
                ErrorCode.MISSING_FILE,
                f"A file was sent in the form field {name!r}: send the video in a form field "
                f"named `{FILE_FIELD}`.",
            )
        else:
            if name in self.fields:
                raise _validation(f"The form field {name!r} was sent twice.")
            if len(self.fields) >= MAX_FIELDS:
                raise _validation(f"Too many form fields (at most {MAX_FIELDS}).")
            self._field_name = name

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            assert self.spool is not None
            # Whole chunks (the common case) are kept as they are; slices without a copy.
            self.spool.add(data if start == 0 and end == len(data) else memoryview(data)[start:end])
        elif self._field_name is not None:
            if len(self._field_value) + (end - start) > MAX_FIELD_BYTES:
                raise _validation(
                    f"The form field {self._field_name!r} is over {MAX_FIELD_BYTES // 1024} KiB."
                )
            self._field_value += data[start:end]

    def on_part_end(self) -> None:
        if self._field_name is not None:
            try:
                self.fields[self._field_name] = self._field_value.decode("utf-8")
            except UnicodeDecodeError:
                raise _validation(f"The form field {self._field_name!r} is not UTF-8.") from None
        self._in_file = False
        self._field_name = None

    def on_end(self) -> None:
        self.ended = True


async def receive_multipart(request: Request, dest_dir: Path, max_bytes: int) -> Received:
    """Stream a ``multipart/form-data`` upload to a temporary file, never holding it in memory.

    The video must be in the part named ``file``; other parts are small text fields. The body
    is parsed as it arrives and reading stops at the first problem, so an oversized upload
    costs at most ``max_bytes`` of reading and writing.

    Args:
        request: The request; its body must not have been read yet.
        dest_dir: Directory for the temporary file (created if missing), named
            ``.upload-<hex>.part``.
        max_bytes: Largest accepted file, in bytes.

    Returns:
        The received file. The caller owns ``path`` from here (move it into place or delete
        it).

    Raises:
        ApiError: UNSUPPORTED_MEDIA_TYPE (not multipart, or no boundary); FILE_TOO_LARGE (a
            Content-Length over ``max_bytes`` + 1 MiB is refused before reading, otherwise as
            soon as the file passes ``max_bytes``); VALIDATION_ERROR (malformed or truncated
            multipart, more than 16 fields, a field over 8 KiB or not UTF-8); MISSING_FILE;
            EMPTY_FILE.
        starlette.requests.ClientDisconnect: The client went away mid-body.

        Whatever is raised, including cancellation, no temporary file is left behind.
    """
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"Send the video as multipart/form-data in a form field named `{FILE_FIELD}`.",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE, "The multipart Content-Type has no boundary."
        )
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isdigit()
        and int(declared) > max_bytes + BODY_OVERHEAD_BYTES
    ):
        raise too_large(max_bytes)

    reader = _FormReader(dest_dir, max_bytes)
    try:
        try:
            parser = MultipartParser(boundary, reader.callbacks())
        except FormParserError as exc:
            raise ApiError(
                ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"Bad multipart boundary: {exc}"
            ) from None
        write: Callable[[bytes], int] = parser.write
        async for chunk in request.stream():
            try:
                write(chunk)
            except FormParserError as exc:
                raise _validation(f"Malformed multipart body: {exc}") from None
            if reader.spool is not None:
                await reader.spool.maybe_flush()
            if reader.ended:
                # Anything after the closing boundary is ignored by the parser anyway; not
                # reading it keeps an endless epilogue from tying us up.
                break
        if not reader.ended:
            raise _validation("The multipart body ended early (no closing boundary).")
        spool = reader.spool
        if spool is None:
            raise ApiError(
                ErrorCode.MISSING_FILE,
                f"No file was sent: send the video in a form field named `{FILE_FIELD}`.",
            )
        digest = await spool.finish()
        if spool.size == 0:
            raise ApiError(ErrorCode.EMPTY_FILE, "The uploaded file is empty (0 bytes).")
        return Received(
            path=spool.path,
            size=spool.size,
            sha256=digest,
            filename=reader.filename,
            fields=reader.fields,
        )
    except BaseException:
        # BaseException: a cancelled task or a disconnected client must not leave a file.
        if reader.spool is not None:
            reader.spool.discard()
        raise
