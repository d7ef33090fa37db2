"""Browser previews: an H.264/AAC mp4 copy of a video that browsers cannot play as uploaded.

Browsers play H.264, VP8/VP9 and AV1 in mp4/webm/mov with AAC, MP3, Opus, Vorbis or FLAC
audio; they do not play HEVC (reliably), MPEG-4 Part 2, MPEG-2, Theora, ProRes, PCM audio, nor
AVI, Matroska, MPEG-TS or FLV containers. :func:`needs_preview` tells the two apart from a
probe's :class:`MediaInfo`; :func:`write_preview` transcodes a small preview in the media
sandbox (a child process with the decode timeout and memory limit).

The preview keeps the video's timeline: time 0 is the first video frame, as in every time the
media layer reports (captions, segments), every frame keeps its own time (none dropped or
repeated, variable frame rates stay variable), and audio is aligned the same way
:func:`models.media.read_audio` aligns it. The display rotation is kept as metadata, which
browsers apply.
"""

from __future__ import annotations

import os
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from models.media import _pyav
from models.media.errors import MediaError, MediaErrorCode
from models.media.info import MediaInfo
from models.media.limits import MediaLimits
from models.media.reader import run

PREVIEW_NAME = "preview.mp4"  # the preview's file name, beside the video's own file
PREVIEW_CONTENT_TYPE = "video/mp4"

# What browsers play, by container (MediaInfo.container names).
_ISO_VIDEO = frozenset({"h264", "av1", "vp9"})
_ISO_AUDIO = frozenset({"aac", "mp3", "opus", "flac"})
_WEBM_VIDEO = frozenset({"vp8", "vp9", "av1"})
_WEBM_AUDIO = frozenset({"opus", "vorbis"})
PLAYABLE: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "mp4": (_ISO_VIDEO, _ISO_AUDIO),
    "mov": (_ISO_VIDEO, _ISO_AUDIO),
    "webm": (_WEBM_VIDEO, _WEBM_AUDIO),
}

# Sample rates the AAC encoder takes; anything else is resampled to 48 kHz.
_AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000})
_X264_OPTIONS = {"preset": "veryfast", "crf": "23", "profile": "high"}
_KEYFRAME_EVERY_S = 2.0  # a keyframe at least this often, so a browser seeks quickly


def needs_preview(info: MediaInfo | dict[str, Any]) -> bool:
    """Whether browsers cannot play the file as it is (so a preview should be made).

    Args:
        info: The file's probe result, or its JSON form (a video record's ``media``).
    """
    data = info.model_dump() if isinstance(info, MediaInfo) else info
    codecs = PLAYABLE.get(str(data.get("container")))
    if codecs is None:
        return True
    video_codecs, audio_codecs = codecs
    if data.get("video_codec") not in video_codecs:
        return True
    audio = data.get("audio_codec")
    return bool(data.get("has_audio")) and audio not in audio_codecs


def write_preview(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_height: int = 720,
    limits: MediaLimits | None = None,
    isolate: bool = True,
) -> None:
    """Transcode ``src`` to an H.264 (+ AAC) mp4 at ``dest``, at most ``max_height`` tall.

    The file appears at ``dest`` whole or not at all (written beside it, then renamed).

    Args:
        src: The video (an accepted upload).
        dest: Where the preview goes (``.mp4``).
        max_height: Largest displayed height in pixels; smaller videos keep their size.
        limits: What is accepted; the decode timeout and memory limit bound the transcode.
        isolate: Transcode in a child process (keep True for untrusted files).

    Raises:
        MediaError: The file is not acceptable, is damaged, or took longer than the decode
            timeout (``decode_timeout``).
        ValueError: ``max_height`` is below 2.
    """
    if max_height < 2:
        raise ValueError(f"max_height must be at least 2, got {max_height}")
    limits = limits or MediaLimits()
    dest = Path(dest)
    part = dest.with_name(f".{dest.stem}-{uuid.uuid4().hex[:12]}.part.mp4")
    try:
        run(
            _preview_job,
            os.fspath(src),
            os.fspath(part),
            max_height,
            limits,
            limits=limits,
            isolate=isolate,
        )
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


# ------------------------------------------------------------------ work done in the child


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def output_size(
    width: int, height: int, *, rotation: int, pixel_aspect: float, max_height: int
) -> tuple[int, int]:
    """The preview's stored (width, height): square pixels, even, at most ``max_height`` tall
    once turned by ``rotation`` for display."""
    square_w = width * pixel_aspect
    shown_h = square_w if rotation in (90, 270) else height
    scale = min(1.0, max_height / shown_h)
    return _even(square_w * scale), _even(height * scale)


