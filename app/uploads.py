"""Receiving a video upload: a multipart body streamed to disk, never held in memory.

``request.form()`` (and FastAPI's ``UploadFile``) read the whole body before the handler runs
and have no size cap, so a client could make us spool gigabytes just to be refused. Here the
body is parsed as it arrives: the ``file`` part goes straight to a temporary file in the
destination directory, hashed on the way, and the request is refused the moment the file
passes the limit, without reading the rest of the body.
"""

from __future__ import annotations

import asyncio
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

# Received bytes are written at once and hashed on a thread in blocks of this size: one
# thread hand-off per MiB.
_HASH_BLOCK_BYTES = 1024 * 1024
# Blocks queued for hashing before the event loop waits for the thread: bounds what an upload
# holds in memory (about 2 * 4 MiB) when hashing falls behind.
_HASH_BLOCKS_IN_FLIGHT = 4


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
    """A temporary file being filled from a stream: size-capped, written as it comes, hashed.

    Use: :meth:`add` each received piece, then ``await`` :meth:`maybe_flush`; at the end
    ``await`` :meth:`finish`. On any failure call :meth:`discard`, which removes the file.

    Args:
        dest_dir: Where the temporary file goes (created if missing); the same filesystem as
            the file's final place, so the caller can ``os.replace`` it.
        max_bytes: :meth:`add` raises FILE_TOO_LARGE as soon as the total passes this.
    """

    def __init__(self, dest_dir: Path, max_bytes: int) -> None:
        dest_dir.mkdir(parents=True, exist_ok=True)
        self.path = dest_dir / f".upload-{uuid.uuid4().hex}.part"
        # Default buffering: received chunks (asyncio reads up to 256 KiB) bypass the buffer
        # and go straight to write(); the small pieces around the multipart framing do not.
        self._file: BinaryIO = open(self.path, "xb")  # noqa: SIM115 (closed by finish/discard)
        self._hash = hashlib.sha256()
        self._max_bytes = max_bytes
        # Pieces written but not hashed yet, and blocks of them being hashed on this spool's
        # own thread, in order. Hashing costs about as much CPU as parsing and writing
        # together; hashlib drops the GIL, so on a thread it overlaps the event loop's work.
        self._pending: list[bytes | memoryview] = []
        self._pending_bytes = 0
        self._hashing: deque[Future[None]] = deque()
        self._lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidcap-hash")
        # A block is copied into one of these reused buffers (one per block in flight) and
        # hashed in one call: hashing each piece would hand the GIL back and forth per piece,
        # and joining into fresh bytes costs the kernel fresh pages for every block.
        self._buffers: list[bytearray] = []
        self._blocks = 0
        self.size = 0

    def add(self, data: bytes | memoryview) -> None:
        """Write received bytes now; hash them later (so pass immutable data).

        Raises:
            ApiError: FILE_TOO_LARGE once the total passes ``max_bytes`` (nothing past the
                limit is written).
            OSError: The write failed (disk full).
        """
        n = len(data)
        self.size += n
        if self.size > self._max_bytes:
            raise too_large(self._max_bytes)
        # On the event loop, as a bare streaming endpoint does: a page-cache write of a
        # received chunk is quick, and a thread hand-off per chunk would cost more than it
        # saves (measured: this layout beat writing on the hashing thread).
        self._file.write(data)
        self._pending.append(data)
        self._pending_bytes += n

    async def maybe_flush(self) -> None:
        """Hand the queued bytes to the hashing thread once a block's worth has gathered."""
        if self._pending_bytes >= _HASH_BLOCK_BYTES:
            await self._hash_pending()

    async def finish(self) -> str:
        """Hash what is left and close the file.

        Returns:
            The hex SHA-256 of everything added.
        """
        await self._hash_pending()
        while self._hashing:
            await self._wait_oldest()
        self._lane.shutdown(wait=False)
        self._file.close()
        return self._hash.hexdigest()

    def discard(self) -> None:
        """Delete the file; safe to call at any point, more than once, and while cancelled."""
        self._pending.clear()
        self._hashing.clear()
        # The hashing thread never touches the file, so it can be closed at once; a block
        # still being hashed ends harmlessly.
        self._lane.shutdown(wait=False, cancel_futures=True)
        self._file.close()
        self.path.unlink(missing_ok=True)

    async def _hash_pending(self) -> None:
        if not self._pending:
            return
        # Bounds what an upload holds in memory when hashing falls behind.
        while len(self._hashing) >= _HASH_BLOCKS_IN_FLIGHT:
            await self._wait_oldest()
        pieces, self._pending, self._pending_bytes = self._pending, [], 0
        # The block _HASH_BLOCKS_IN_FLIGHT before this one is done (waited for above), so
        # its buffer is free again.
        slot = self._blocks % _HASH_BLOCKS_IN_FLIGHT
        self._blocks += 1
        if slot == len(self._buffers):
            self._buffers.append(bytearray(_HASH_BLOCK_BYTES))
        self._hashing.append(self._lane.submit(self._hash_block, pieces, slot))

    async def _wait_oldest(self) -> None:
        oldest = self._hashing[0]
        if not oldest.done():
            # shield: a cancelled caller must not cancel the thread's Future mid-block;
            # discard() deals with what is still in flight.
            await asyncio.shield(asyncio.wrap_future(oldest))
        self._hashing.popleft()
        oldest.result()

    def _hash_block(self, pieces: list[bytes | memoryview], slot: int) -> None:
        size = sum(len(piece) for piece in pieces)
        if size > len(self._buffers[slot]):  # a block overshoots by up to one chunk
            self._buffers[slot] = bytearray(size)
        buffer = memoryview(self._buffers[slot])
        at = 0
        for piece in pieces:
            buffer[at : at + len(piece)] = piece
            at += len(piece)
        self._hash.update(buffer[:size])


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
