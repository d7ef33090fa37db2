"""What the media layer accepts: size, duration and rate limits, and the format allow-lists.

Uploaded videos are untrusted input to FFmpeg. Only demuxers on the container allow-list are
ever opened (FFmpeg's ``format_whitelist``), so playlist formats such as HLS, concat or DASH,
which make FFmpeg open further files or URLs, never run. Codecs are checked before any frame is
decoded. Settings (settings/__init__.py) build one of these from the environment.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field

# FFmpeg demuxer names. A demuxer registers several names ("mov,mp4,m4a,3gp,3g2,mj2"); FFmpeg
# matches the allow-list against each of them.
DEFAULT_CONTAINERS = ("mov", "matroska", "avi", "mpegts", "mpeg", "flv", "ogg")
DEFAULT_VIDEO_CODECS = (
    "h264",
    "hevc",
    "vp8",
    "vp9",
    "av1",
    "mpeg4",
    "mpeg2video",
    "mpeg1video",
    "mjpeg",
    "theora",
    "h263",
    "prores",
)
DEFAULT_AUDIO_CODECS = (
    "aac",
    "mp3",
    "mp2",
    "opus",
    "vorbis",
    "flac",
    "alac",
    "ac3",
    "eac3",
    "amr_nb",
    "amr_wb",
    "pcm_*",
)


class MediaLimits(BaseModel):
    """Limits enforced by :func:`models.media.probe` and every decode call.

    Attributes:
        max_duration_s: Longest video accepted, in seconds.
        max_pixels: Largest frame accepted, width x height (default: 4K UHD).
        max_fps: Highest average frame rate accepted.
        max_sample_frames: Most frames one sampling call may return.
        containers: FFmpeg demuxer names that may be opened.
        video_codecs: Video codec names that may be decoded.
        audio_codecs: Audio codec names (shell-style patterns, e.g. ``pcm_*``).
        decode_timeout_s: Wall-clock limit for one decode call in its child process.
        decode_memory_mb: Memory limit of that child process (0 means none).
    """

    model_config = ConfigDict(frozen=True)

    max_duration_s: float = Field(default=3600.0, gt=0)
    max_pixels: int = Field(default=3840 * 2160, gt=0)
    max_fps: float = Field(default=240.0, gt=0)
    max_sample_frames: int = Field(default=4096, gt=0)
    containers: tuple[str, ...] = DEFAULT_CONTAINERS
    video_codecs: tuple[str, ...] = DEFAULT_VIDEO_CODECS
    audio_codecs: tuple[str, ...] = DEFAULT_AUDIO_CODECS
    decode_timeout_s: float = Field(default=300.0, gt=0)
    decode_memory_mb: int = Field(default=4096, ge=0)

    def allows_video_codec(self, name: str) -> bool:
        """Whether a video codec may be decoded."""
        return any(fnmatchcase(name, pattern) for pattern in self.video_codecs)

    def allows_audio_codec(self, name: str) -> bool:
        """Whether an audio codec may be decoded."""
        return any(fnmatchcase(name, pattern) for pattern in self.audio_codecs)
