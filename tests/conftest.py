"""Shared pytest fixtures."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from workers.redis_server import RedisServer

# --- Redis: a real, private redis-server per test ------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server with its data in the test's tmp_path; stopped afterwards."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of ``redis_server`` returning bytes (decode_responses=False); closed afterwards."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()
