"""vidcap's settings: one class, read from ``VIDCAP_*`` environment variables (or ``.env``).

Invalid values fail at start-up with a message naming the variable, not at the first request.
The API, the workers and the CLI all read this one class. A ground-floor package: it imports
``models`` (the default model and the media limits) and never app/, workers/ or vidcap/.
"""

from __future__ import annotations

import hashlib
import re
from copy import copy
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models import DEFAULT_MODEL_DIR
from models.media import Backend, MediaLimits

URL_SECRET_LABEL = "vidcap signed media links v1"

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

    # --- the model (workers) -------------------------------------------------------------
    model: Path = DEFAULT_MODEL_DIR
    device: str | None = None
    # Whisper for the speech track: tiny.en (English only, fastest), base (99 languages), or
    # the path of a CTranslate2 Whisper directory you supply (e.g. small).
    whisper_model: str = "base"

    # --- where things live ----------------------------------------------------------------
    # Redis holds the queue and every record; unset, `vidcap run` starts its own under data_dir.
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("VIDCAP_REDIS_URL", "REDIS_URL")
    )
    # Redis Sentinel instead of one Redis server: the sentinels' "host:port,host:port" and the
    # name of the primary they watch. Clients then follow a failover by themselves; REDIS_URL,
    # if set, only gives the database number and the password.
    redis_sentinels: str = ""
    redis_sentinel_master: str = "vidcap"
    # The API's upload spool, the embedded Redis, and (with the local store) the uploaded
    # videos and what the workers made of them: then a volume the API and workers share.
    data_dir: Path = Path("var")
    # Where videos are stored: "local" (under data_dir) or "s3" (any S3 service; the API and
    # the workers then share no folder). Empty S3 credentials: boto3's own chain (AWS_*
    # variables, ~/.aws, an instance role). Path-style addressing for SeaweedFS, MinIO, Ceph.
    storage: Literal["local", "s3"] = "local"
    s3_endpoint_url: str = ""
    # The store's address as browsers and clients reach it, for the links vidcap gives out
    # (media, direct uploads), when it differs from s3_endpoint_url (e.g. inside compose).
    s3_public_endpoint_url: str = ""
    s3_bucket: str = "vidcap"
    s3_prefix: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: SecretStr = SecretStr("")
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # Presigned links (media, direct uploads) stay valid this long.
    s3_link_expiry_s: int = Field(default=3600, ge=60, le=7 * 86400)
    # Direct uploads larger than one part go in parts of this size (S3's least is 5 MB).
    direct_upload_part_mb: float = Field(default=16.0, ge=5)
    # A worker's local copies of stored objects during a job (remote store only); removed
    # after the job. Empty: data_dir/scratch. A job whose files exceed scratch_max_mb fails.
    scratch_dir: Path | None = None
    scratch_max_mb: float = Field(default=8192.0, gt=0)
    queue_name: str = "vidcap"

    # --- the HTTP API ---------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # "key:tenant,key2:tenant2" (a key without ":tenant" is its own tenant). Empty: no keys,
    # which `vidcap serve` allows on a loopback address only.
    api_keys: SecretStr = SecretStr("")
    # Signs the media and caption links of GET /v1/videos (a <video> cannot send a key).
    # Empty: derived from the API keys, so API processes with the same keys agree.
    url_secret: SecretStr = SecretStr("")
    max_upload_mb: float = Field(default=2048.0, gt=0)
    default_segment_s: float = Field(default=5.0, gt=0)
    max_question_chars: int = Field(default=500, gt=0)
    # A request body must keep arriving: no bytes for this long, or on average fewer than
    # body_min_rate_bps after the first body_idle_s, is answered 408 (slow-client defence).
    body_idle_s: float = Field(default=30.0, gt=0)
    body_min_rate_bps: int = Field(default=16_384, ge=0)  # 0: no minimum
    # A connection must send a whole request head this soon after opening (or after its last
    # response); past max_connections, new connections are closed at once (app/connections).
    head_timeout_s: float = Field(default=10.0, gt=0)
    # Uploads one tenant may stream to one API process at once (more: 429 rate_limited).
    max_uploads_per_tenant: int = Field(default=4, gt=0)
    max_connections: int = Field(default=10_000, gt=0)
    # Back-pressure: queued jobs beyond this answer 429; POSTs per tenant per minute.
    max_queue_depth: int = Field(default=1000, gt=0)
    # One tenant's waiting jobs beyond this answer 429 tenant_queue_full; jobs of one tenant
    # running at once (0: no cap). Workers take jobs round robin across tenants either way.
    max_queued_per_tenant: int = Field(default=100, gt=0)
    max_running_per_tenant: int = Field(default=0, ge=0)
    rate_limit_per_minute: int = Field(default=120, ge=0)  # 0: no limit
    # Server-side fetch of {"url": ...} uploads.
    fetch_timeout_s: float = Field(default=30.0, gt=0)
    fetch_max_redirects: int = Field(default=5, ge=0)
    # Off by default: a URL naming a loopback, private or link-local address is refused, so
    # the API cannot be used to reach the machines behind it.
    fetch_allow_private: bool = False

    # Job loops per worker process, sharing its model; their model calls are batched (a call
    # waits batch_wait_ms for others to join it). 0: 1 on a CPU, 4 on a GPU.
    worker_threads: int = Field(default=0, ge=0, le=64)
    batch_wait_ms: float = Field(default=5.0, ge=0, le=1000)

    # --- jobs and retention ---------------------------------------------------------------
    retention_days: float = Field(default=7.0, gt=0)  # videos, jobs, results, files
    job_timeout_base_s: float = Field(default=120.0, gt=0)
    job_timeout_per_video_s: float = Field(default=2.0, ge=0)  # per second of video
    # A worker that stops sending heartbeats for this long is lost; its job is retried.
    worker_lost_after_s: float = Field(default=15.0, ge=3)
    max_attempts: int = Field(default=2, ge=1)
    janitor_interval_s: float = Field(default=600.0, gt=0)
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

    @field_validator("api_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr) -> SecretStr:
        parse_api_keys(value.get_secret_value())  # fail at start-up, not at the first request
        return value

    @model_validator(mode="after")
    def _redis_url_scheme(self) -> Settings:
        if self.redis_url is not None and not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError(
                f"REDIS_URL must start with redis://, rediss:// or unix://, got {self.redis_url!r}"
            )
        return self

    @model_validator(mode="after")
    def _sentinels_parse(self) -> Settings:
        self.sentinel_addresses()  # fail at start-up, not at the first connection
        return self

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The sentinels of VIDCAP_REDIS_SENTINELS as (host, port) pairs (empty: none)."""
        found = []
        for item in filter(None, (x.strip() for x in self.redis_sentinels.split(","))):
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(
                    f"VIDCAP_REDIS_SENTINELS: {item!r} is not host:port "
                    "(e.g. 10.0.0.5:26379,10.0.0.6:26379,10.0.0.7:26379)"
                )
            found.append((host.strip("[]"), int(port)))
        return found

    @property
    def redis_configured(self) -> bool:
        """Whether a Redis is named (REDIS_URL or sentinels)."""
        return self.redis_url is not None or bool(self.redis_sentinels.strip())

    @property
    def max_upload_bytes(self) -> int:
        """The upload size limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def direct_upload_part_bytes(self) -> int:
        """The part size of direct uploads in bytes."""
        return int(self.direct_upload_part_mb * 1024 * 1024)

    @property
    def scratch(self) -> Path:
        """The root of workers' scratch folders."""
        return self.scratch_dir or self.data_dir / "scratch"

    @property
    def scratch_max_bytes(self) -> int:
        """The most one job may download into scratch, in bytes."""
        return int(self.scratch_max_mb * 1024 * 1024)

    @property
    def retention_s(self) -> int:
        """How long records, results and files are kept, in seconds."""
        return int(self.retention_days * 86400)

    def tenants(self) -> dict[str, str]:
        """API key -> tenant name (empty when the API runs without keys)."""
        return parse_api_keys(self.api_keys.get_secret_value())

    def url_signing_key(self) -> bytes:
        """The HMAC key of signed media links: ``url_secret``, else derived from the API keys.

        The derivation hashes a fixed label and the sorted keys, so every API process started
        with the same keys signs alike, and a change of keys voids the links given out.
        """
        explicit = self.url_secret.get_secret_value()
        if explicit:
            return explicit.encode()
        keys = sorted(self.tenants())
        return hashlib.sha256("\n".join([URL_SECRET_LABEL, *keys]).encode()).digest()

    def media_limits(self) -> MediaLimits:
        """The media layer's limits from these settings."""
        return MediaLimits(
            **{name: getattr(self, f"media_{name}") for name in MediaLimits.model_fields}
        )


def parse_api_keys(text: str) -> dict[str, str]:
    """Parses ``"key:tenant,key2:tenant2"`` into ``{key: tenant}``.

    A key without ``:tenant`` is its own tenant, named by a digest of the key (the key itself
    never appears in records or logs).

    Raises:
        ValueError: On an empty key, a key listed twice, or a tenant name with characters
            other than letters, digits, ``-`` and ``_``.
    """
    tenants: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, _, tenant = item.partition(":")
        key, tenant = key.strip(), tenant.strip()
        if len(key) < 8:
            raise ValueError("VIDCAP_API_KEYS: each key must be at least 8 characters long")
        if key in tenants:
            raise ValueError("VIDCAP_API_KEYS: a key is listed twice")
        if not tenant:
            tenant = "t-" + hashlib.sha256(key.encode()).hexdigest()[:12]
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", tenant):
            raise ValueError(
                f"VIDCAP_API_KEYS: tenant name {tenant!r} may use letters, digits, - and _ only"
            )
        tenants[key] = tenant
    return tenants


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
