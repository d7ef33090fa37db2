"""vidcap's settings: one class, read from ``VIDCAP_*`` environment variables (or ``.env``).

Invalid values fail at start-up with a message naming the variable, not at the first request.
The API, the workers and the CLI all read this one class.
"""

from __future__ import annotations

from copy import copy
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models import DEFAULT_MODEL_DIR
from models.media import Backend, MediaLimits

# Comma-separated lists in the environment: VIDCAP_MEDIA_CONTAINERS=mov,matroska
CsvList = Annotated[tuple[str, ...], NoDecode]


def _limit(name: str) -> Any:
    """A MediaLimits field (its default and its bounds) as a setting's field."""
    return copy(MediaLimits.model_fields[name])


class Settings(BaseSettings):
    """Settings of the whole service (see README: Configuration).

    Each ``media_*`` setting is the media layer's limit of the same name (MediaLimits).
    """

    model_config = SettingsConfigDict(env_prefix="VIDCAP_", env_file=".env", extra="ignore")

    model: Path = DEFAULT_MODEL_DIR
    device: str | None = None
    media_backend: Backend = Backend.PYAV
    media_max_duration_s: float = _limit("max_duration_s")
    media_max_pixels: int = _limit("max_pixels")
    media_max_fps: float = _limit("max_fps")
    media_max_sample_frames: int = _limit("max_sample_frames")
    media_containers: CsvList = _limit("containers")
    media_video_codecs: CsvList = _limit("video_codecs")
    media_audio_codecs: CsvList = _limit("audio_codecs")
    media_decode_timeout_s: float = _limit("decode_timeout_s")
    media_decode_memory_mb: int = _limit("decode_memory_mb")

    @field_validator("media_containers", "media_video_codecs", "media_audio_codecs", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def media_limits(self) -> MediaLimits:
        """The media layer's limits from these settings."""
        return MediaLimits(
            **{name: getattr(self, f"media_{name}") for name in MediaLimits.model_fields}
        )


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
