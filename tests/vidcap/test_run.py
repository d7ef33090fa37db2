"""``vidcap run`` (what ``make run`` starts): embedded Redis, a worker and the API, one Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.app.test_service_flow import finished, upload

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vidcap run exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(log.read_text()[-3000:])


def start_run(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Starts ``vidcap run`` (embedded Redis, no keys) and waits until it is ready."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "VIDCAP_REDIS_URL")}
    env.update(VIDCAP_DATA_DIR=str(tmp_path / "var"), VIDCAP_DEVICE="cpu", VIDCAP_API_KEYS="")
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "vidcap", "run", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, url, log


def test_run_serves_everything_and_one_ctrl_c_stops_it(tmp_path: Path, make_video: Any) -> None:
    process, url, log = start_run(tmp_path)
    try:
        family = psutil.Process(process.pid).children(recursive=True)
        names = {p.name() for p in family}
        assert any("redis" in n for n in names), names  # the embedded Redis
        with httpx.Client(base_url=url, timeout=60) as client:  # no key: local mode
            job = upload(client, make_video("h264_aac_mp4", duration=2)).json()["job"]
            assert finished(client, job["id"])["state"] == "succeeded"
            assert client.get("/docs").status_code == 200
        assert (tmp_path / "var" / "redis" / "appendonlydir").is_dir()  # AOF on
        process.send_signal(signal.SIGINT)
        # 130: killed by SIGINT, as shells report a Ctrl-C; it stopped everything first.
        assert process.wait(60) in (0, 130), log.read_text()[-3000:]
        assert "stopped" in log.read_text()
        _, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_run_refuses_a_public_address_without_api_keys(tmp_path: Path) -> None:
    env = {**os.environ, "VIDCAP_DATA_DIR": str(tmp_path), "VIDCAP_API_KEYS": ""}
    result = subprocess.run(
        [sys.executable, "-m", "vidcap", "run", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "VIDCAP_API_KEYS" in result.stderr
    assert not (tmp_path / "redis").exists()  # refused before starting anything


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_run_leaves_no_process_behind_when_terminated_or_killed(
    tmp_path: Path, how: signal.Signals
) -> None:
    process, _, _ = start_run(tmp_path)
    try:
        family = psutil.Process(process.pid).children(recursive=True)
        process.send_signal(how)
        process.wait(60)
        # SIGTERM: stopped in order; SIGKILL: the children are told by the kernel (PDEATHSIG).
        _, alive = psutil.wait_procs(family, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