def _preview_job(src: str, dest: str, max_height: int, limits: MediaLimits) -> None:
    found = _pyav.inspect(src, limits)  # every limit checked, the first frame's time known
    with _pyav.open_input(src, limits) as source:
        # Size and rotation come from a decoded frame (rotation is side data of frames).
        stream = _pyav.video_stream(source)
        first = _pyav.first_frame(source, stream)
        sar = stream.sample_aspect_ratio
        rotation = _pyav.display_rotation(first)
        size = output_size(
            first.width,
            first.height,
            rotation=rotation,
            pixel_aspect=float(sar) if sar else 1.0,
            max_height=max_height,
        )
    with (
        _pyav.open_input(src, limits) as source,
        av.open(dest, "w", format="mp4", options={"movflags": "+faststart"}) as out,
    ):
        video_in = _pyav.video_stream(source)
        _pyav._configure_decoder(video_in)
        audio_in = source.streams.audio[0] if source.streams.audio else None
        streams = [video_in] if audio_in is None else [video_in, audio_in]
        # Every output stream exists before the first packet is written (the header).
        video = _Video(out, found, size, rotation)
        audio = None if audio_in is None else _Audio(out, audio_in, found)
        with _pyav._decoding("making the browser preview"):
            # demux() ends with an empty packet per stream, which flushes its decoder.
            for packet in source.demux(*streams):
                if packet.stream.index == video_in.index:
                    for frame in packet.decode():
                        video.add(frame)
                elif audio is not None:
                    for frame in packet.decode():
                        audio.add(frame)
            video.close()
            if audio is not None:
                audio.close()


class _Video:
    """Scales and encodes the video frames, at their own times (0: the first frame)."""

    def __init__(self, out: Any, found: _pyav.Scan, size: tuple[int, int], rotation: int) -> None:
        self.out = out
        self.found = found
        self.size = size
        self.time_base: Fraction = found.time_base
        deltas = np.diff(found.pts)
        self.step = int(np.median(deltas)) if len(deltas) else 1
        self.last_pts: int | None = None
        self.frames = 0
        fps = Fraction(found.fps).limit_denominator(1001) if found.fps > 0 else Fraction(30)
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = dict(_X264_OPTIONS)
        stream.codec_context.time_base = self.time_base
        stream.codec_context.gop_size = max(1, round(float(fps) * _KEYFRAME_EVERY_S))
        if rotation:
            stream.set_display_rotation(-rotation)  # FFmpeg counts counter-clockwise
        self.stream = stream

    def add(self, frame: Any) -> None:
        pts = frame.pts
        if pts is None:  # no time of its own: the next slot after the last frame
            pts = self.found.origin if self.last_pts is None else self.last_pts + self.step
        pts = int(pts)
        if self.last_pts is not None and pts <= self.last_pts:
            return  # a repeated time: the scan counted it once, and so does the preview
        if pts < self.found.origin:
            return  # before the first frame of the timeline
        self.last_pts = pts
        self.frames += 1
        width, height = self.size
        picture = frame.reformat(width=width, height=height, format="yuv420p")
        picture.pts = pts - self.found.origin
        picture.time_base = self.time_base
        if frame.duration:
            picture.duration = frame.duration  # the last frame's length sets the file's end
        self.out.mux(self.stream.encode(picture))

    def close(self) -> None:
        if not self.frames:
            raise _no_frames()
        self.out.mux(self.stream.encode(None))


def _no_frames() -> MediaError:
    return MediaError(MediaErrorCode.CORRUPT_MEDIA, "no frame of the video could be decoded")


class _Audio:
    """Resamples and encodes the audio as AAC on the video's timeline.

    Audio before the first video frame is dropped, a late start is padded with silence, and
    nothing past the end of the video is kept.
    """

    def __init__(self, out: Any, source: Any, found: _pyav.Scan) -> None:
        _pyav._configure_decoder(source)
        context = source.codec_context
        self.rate = context.sample_rate if context.sample_rate in _AAC_RATES else 48_000
        self.layout = "mono" if (context.channels or 2) == 1 else "stereo"
        self.stream = out.add_stream("aac", rate=self.rate)
        self.stream.layout = self.layout
        self.stream.bit_rate = 128_000 if self.layout == "stereo" else 96_000
        self.out = out
        self.resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        self.origin_s = float(found.origin * found.time_base)
        self.limit = round(found.duration_s * self.rate)  # samples, the video's length
        self.written = 0  # samples encoded so far (the next frame's pts)
        self.skip = 0  # samples still to drop: audio from before the first video frame
        self.started = False

    def add(self, frame: Any) -> None:
        if not self.started:
            if frame.pts is None:
                return
            self.started = True
            offset = round((float(frame.pts * frame.time_base) - self.origin_s) * self.rate)
            if offset > 0:
                self._write(np.zeros((self.channels, offset), np.float32))
            self.skip = max(0, -offset)
        for piece in self.resampler.resample(frame):
            self._append(piece)

    def _append(self, piece: Any) -> None:
        samples = piece.to_ndarray()  # (channels, n), planar float
        if self.skip:
            cut = min(self.skip, samples.shape[1])
            samples, self.skip = samples[:, cut:], self.skip - cut
        self._write(samples)

    def _write(self, samples: np.ndarray) -> None:
        room = self.limit - self.written
        samples = samples[:, : max(0, room)]
        if samples.shape[1] == 0:
            return
        if samples.shape[0] != self.channels:
            samples = np.broadcast_to(samples[:1], (self.channels, samples.shape[1]))
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout=self.layout
        )
        frame.sample_rate = self.rate
        frame.pts = self.written
        frame.time_base = Fraction(1, self.rate)
        self.out.mux(self.stream.encode(frame))
        self.written += samples.shape[1]

    @property
    def channels(self) -> int:
        return 1 if self.layout == "mono" else 2

    def close(self) -> None:
        if self.started:
            for piece in self.resampler.resample(None):
                self._append(piece)
        self.out.mux(self.stream.encode(None))
