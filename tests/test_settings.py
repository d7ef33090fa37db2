"""Settings: environment variables become media limits; bad values fail at start-up."""

import pytest
from pydantic import ValidationError

from settings import Settings


def test_defaults_are_usable():
    limits = Settings().media_limits()
    assert limits.max_duration_s == 3600 and "mov" in limits.containers


def test_environment_overrides_limits_and_lists(monkeypatch):
    monkeypatch.setenv("VIDCAP_MEDIA_MAX_FPS", "60")
    monkeypatch.setenv("VIDCAP_MEDIA_CONTAINERS", "mov, matroska")
    monkeypatch.setenv("VIDCAP_MEDIA_BACKEND", "decord")
    settings = Settings()
    assert settings.media_limits().max_fps == 60
    assert settings.media_limits().containers == ("mov", "matroska")
    assert settings.media_backend == "decord"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VIDCAP_MEDIA_MAX_FPS", "-1"),
        ("VIDCAP_MEDIA_BACKEND", "ffmpeg-cli"),
        ("VIDCAP_MEDIA_MAX_PIXELS", "many"),
    ],
)
def test_bad_values_fail_at_start_up_naming_the_setting(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("VIDCAP_").lower()):
        Settings()


def test_sentinels_are_read_as_addresses_and_a_bad_one_fails_at_start_up(monkeypatch):
    monkeypatch.setenv("VIDCAP_REDIS_SENTINELS", "10.0.0.5:26379, [::1]:26380")
    settings = Settings()
    assert settings.sentinel_addresses() == [("10.0.0.5", 26379), ("::1", 26380)]
    assert settings.redis_configured and settings.redis_url is None
    monkeypatch.setenv("VIDCAP_REDIS_SENTINELS", "10.0.0.5")
    with pytest.raises(ValidationError, match="not host:port"):
        Settings()
