"""Write small real video files with PyAV: test patterns that say which frame they are.

Used by the tests, the benchmark, and anyone who wants a file to try the service on. Every
frame carries its own index as a barcode (:func:`frame_index`), and a red band along its top
edge shows which way is up, so a test can check *which* frame was sampled and that it is
upright, not only the array's shape. The audio is a tone that starts at a chosen time, so a
test can check where in the array the sound begins.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import av.audio.stream
import av.container
import av.video.stream
import numpy as np

from models.media._pyav import B_VOP, VOP_START, vop_types

BARCODE_BITS = 12
_BAR_LEFT, _BAR_RIGHT = 0.2, 0.8  # the barcode spans the middle of the picture
_BAR_TOP, _BAR_BOTTOM = 0.4, 0.75
_BAND = 0.15  # the red "up" band


@dataclass(frozen=True)
class VideoSpec:
    """What :func:`write_video` encodes.

    Attributes:
        duration: Seconds of video.
        fps: Frames per second (constant), or the base rate when ``vfr`` is set.
        width: Stored width (the encoded picture, before any display rotation).
        height: Stored height.
        video_codec: PyAV encoder name (``libx264``, ``libvpx-vp9``, ``mpeg4``, ``libx265``...).
        audio_codec: PyAV encoder name, or None for no audio track.
        sample_rate: Audio sample rate.
        tone_hz: Frequency of the tone.
        tone_start: Seconds of silence before the tone.
        gop: Frames between keyframes (None: the encoder's default).
        rotation: Clockwise display rotation written into the file (0, 90, 180, 270). The
            picture is stored turned the other way, so it shows upright, as from a phone.
        vfr: Variable frame rate: frame durations alternate between 1x and 3x ``1/fps``.
        faststart: Put the index at the front (mp4/mov only).
        bframes: Let the encoder use B-frames (reordered frames) where it can.
        packed_b_frames: Store MPEG-4 Part 2 B-frames as DivX and XviD do in AVI ("packed
            bitstream": a reference frame and the B-frame shown before it in one chunk, then
            a not-coded placeholder VOP), tagged XVID. Video only.
        max_b_frames: B-frames in a row, for encoders that use none unless told (``mpeg4``).
        pix_fmt: Pixel format encoded (``yuvj420p`` for ``mjpeg``).
        background: RGB colour of the picture around the barcode.
    """

    duration: float = 2.0
    fps: float = 30.0
    width: int = 320
    height: int = 240
    video_codec: str = "libx264"
    audio_codec: str | None = "aac"
    sample_rate: int = 48_000
    tone_hz: float = 440.0
    tone_start: float = 0.0
    gop: int | None = None
    rotation: int = 0
    vfr: bool = False
    faststart: bool = False
    bframes: bool = True
    max_b_frames: int | None = None
    packed_b_frames: bool = False
    pix_fmt: str = "yuv420p"
    background: tuple[int, int, int] = (96, 96, 96)


# A few files of each kind a user might upload; tests pick them by name. (libmp3lame in AVI
# makes the avi muxer skip a frame slot, so the AVI carries MP2; MP3 rides in Matroska.)
PRESETS: dict[str, tuple[str, VideoSpec]] = {
    "h264_aac_mp4": (".mp4", VideoSpec()),
    "vp9_opus_webm": (".webm", VideoSpec(video_codec="libvpx-vp9", audio_codec="libopus")),
    "mpeg4_mp2_avi": (".avi", VideoSpec(video_codec="mpeg4", audio_codec="mp2")),
    "h264_mp3_mkv": (".mkv", VideoSpec(audio_codec="libmp3lame")),
    "hevc_flac_mkv": (".mkv", VideoSpec(video_codec="libx265", audio_codec="flac")),
    "av1_opus_webm": (".webm", VideoSpec(video_codec="libsvtav1", audio_codec="libopus")),
    "h264_pcm_mov": (".mov", VideoSpec(audio_codec="pcm_s16le")),
    "no_audio_mp4": (".mp4", VideoSpec(audio_codec=None)),
    "rotated_mp4": (".mp4", VideoSpec(rotation=90)),
    "vfr_mp4": (".mp4", VideoSpec(vfr=True, fps=30.0, duration=3.0)),
    # AVI stamps packets in decode order: with B-frames the decoded frames' stamps are shuffled.
    "h264_bframes_avi": (".avi", VideoSpec(audio_codec="mp2")),
    "mpeg4_bframes_avi": (".avi", VideoSpec(video_codec="mpeg4", audio_codec=None, max_b_frames=2)),
    "mjpeg_avi": (
        ".avi",
        VideoSpec(video_codec="mjpeg", audio_codec="pcm_s16le", pix_fmt="yuvj420p"),
    ),
    # XviD as UCF101 and HMDB51 ship it: packed B-frames, N-VOP placeholders.
    "xvid_packed_avi": (
        ".avi",
        VideoSpec(video_codec="mpeg4", audio_codec=None, max_b_frames=2, packed_b_frames=True),
    ),
}

# Encoder settings that keep small test files fast to write and deterministic.
_ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"preset": "veryfast", "crf": "18"},
    "libx265": {"preset": "ultrafast", "crf": "18", "x265-params": "log-level=none"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"},
    "libvpx": {"deadline": "realtime", "cpu-used": "8", "crf": "10", "b": "1M"},
    "libsvtav1": {"preset": "10", "crf": "20", "svtav1-params": "enable-tf=0:scd=0"},
    "mpeg4": {"qscale": "3"},
}


def encoder_available(name: str) -> bool:
    """Whether this PyAV build has the encoder."""
    try:
        av.Codec(name, "w")
    except (av.error.FFmpegError, ValueError):
        return False
    return True


def pattern_frame(
    index: int, width: int, height: int, background: tuple[int, int, int] = (96, 96, 96)
) -> np.ndarray:
    """The test picture for frame ``index``: RGB uint8 (height, width, 3)."""
    if not 0 <= index < 2**BARCODE_BITS:
        raise ValueError(f"frame index {index} does not fit in {BARCODE_BITS} bits")
    image = np.full((height, width, 3), background, dtype=np.uint8)
    image[: max(1, round(height * _BAND))] = (230, 30, 30)
    top, bottom = round(height * _BAR_TOP), round(height * _BAR_BOTTOM)
    edges = np.linspace(width * _BAR_LEFT, width * _BAR_RIGHT, BARCODE_BITS + 1).round()
    for bit in range(BARCODE_BITS):
        on = (index >> (BARCODE_BITS - 1 - bit)) & 1
        image[top:bottom, int(edges[bit]) : int(edges[bit + 1])] = 250 if on else 5
    return image


def frame_index(image: np.ndarray) -> int:
    """Read back the index from a picture made by :func:`pattern_frame`, at any size."""
    height, width = image.shape[:2]
    row = round(height * (_BAR_TOP + _BAR_BOTTOM) / 2)
    edges = np.linspace(width * _BAR_LEFT, width * _BAR_RIGHT, BARCODE_BITS + 1)
    centres = ((edges[:-1] + edges[1:]) / 2).round().astype(int)
    bits = image[row, centres].mean(axis=-1) > 128
    return int("".join("1" if b else "0" for b in bits), 2)


def frame_times(spec: VideoSpec) -> np.ndarray:
    """Presentation time in seconds of every frame :func:`write_video` writes for ``spec``."""
    step = 1.0 / spec.fps
    if not spec.vfr:
        return np.arange(round(spec.duration * spec.fps)) * step
    times, t, i = [], 0.0, 0
    while t < spec.duration - 1e-9:
        times.append(t)
        t += step * (1 if i % 2 == 0 else 3)
        i += 1
    return np.round(np.asarray(times), 3)


def tone(spec: VideoSpec) -> np.ndarray:
    """The mono float32 audio written for ``spec``: silence, then a sine tone."""
    n = round(spec.duration * spec.sample_rate)
    t = np.arange(n) / spec.sample_rate
    wave = 0.5 * np.sin(2 * np.pi * spec.tone_hz * t)
    wave[t < spec.tone_start] = 0.0
    return wave.astype(np.float32)


def write_video(path: str | os.PathLike[str], spec: VideoSpec | None = None) -> Path:
    """Encode a test video; the container follows the file extension.

    Args:
        path: Where to write (``.mp4``, ``.mov``, ``.webm``, ``.mkv``, ``.avi``).
        spec: What to write (default: 2 s of 320x240 H.264 + AAC).

    Returns:
        The path written.
    """
    spec = spec or VideoSpec()
    path = Path(path)
    if spec.packed_b_frames:
        if spec.video_codec != "mpeg4" or spec.audio_codec is not None:
            raise ValueError("packed B-frames: MPEG-4 Part 2 (mpeg4) video only, no audio")
        plain = write_video(
            path.with_name(path.stem + "-unpacked.avi"), replace(spec, packed_b_frames=False)
        )
        try:
            return pack_b_frames(plain, path)
        finally:
            plain.unlink()
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints a banner per file otherwise
    options = {"movflags": "faststart"} if spec.faststart else {}
    with av.open(str(path), "w", options=options) as container:
        video = cast(
            av.video.stream.VideoStream,
            container.add_stream(spec.video_codec, rate=Fraction(spec.fps).limit_denominator()),
        )
        video.width, video.height, video.pix_fmt = spec.width, spec.height, spec.pix_fmt
        video.options = dict(_ENCODER_OPTIONS.get(spec.video_codec, {}))
        if spec.gop is not None:
            video.codec_context.gop_size = spec.gop
        if not spec.bframes:
            video.codec_context.max_b_frames = 0
        elif spec.max_b_frames is not None:
            video.codec_context.max_b_frames = spec.max_b_frames
        if spec.rotation:
            video.set_display_rotation(-spec.rotation)  # FFmpeg counts counter-clockwise
        time_base = Fraction(1, 1000) if spec.vfr else 1 / Fraction(spec.fps).limit_denominator()
        video.codec_context.time_base = time_base
        audio = None
        if spec.audio_codec is not None:
            audio = cast(
                av.audio.stream.AudioStream,
                container.add_stream(spec.audio_codec, rate=spec.sample_rate),
            )
            audio.layout = "mono"
        samples = tone(spec)
        written = 0  # audio samples encoded so far; audio is written interleaved, in time order
        for i, t in enumerate(frame_times(spec)):
            frame = av.VideoFrame.from_ndarray(_stored_picture(i, spec), format="rgb24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            container.mux(video.encode(frame))
            if audio is not None:
                upto = min(len(samples), round((t + 1 / spec.fps) * spec.sample_rate))
                written = _write_audio(container, audio, samples, written, upto, spec)
        container.mux(video.encode(None))
        if audio is not None:
            _write_audio(container, audio, samples, written, len(samples), spec)
            container.mux(audio.encode(None))
    return path


class _BitReader:
    """Reads an MPEG-4 Part 2 header's bits, most significant first."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def read(self, count: int) -> int:
        value = 0
        for _ in range(count):
            bit = (self.data[self.at >> 3] >> (7 - (self.at & 7))) & 1
            value, self.at = (value << 1) | bit, self.at + 1
        return value


def _time_increment_bits(headers: bytes) -> int:
    """Bits of vop_time_increment, from the video object layer header (ISO 14496-2 6.2.3)."""
    start = next(
        i for i in range(len(headers) - 3)
        if headers[i:i + 3] == b"\x00\x00\x01" and 0x20 <= headers[i + 3] <= 0x2F
    )  # fmt: skip
    bits = _BitReader(headers[start + 4 :])
    bits.read(9)  # random_accessible_vol, video_object_type_indication
    verid = 1
    if bits.read(1):  # is_object_layer_identifier
        verid = bits.read(4)
        bits.read(3)
    if bits.read(4) == 0xF:  # aspect_ratio_info: extended PAR
        bits.read(16)
    if bits.read(1):  # vol_control_parameters
        bits.read(3)  # chroma_format, low_delay
        if bits.read(1):  # vbv_parameters
            bits.read(79)
    if bits.read(2) == 3 and verid != 1:  # video_object_layer_shape: grayscale
        bits.read(4)
    bits.read(1)  # marker
    resolution = bits.read(16)
    return max(1, (resolution - 1).bit_length())


def _not_coded_vop(reference: bytes, increment_bits: int) -> bytes:
    """A not-coded P-VOP (N-VOP) at the time of the reference VOP in ``reference``."""
    bits = _BitReader(reference[reference.find(VOP_START) + 4 :])
    bits.read(2)  # vop_coding_type
    while bits.read(1):  # modulo_time_base: whole seconds since the last reference
        pass
    bits.read(1)  # marker
    increment = bits.read(increment_bits)
    # P, no new second, marker, the same time increment, marker, vop_coded = 0
    code = "01" + "0" + "1" + format(increment, f"0{increment_bits}b") + "1" + "0"
    code += "0" + "1" * (-(len(code) + 1) % 8)  # stuffing to the next byte
    return VOP_START + int(code, 2).to_bytes(len(code) // 8, "big")


def pack_b_frames(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Rewrites an MPEG-4 Part 2 AVI with B-frames the way DivX 5 and XviD store them.

    Each reference VOP goes in one chunk with the first B-VOP after it (in decode order), the
    other B-VOPs follow one per chunk, and a not-coded VOP fills the reference's own slot, so
    that every chunk is one frame slot. A "DivX503b1393p" user data tells decoders so.

    Returns:
        ``dst``.
    """
    with av.open(str(src)) as source:
        stream = source.streams.video[0]
        packets = [(bytes(p), bool(p.is_keyframe)) for p in source.demux(stream) if p.size]
        first, key = packets[0]
        increment_bits = _time_increment_bits(first)
        at = first.find(VOP_START)
        chunks = [(first[:at] + b"\x00\x00\x01\xb2DivX503b1393p" + first[at:], key)]
        i = 1
        while i < len(packets):
            reference, key = packets[i]
            j = i + 1
            while j < len(packets) and vop_types(packets[j][0])[:1] == [B_VOP]:
                j += 1
            b_vops = [data for data, _ in packets[i + 1 : j]]
            if b_vops:
                chunks.append((reference + b_vops[0], key))
                chunks += [(data, False) for data in b_vops[1:]]
                chunks.append((_not_coded_vop(reference, increment_bits), False))
            else:
                chunks.append((reference, key))
            i = j
        with av.open(str(dst), "w", format="avi") as out:
            target = out.add_stream_from_template(stream)
            target.codec_tag = "XVID"
            time_base = stream.time_base or Fraction(1, 30)
            for slot, (data, key) in enumerate(chunks):
                packet = av.Packet(data)
                packet.stream, packet.time_base = target, time_base
                packet.pts = packet.dts = slot
                packet.is_keyframe = key
                out.mux(packet)
    return Path(dst)


def _stored_picture(index: int, spec: VideoSpec) -> np.ndarray:
    """The picture as stored: like a phone, sideways when the file says to turn it."""
    if spec.rotation in (90, 270):
        upright = pattern_frame(index, spec.height, spec.width, spec.background)
    else:
        upright = pattern_frame(index, spec.width, spec.height, spec.background)
    # The player turns the stored picture clockwise by `rotation`; store it turned back.
    return np.ascontiguousarray(np.rot90(upright, k=spec.rotation // 90))


def _write_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    samples: np.ndarray,
    start: int,
    stop: int,
    spec: VideoSpec,
) -> int:
    if stop > start:
        piece = samples[start:stop][None, :]  # (1, n): packed mono
        frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
        frame.sample_rate = spec.sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, spec.sample_rate)
        container.mux(stream.encode(frame))
    return max(start, stop)


def write_audio_only(path: str | os.PathLike[str], seconds: float = 1.0) -> Path:
    """An AAC audio file with no video track (``.m4a``)."""
    spec = VideoSpec(duration=seconds)
    path = Path(path)
    with av.open(str(path), "w", format="mp4") as container:
        audio = cast(
            av.audio.stream.AudioStream, container.add_stream("aac", rate=spec.sample_rate)
        )
        audio.layout = "mono"
        samples = tone(spec)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate, frame.pts = spec.sample_rate, 0
        container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def truncate(src: str | os.PathLike[str], dst: str | os.PathLike[str], keep: float = 0.5) -> Path:
    """Copy the first ``keep`` fraction of a file, as an interrupted upload or recording would."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep)])
    return Path(dst)


def with_spec(name: str, **changes: object) -> tuple[str, VideoSpec]:
    """A preset's extension and spec with some fields changed."""
    suffix, spec = PRESETS[name]
    return suffix, replace(spec, **changes)  # type: ignore[arg-type]
