"""The PyAV backend: probing, frame sampling and audio, in the calling process.

Everything here parses untrusted files with FFmpeg; the public functions in
:mod:`models.media.reader` run it in a child process (:mod:`models.media.sandbox`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import av.error
import numpy as np

from models.media.errors import MediaError, MediaErrorCode
from models.media.geometry import Fit, ResizePlan, plan_resize
from models.media.info import MediaInfo
from models.media.limits import MediaLimits
from models.media.sampling import SampleMode, frame_at, keyframes_in_reach, sample_times

log = logging.getLogger(__name__)

# Magic numbers of the containers we accept: a file that starts like one but does not open
# is a damaged video ("corrupt_media"), not something else ("not_a_video").
_SIGNATURES = (b"\x1a\x45\xdf\xa3", b"RIFF", b"\x00\x00\x01\xba", b"FLV", b"OggS")
_TS_PACKET = 188  # MPEG-TS: a 0x47 sync byte starts every 188-byte packet
# Formats whose header duration is trustworthy enough to detect a truncated file by.
_HEADER_DURATION_FORMATS = ("mov", "matroska")
# How far before the asked start an audio seek lands (the decoder's warm-up is cut off).
_SEEK_MARGIN_S = 0.5


@dataclass(frozen=True)
class FrameRequest:
    """What :func:`sample` should return (see :func:`models.media.sample_frames`)."""

    num_frames: int | None = None
    fps: float | None = None
    size: int | tuple[int, int] = 224
    fit: Fit = Fit.CROP
    mode: SampleMode = SampleMode.EXACT
    start: float = 0.0
    end: float | None = None


@dataclass(frozen=True)
class Scan:
    """What one demux pass over the video packets (no decoding) tells us.

    Attributes:
        codec: The video codec's name.
        time_base: The video stream's time base.
        pts: Sorted presentation timestamps of every video frame, in ``time_base`` ticks.
        key_pts: Sorted presentation timestamps of the keyframes.
        duration_s: First frame's start to last frame's end, seconds.
        data_end_s: Latest packet end over all streams, seconds on the file's clock.
        key_chunks: For keyframes stored DivX-style ("packed B-frames", MPEG-4 Part 2), the
            stamp of the chunk that holds each one (it comes before the keyframe's own slot).
    """

    codec: str
    time_base: Fraction
    pts: np.ndarray
    key_pts: np.ndarray
    duration_s: float
    data_end_s: float
    key_chunks: dict[int, int] = field(default_factory=dict)

    @property
    def packed(self) -> bool:
        """Packed B-frames: the decoder's stamps after a seek are off, and a keyframe's slot
        comes from the scan instead."""
        return bool(self.key_chunks)

    @property
    def fps(self) -> float:
        """Average frame rate."""
        return len(self.pts) / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def origin(self) -> int:
        """Presentation timestamp of the first frame: time 0 of the video's timeline."""
        return int(self.pts[0])

    def seconds(self, pts: np.ndarray | int) -> np.ndarray:
        """Ticks -> seconds on the video's timeline."""
        return (np.asarray(pts, dtype=np.float64) - self.origin) * float(self.time_base)


# --------------------------------------------------------------------------- opening files


def _looks_like_video(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(_TS_PACKET + 1)
    transport_stream = len(head) > _TS_PACKET and head[0] == head[_TS_PACKET] == 0x47
    return (
        transport_stream
        or head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")
        or any(head.startswith(sig) for sig in _SIGNATURES)
    )


@contextmanager
def open_input(path: str | os.PathLike[str], limits: MediaLimits) -> Iterator[Any]:
    """Open an untrusted file with only allow-listed demuxers and the ``file`` protocol.

    Raises:
        MediaError: ``file_not_found``, ``not_a_video``, ``unsupported_container`` or
            ``corrupt_media``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MediaError(MediaErrorCode.FILE_NOT_FOUND, f"no such file: {path}")
    if os.path.getsize(path) == 0:
        raise MediaError(MediaErrorCode.NOT_A_VIDEO, "the file is empty")
    options = {"format_whitelist": ",".join(limits.containers), "protocol_whitelist": "file"}
    try:
        container = av.open(path, options=options, metadata_errors="ignore")
    except av.error.InvalidDataError:
        if _looks_like_video(path):
            raise MediaError(
                MediaErrorCode.CORRUPT_MEDIA,
                "the file looks like a video but cannot be read: it may be truncated or damaged",
            ) from None
        raise MediaError(
            MediaErrorCode.NOT_A_VIDEO, "the file is not a video format vidcap can read"
        ) from None
    except av.error.ArgumentError:
        # FFmpeg recognised the format, but it is not on the allow-list (EINVAL).
        raise MediaError(
            MediaErrorCode.UNSUPPORTED_CONTAINER,
            "this container format is not accepted; use one of: "
            + ", ".join(_friendly_containers(limits)),
        ) from None
    except av.error.FFmpegError as e:
        raise MediaError(MediaErrorCode.CORRUPT_MEDIA, f"the file cannot be opened: {e}") from None
    try:
        yield container
    finally:
        container.close()


def _friendly_containers(limits: MediaLimits) -> list[str]:
    names = {"mov": "mp4/mov", "matroska": "mkv/webm", "mpegts": "ts"}
    return [names.get(c, c) for c in limits.containers]


def _container_name(container: Any, video_codec: str) -> str:
    name = container.format.name
    if name.startswith("mov,"):
        brand = str(container.metadata.get("major_brand", "")).strip()
        return "mov" if brand == "qt" else "mp4"
    if name.startswith("matroska"):
        webm = {"vp8", "vp9", "av1"}
        return "webm" if video_codec in webm else "mkv"
    return str(name.split(",")[0])


def codec_name(stream: Any) -> str:
    """The codec's own name (``av1``), not the decoder's (``libdav1d``)."""
    return str(stream.codec_context.codec.canonical_name)


def video_stream(container: Any) -> Any:
    """The first real video stream (cover art in audio files does not count)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    raise MediaError(
        MediaErrorCode.NO_VIDEO_STREAM, "the file has no video track (is it an audio file?)"
    )


def _audio_stream(container: Any) -> Any | None:
    return container.streams.audio[0] if container.streams.audio else None


@contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Turn FFmpeg's errors while reading packets or frames into ``corrupt_media``."""
    try:
        yield
    except av.error.FFmpegError as e:
        raise MediaError(MediaErrorCode.CORRUPT_MEDIA, f"{what} failed: {e}") from None


# --------------------------------------------------------------------------- probing


def _check_header(container: Any, stream: Any, limits: MediaLimits) -> None:
    codec = codec_name(stream)
    if not limits.allows_video_codec(codec):
        raise MediaError(
            MediaErrorCode.UNSUPPORTED_CODEC,
            f"video codec {codec!r} is not accepted; accepted: {', '.join(limits.video_codecs)}",
        )
    audio = _audio_stream(container)
    if audio is not None and not limits.allows_audio_codec(codec_name(audio)):
        raise MediaError(
            MediaErrorCode.UNSUPPORTED_CODEC,
            f"audio codec {codec_name(audio)!r} is not accepted; "
            f"accepted: {', '.join(limits.audio_codecs)}",
        )
    width, height = stream.codec_context.width, stream.codec_context.height
    if width <= 0 or height <= 0:
        raise MediaError(MediaErrorCode.CORRUPT_MEDIA, "the video track has no picture size")
    if width * height > limits.max_pixels:
        raise MediaError(
            MediaErrorCode.RESOLUTION_TOO_LARGE,
            f"frames of {width}x{height} exceed the limit of {limits.max_pixels} pixels",
        )
    if container.duration is not None:
        _check_duration(container.duration / av.time_base, limits)


def _check_duration(seconds: float, limits: MediaLimits) -> None:
    if seconds > limits.max_duration_s:
        raise MediaError(
            MediaErrorCode.VIDEO_TOO_LONG,
            f"the video lasts {seconds:.1f} s; the limit is {limits.max_duration_s:.0f} s",
        )


VOP_START = b"\x00\x00\x01\xb6"  # MPEG-4 Part 2: a video object plane (a frame) begins
B_VOP = 2  # vop_coding_type of a B-VOP


def vop_types(data: bytes) -> list[int]:
    """The coding types (0 I, 1 P, 2 B, 3 S) of the VOPs in an MPEG-4 Part 2 packet."""
    types = []
    at = data.find(VOP_START)
    while 0 <= at < len(data) - 4:
        types.append(data[at + 4] >> 6)
        at = data.find(VOP_START, at + 4)
    return types


def scan(container: Any, stream: Any, limits: MediaLimits) -> Scan:
    """Demux every packet once (no decoding): frame times, keyframes, true duration.

    Raises:
        MediaError: ``corrupt_media`` when the file holds no frames, fewer frames than its
            header promises, or ends well before the duration its header states;
            ``video_too_long`` when there are more packets than the limits allow.
    """
    tb = stream.time_base
    max_packets = int(limits.max_duration_s * limits.max_fps) + 1
    pts: list[int] = []
    keys: list[int] = []
    last_duration = 0
    data_end = 0.0
    mpeg4 = stream.codec_context.name == "mpeg4"
    moving: int | None = None  # the chunk of a packed keyframe whose slot is still to come
    key_chunks: dict[int, int] = {}
    with _decoding("reading the file"):
        for packet in container.demux():
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None or packet.size == 0:
                continue
            if packet.time_base is not None:
                end = float((ts + (packet.duration or 0)) * packet.time_base)
                data_end = max(data_end, end)
            if packet.stream.index != stream.index:
                continue
            pts.append(ts)
            key = bool(packet.is_keyframe)
            if mpeg4 and (key or moving is not None):
                # DivX/XviD "packed B-frames": a keyframe's chunk also carries the B-VOP shown
                # before it; the keyframe itself is shown at the slot of the first chunk after
                # it that is not a B-VOP (the placeholder, a not-coded VOP).
                vops = vop_types(bytes(packet))
                if moving is not None and vops[:1] != [B_VOP]:
                    keys.append(ts)
                    key_chunks[ts] = moving
                    moving = None
                if key and len(vops) >= 2:
                    moving, key = ts, False
            if key:
                keys.append(ts)
            last_duration = packet.duration or 0
            if len(pts) > max_packets:
                raise MediaError(
                    MediaErrorCode.VIDEO_TOO_LONG,
                    f"the video has more than {max_packets} frames, more than the limits allow",
                )
    if not pts:
        raise MediaError(MediaErrorCode.CORRUPT_MEDIA, "the video track holds no frames")
    all_pts = np.unique(np.asarray(pts, dtype=np.int64))
    key_pts = np.unique(np.asarray(keys or [pts[0]], dtype=np.int64))
    deltas = np.diff(all_pts)
    if last_duration <= 0:
        last_duration = int(np.median(deltas)) if len(deltas) else 1
    duration_s = float((int(all_pts[-1]) - int(all_pts[0]) + last_duration) * tb)

    promised = stream.frames or 0
    if promised and len(all_pts) < promised * 0.98 - 1:
        raise MediaError(
            MediaErrorCode.CORRUPT_MEDIA,
            f"the file is truncated: its header promises {promised} frames "
            f"but it holds {len(all_pts)}",
        )
    header_s = container.duration / av.time_base if container.duration else None
    start_s = container.start_time / av.time_base if container.start_time else 0.0
    if header_s and container.format.name.split(",")[0] in _HEADER_DURATION_FORMATS:
        held = data_end - start_s
        if held < header_s - max(0.5, 0.05 * header_s):
            raise MediaError(
                MediaErrorCode.CORRUPT_MEDIA,
                f"the file is truncated: its header says {header_s:.2f} s "
                f"but its data ends at {held:.2f} s",
            )
    return Scan(codec_name(stream), tb, all_pts, key_pts, duration_s, data_end, key_chunks)


def _is_variable(pts: np.ndarray) -> bool:
    deltas = np.diff(pts)
    if len(deltas) < 2:
        return False
    median = float(np.median(deltas))
    return float(deltas.max() - deltas.min()) > max(2.0, 0.1 * median)


def display_rotation(frame: Any) -> int:
    """Clockwise display rotation of a decoded frame (FFmpeg stores it counter-clockwise)."""
    return round(-float(frame.rotation or 0) / 90.0) * 90 % 360


def first_frame(container: Any, stream: Any) -> Any:
    with _decoding("decoding the first frame"):
        for frame in container.decode(stream):
            return frame
    raise MediaError(MediaErrorCode.CORRUPT_MEDIA, "no frame of the video could be decoded")


def _configure_decoder(stream: Any) -> None:
    # Frame + slice threads, one per CPU this process may use. FFmpeg's own default is
    # CPUs + 1, which measured 8-11% slower on 2 cores (bench/decode.py).
    stream.codec_context.thread_type = "AUTO"
    stream.codec_context.thread_count = max(1, len(os.sched_getaffinity(0)))


def inspect(path: str, limits: MediaLimits) -> Scan:
    """Check a file against every limit and scan its packets, decoding nothing.

    This is all that sampling and audio need; :func:`probe` adds the facts that take a
    decoded frame (rotation) for the MediaInfo.
    """
    with open_input(path, limits) as container:
        stream = video_stream(container)
        _check_header(container, stream, limits)
        found = scan(container, stream, limits)
    _check_duration(found.duration_s, limits)
    if found.fps > limits.max_fps:
        raise MediaError(
            MediaErrorCode.FRAME_RATE_TOO_HIGH,
            f"the video runs at {found.fps:.1f} frames/s; the limit is {limits.max_fps:.0f}",
        )
    return found


def probe(path: str, limits: MediaLimits, found: Scan | None = None) -> MediaInfo:
    """Probe a file in this process (see :func:`models.media.probe`).

    ``found``: the file's :func:`inspect` result, when the caller already has it.
    """
    found = found or inspect(path, limits)
    with open_input(path, limits) as container:
        stream = video_stream(container)
        _configure_decoder(stream)
        rotation = display_rotation(first_frame(container, stream))
        audio = _audio_stream(container)
        sar = stream.sample_aspect_ratio
        pixel_aspect = float(sar) if sar else 1.0
        width, height = stream.codec_context.width, stream.codec_context.height
        display_w, display_h = round(width * pixel_aspect), height
        if rotation in (90, 270):
            display_w, display_h = display_h, display_w
        return MediaInfo(
            container=_container_name(container, found.codec),
            format_name=container.format.name,
            size_bytes=os.path.getsize(path),
            duration_s=round(found.duration_s, 6),
            video_codec=found.codec,
            width=width,
            height=height,
            rotation=rotation,
            display_width=display_w,
            display_height=display_h,
            fps=round(found.fps, 4),
            fps_variable=_is_variable(found.pts),
            frame_count=len(found.pts),
            frame_count_exact=True,
            keyframe_count=len(found.key_pts),
            has_audio=audio is not None,
            audio_codec=codec_name(audio) if audio is not None else None,
            sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            channels=audio.codec_context.channels if audio is not None else None,
        )


# --------------------------------------------------------------------------- frames


class _Converter:
    """Decoded frame -> final RGB array, resized in the decoder; one conversion per frame."""

    def __init__(self, request: FrameRequest, stream: Any) -> None:
        self.request = request
        self.stream = stream
        self.plan: ResizePlan | None = None
        self.cache: dict[int, np.ndarray] = {}

    def __call__(self, frame: Any) -> np.ndarray:
        key = int(frame.pts)
        if key not in self.cache:
            if self.plan is None:
                self.plan = resize_plan_for(frame, self.stream, self.request)
            plan = self.plan
            rgb = frame.to_ndarray(
                width=plan.decode_width, height=plan.decode_height, format="rgb24"
            )
            self.cache[key] = plan.finish(rgb)
        return self.cache[key]


def resize_plan_for(frame: Any, stream: Any, request: FrameRequest) -> ResizePlan:
    """The resize plan for a stream's frames, from its first decoded frame."""
    sar = stream.sample_aspect_ratio
    return plan_resize(
        frame.width,
        frame.height,
        rotation=display_rotation(frame),
        pixel_aspect=float(sar) if sar else 1.0,
        size=request.size,
        fit=request.fit,
    )


# Containers whose timestamps count packets in decode order: AVI stamps each packet with its
# slot, so with B-frames the decoder's frames (in presentation order) carry shuffled stamps,
# and some carry none.
_DECODE_ORDER_FORMATS = frozenset({"avi"})


def restamp_table(container: Any, found: Scan) -> np.ndarray | None:
    """For a decode-order container, the presentation stamps to give decoded frames in turn
    (the scan's sorted packet stamps); None where the decoder's own stamps are right."""
    if container.format.name.split(",")[0] in _DECODE_ORDER_FORMATS:
        return found.pts
    return None


def _decode_from(
    container: Any,
    stream: Any,
    seek_pts: int,
    restamp: np.ndarray | None = None,
    packed: bool = False,
) -> Iterator[Any]:
    """Frames in presentation order, starting at the keyframe at or before ``seek_pts``.

    ``restamp`` (:func:`restamp_table`): the decoder puts frames out in presentation order
    but with the container's decode-order stamps; the n-th frame after the keyframe gets the
    n-th stamp from the keyframe's own (a keyframe's stamp is the same in both orders; with
    ``packed`` B-frames the decoder's is off, and the keyframe's is ``seek_pts``, found by
    the scan). A truncated file still ends early: its missing frames are never put out.
    """
    container.seek(seek_pts, stream=stream, backward=True, any_frame=False)
    at: int | None = None  # index in ``restamp`` of the next frame put out
    for packet in container.demux(stream):
        for frame in packet.decode():
            if restamp is None:
                if frame.pts is not None:
                    yield frame
                continue
            if at is None:
                anchor = frame.pts if frame.pts is not None and not packed else seek_pts
                at = int(np.searchsorted(restamp, anchor))
            if at >= len(restamp):
                return
            frame.pts = int(restamp[at])
            at += 1
            yield frame


def _exact(
    container: Any, stream: Any, info: Scan, wanted: np.ndarray, convert: _Converter
) -> dict[int, np.ndarray]:
    """Decode the frames whose pts are ``wanted`` (sorted), seeking only past keyframes.

    Returns:
        pts -> image, for every pts wanted (or MediaError when one is not produced).
    """
    out: dict[int, np.ndarray] = {}
    restamp = restamp_table(container, info)
    frames: Iterator[Any] | None = None
    last_pts: int | None = None  # newest frame pulled from the decoder
    shown: Any = None  # newest frame with pts <= the current target
    ahead: Any = None  # a frame pulled past the current target, kept for the next one
    for want in wanted:
        want = int(want)
        key_index = int(np.searchsorted(info.key_pts, want, side="right")) - 1
        for attempt in range(max(key_index, 0) + 1):
            key = int(info.key_pts[max(key_index - attempt, 0)])
            if frames is None or attempt > 0 or (last_pts is not None and key > last_pts):
                frames = _decode_from(container, stream, key, restamp, info.packed)
                shown, ahead = None, None
            with _decoding("decoding video"):
                while True:
                    frame = ahead if ahead is not None else next(frames, None)
                    ahead = None
                    if frame is None:
                        break
                    last_pts = int(frame.pts)
                    if frame.pts <= want:
                        shown = frame
                        continue
                    ahead = frame
                    break
            if shown is not None:
                break
            # The seek landed after the target (a sparse or wrong index): start earlier.
            frames = None
        if shown is None or int(shown.pts) != want:
            at = float(info.seconds(want))
            raise MediaError(
                MediaErrorCode.CORRUPT_MEDIA,
                f"the frame at {at:.3f} s could not be decoded (the file may be damaged)",
            )
        out[want] = convert(shown)
    return out


def _keyframes(
    container: Any,
    stream: Any,
    keys: np.ndarray,
    convert: _Converter,
    chunks: dict[int, int] | None = None,
) -> dict[int, np.ndarray]:
    """Decode only the given keyframes (pts from the scan): one seek and one packet each.

    ``chunks``: the stamp of the chunk holding a keyframe, where it is not the keyframe's own
    (packed B-frames, :class:`Scan`)."""
    out: dict[int, np.ndarray] = {}
    codec = stream.codec_context
    for key in keys:
        key = int(key)
        floor = (chunks or {}).get(key, key)
        container.seek(floor, stream=stream, backward=True, any_frame=False)
        frame = None
        with _decoding("decoding a keyframe"):
            for packet in container.demux(stream):
                if packet.size == 0 or not packet.is_keyframe:
                    continue
                if packet.pts is not None and packet.pts < floor:
                    continue  # an earlier keyframe than asked for (sparse index)
                decoded = codec.decode(packet) or codec.decode(None)
                frame = decoded[0] if decoded else None
                break
        if frame is None or frame.pts is None:
            raise MediaError(
                MediaErrorCode.CORRUPT_MEDIA,
                f"the keyframe at {float(stream.time_base * key):.3f} s could not be decoded",
            )
        out[key] = convert(frame)
    return out


def check_count(request: FrameRequest, duration_s: float, limits: MediaLimits) -> np.ndarray:
    """The sampling instants for a request, refusing requests beyond the per-call cap."""
    times = sample_times(
        duration_s,
        num_frames=request.num_frames,
        fps=request.fps,
        start=request.start,
        end=request.end,
    )
    if len(times) > limits.max_sample_frames:
        raise MediaError(
            MediaErrorCode.TOO_MANY_FRAMES,
            f"{len(times)} frames requested; at most {limits.max_sample_frames} per call",
        )
    return times


def _prime(container: Any, stream: Any) -> None:
    """Lets the decoder read the stream's first chunk, where DivX and XviD say that B-frames
    are packed; a decoder that starts at a later keyframe never learns it and drops every
    B-frame that shares a chunk."""
    container.seek(0, stream=stream, backward=True, any_frame=False)
    with _decoding("reading the first frame"):
        for packet in container.demux(stream):
            if packet.size:
                stream.codec_context.decode(packet)
                break


def sample_scanned(
    path: str, request: FrameRequest, limits: MediaLimits, found: Scan
) -> tuple[np.ndarray, np.ndarray]:
    """Sample frames from a file already checked and scanned by :func:`inspect`."""
    times = check_count(request, found.duration_s, limits)
    frame_times = found.seconds(found.pts)
    wanted = found.pts[frame_at(frame_times, times)]  # pts of the frame shown at each instant
    with open_input(path, limits) as container:
        stream = video_stream(container)
        _configure_decoder(stream)
        if found.packed:
            _prime(container, stream)
        convert = _Converter(request, stream)
        by_pts: dict[int, np.ndarray] = {}
        exact = np.ones(len(times), dtype=bool)
        if request.mode is SampleMode.FAST:
            nearest, close = keyframes_in_reach(found.seconds(found.key_pts), times, request.start)
            keys = found.key_pts[nearest]
            by_pts.update(
                _keyframes(container, stream, np.unique(keys[close]), convert, found.key_chunks)
            )
            wanted = np.where(close, keys, wanted)
            exact = ~close
        if exact.any():
            by_pts.update(_exact(container, stream, found, np.unique(wanted[exact]), convert))
    images = np.stack([by_pts[int(p)] for p in wanted])  # (T, H, W, 3)
    return images, found.seconds(wanted)


# --------------------------------------------------------------------------- audio


def read_audio_scanned(
    path: str,
    sample_rate: int,
    limits: MediaLimits,
    found: Scan,
    start: float = 0.0,
    end: float | None = None,
) -> np.ndarray | None:
    """Decode the audio track to mono float32 at ``sample_rate``, on the video's timeline.

    Only the span ``[start, end)`` (seconds on the video's timeline, ``end`` None: the end of
    the video) is decoded: the file is seeked to ``start`` and decoding stops after ``end``.
    Sample 0 of the result is at ``start``; audio before the first video frame is dropped, a
    late start is padded with silence, and nothing past the end of the video is decoded.
    """
    stop_s = found.duration_s if end is None else min(end, found.duration_s)
    with open_input(path, limits) as container:
        stream = _audio_stream(container)
        if stream is None:
            return None
        _configure_decoder(stream)
        origin_s = float(found.origin * found.time_base)
        if start > 0:
            # Land a little early: the decoder settles on the first packets after a seek, and
            # what comes before ``start`` is cut below by its timestamps.
            at = max(origin_s + start - _SEEK_MARGIN_S, 0.0)
            with _decoding("seeking in the audio"):
                container.seek(int(at / stream.time_base), stream=stream, backward=True)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        first_s: float | None = None
        with _decoding("decoding audio"):
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = float(frame.pts * frame.time_base)
                if first_s is None:
                    first_s = t
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                if t - origin_s > stop_s:
                    break
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    if first_s is None or stop_s <= start:
        return np.zeros(0, dtype=np.float32)
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    offset = round((first_s - origin_s - start) * sample_rate)
    if offset > 0:
        audio = np.concatenate([np.zeros(offset, dtype=np.float32), audio])
    elif offset < 0:
        audio = audio[-offset:]
    limit = round((stop_s - start) * sample_rate)
    return np.ascontiguousarray(audio[:limit], dtype=np.float32)
