"""Idle, half-open and slow connections (app/connections.py): the API stays up, and closes them."""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.test_service_flow import upload

pytestmark = pytest.mark.slow

HEAD_TIMEOUT_S = 3
IDLE = 2000
SLOW = 100


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import SERVICE_MODEL, Service

    service = Service(
        tmp_path_factory.mktemp("guarded"),
        SERVICE_MODEL,
        {"VIDCAP_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S), "VIDCAP_MAX_CONNECTIONS": "3000"},
    )
    try:
        yield service.start(workers=0)
    finally:
        service.stop()


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_idle_and_slow_connections_neither_starve_the_api_nor_stay_open(
    guarded: Any, make_video: Any
) -> None:
    address = ("127.0.0.1", guarded.port)
    idle = [socket.create_connection(address) for _ in range(IDLE)]  # never send a byte
    slow = [socket.create_connection(address) for _ in range(SLOW)]
    try:
        for sock in slow:  # a request head, a little at a time
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        took = []
        with guarded.client(None, timeout=5) as client:
            for _ in range(20):
                began = time.monotonic()
                assert client.get("/healthz").status_code == 200
                took.append(time.monotonic() - began)
                for sock in slow[:10]:
                    sock.sendall(b"s")
        with guarded.client() as client:
            assert upload(client, make_video("h264_aac_mp4", duration=1)).status_code == 202
        p99 = statistics.quantiles(took, n=100)[98]
        print(f"/healthz with {IDLE} idle and {SLOW} slow connections: p99 {p99 * 1000:.0f} ms")
        time.sleep(HEAD_TIMEOUT_S + 2)
        still_open = [s for s in idle + slow if not closed_by_server(s)]
        assert still_open == [], f"{len(still_open)} of {IDLE + SLOW} still open"
    finally:
        for sock in idle + slow:
            sock.close()
    log = (guarded.root / "api.log").read_text(errors="replace")
    assert "Too many open files" not in log and "Traceback" not in log


def test_connections_past_the_bound_are_closed_at_once(make_service: Any) -> None:
    service = make_service(workers=0, env={"VIDCAP_MAX_CONNECTIONS": "500"})
    address = ("127.0.0.1", service.port)
    held = [socket.create_connection(address) for _ in range(500)]
    try:
        time.sleep(1)  # all accepted
        extra = socket.create_connection(address)
        deadline = time.monotonic() + 5
        while not closed_by_server(extra):
            assert time.monotonic() < deadline, "the connection past the bound stayed open"
        extra.close()
        for sock in held[:100]:  # freeing some lets new clients in again
            sock.close()
        time.sleep(0.5)
        with service.client(None, timeout=5) as client:
            assert client.get("/healthz").status_code == 200
    finally:
        for sock in held:
            sock.close()
