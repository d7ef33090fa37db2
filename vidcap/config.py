"""vidcap's settings: one class, read from ``VIDCAP_*`` environment variables (or ``.env``).

Invalid values fail at start-up with a message naming the variable, not at the first request.
The API, the workers and the CLI all read this one class.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.media import Backend, MediaLimits
from models.media.limits import DEFAULT_AUDIO_CODECS, DEFAULT_CONTAINERS, DEFAULT_VIDEO_CODECS

# Comma-separated lists in the environment: VIDCAP_MEDIA_CONTAINERS=mov,matroska
CsvList = Annotated[tuple[str, ...], NoDecode]


class Settings(BaseSettings):
    """Settings of the whole service (see README: Configuration)."""

    model_config = SettingsConfigDict(env_prefix="VIDCAP_", env_file=".env", extra="ignore")

    media_backend: Backend = Backend.PYAV
    media_max_duration_s: float = Field(default=3600.0, gt=0)
    media_max_pixels: int = Field(default=3840 * 2160, gt=0)
    media_max_fps: float = Field(default=240.0, gt=0)
    media_max_sample_frames: int = Field(default=4096, gt=0)
    media_containers: CsvList = DEFAULT_CONTAINERS
    media_video_codecs: CsvList = DEFAULT_VIDEO_CODECS
    media_audio_codecs: CsvList = DEFAULT_AUDIO_CODECS
    media_decode_timeout_s: float = Field(default=300.0, gt=0)
    media_decode_memory_mb: int = Field(default=4096, ge=0)

    @field_validator("media_containers", "media_video_codecs", "media_audio_codecs", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def media_limits(self) -> MediaLimits:
        """The media layer's limits from these settings."""
        return MediaLimits(
            max_duration_s=self.media_max_duration_s,
            max_pixels=self.media_max_pixels,
            max_fps=self.media_max_fps,
            max_sample_frames=self.media_max_sample_frames,
            containers=self.media_containers,
            video_codecs=self.media_video_codecs,
            audio_codecs=self.media_audio_codecs,
            decode_timeout_s=self.media_decode_timeout_s,
            decode_memory_mb=self.media_decode_memory_mb,
        )


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
