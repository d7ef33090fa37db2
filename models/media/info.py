"""MediaInfo: what probing a file tells the rest of the system."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class MediaInfo(BaseModel):
    """Facts about an accepted video file.

    Times are in seconds on the video's own timeline: 0 is the first video frame.

    Attributes:
        container: Short container name (``mp4``, ``mov``, ``webm``, ``mkv``, ``avi``, ...).
        format_name: FFmpeg's demuxer name for it.
        size_bytes: File size.
        duration_s: From the first video frame's start to the last one's end, measured from
            the packets, not taken from the header.
        video_codec: FFmpeg codec name (``h264``, ``hevc``, ``vp9``, ``av1``, ...).
        width: Stored picture width in pixels.
        height: Stored picture height in pixels.
        rotation: Clockwise degrees (0, 90, 180, 270) a player turns the picture for display;
            phone videos shot upright usually say 90.
        display_width: Width as shown: after rotation and non-square pixels.
        display_height: Height as shown.
        fps: Average frame rate (frames / duration).
        fps_variable: True when frame durations differ by more than 10%.
        frame_count: Number of video frames.
        frame_count_exact: True when counted from the packets; False when estimated.
        keyframe_count: Number of keyframes (random-access points).
        has_audio: Whether there is an audio track.
        audio_codec: FFmpeg codec name of the audio track.
        sample_rate: Audio sample rate in Hz.
        channels: Audio channel count.
    """

    model_config = ConfigDict(frozen=True)

    container: str
    format_name: str
    size_bytes: int
    duration_s: float
    video_codec: str
    width: int
    height: int
    rotation: int
    display_width: int
    display_height: int
    fps: float
    fps_variable: bool
    frame_count: int
    frame_count_exact: bool
    keyframe_count: int
    has_audio: bool
    audio_codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
