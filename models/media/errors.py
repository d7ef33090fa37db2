"""The media layer's error vocabulary: every failure a user can cause has a stable code.

The API maps these codes to HTTP statuses in one place (app/errors.py); the CLI prints them as
``{"error": {"code": ..., "message": ...}}``. Messages are for people: they say what was wrong
with the file and, where it helps, what is accepted instead.
"""

from __future__ import annotations

from enum import StrEnum


class MediaErrorCode(StrEnum):
    """Stable machine-readable codes. Never rename one: clients match on them."""

    FILE_NOT_FOUND = "file_not_found"
    NOT_A_VIDEO = "not_a_video"  # empty, text, random bytes, a format FFmpeg does not know
    UNSUPPORTED_CONTAINER = "unsupported_container"  # known format, not on the allow-list
    UNSUPPORTED_CODEC = "unsupported_codec"
    NO_VIDEO_STREAM = "no_video_stream"  # audio-only files, cover-art-only files
    CORRUPT_MEDIA = "corrupt_media"  # truncated, undecodable, broken index
    VIDEO_TOO_LONG = "video_too_long"
    RESOLUTION_TOO_LARGE = "resolution_too_large"
    FRAME_RATE_TOO_HIGH = "frame_rate_too_high"
    TOO_MANY_FRAMES = "too_many_frames"  # a sampling request beyond the per-call cap
    DECODE_TIMEOUT = "decode_timeout"
    DECODER_CRASHED = "decoder_crashed"  # killed by a signal or out of its memory budget


class MediaError(Exception):
    """A problem with a media file (not with the caller's code).

    Args:
        code: One of :class:`MediaErrorCode`.
        message: A sentence for the person who supplied the file.
    """

    def __init__(self, code: MediaErrorCode | str, message: str) -> None:
        super().__init__(str(code), message)
        self.code = MediaErrorCode(code)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.value}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        """The error as the JSON body the CLI and the API return."""
        return {"code": self.code.value, "message": self.message}
