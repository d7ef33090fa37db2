"""Event streams and long polls at scale: they must not take Redis connections from others."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.app.test_service_flow import upload
from tests.conftest import API_KEYS

pytestmark = pytest.mark.slow

STREAMS = 150  # more than the 100 connections of the API's Redis pool


def test_many_open_event_streams_leave_other_requests_alone(
    make_service: Any, make_video: Any
) -> None:
    service = make_service(workers=0)  # the job stays queued: every stream stays open
    with service.client() as client:
        body = upload(client, make_video("h264_aac_mp4", duration=1)).json()
    job_id, video_id = body["job"]["id"], body["video"]["id"]

    async def scenario() -> tuple[list[int], list[int]]:
        limits = httpx.Limits(max_connections=STREAMS + 50)
        headers = {"Authorization": f"Bearer {API_KEYS['alice']}"}
        async with httpx.AsyncClient(
            base_url=service.url, headers=headers, limits=limits, timeout=30
        ) as client:
            opened: list[int] = []
            events: list[str] = []
            first_event = asyncio.Event()

            async def stream() -> None:
                async with client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
                    opened.append(response.status_code)
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            events.append(line)
                            if len(events) == STREAMS:
                                first_event.set()
                            await asyncio.sleep(3600)  # hold the stream open

            streams = [asyncio.create_task(stream()) for _ in range(STREAMS)]
            try:
                await asyncio.wait_for(first_event.wait(), 60)
            except TimeoutError:
                done = [t.exception() for t in streams if t.done()]
                raise AssertionError(
                    f"{len(events)} of {STREAMS} had an event; {sorted(opened)[-5:]} {done[:3]}"
                ) from None
            others = await asyncio.gather(
                *(client.get(f"/v1/videos/{video_id}") for _ in range(40)),
                *(client.get(f"/v1/jobs/{job_id}", params={"wait": 0.5}) for _ in range(10)),
            )
            for task in streams:
                task.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
            return opened, [r.status_code for r in others]

    opened, others = asyncio.run(scenario())
    assert opened == [200] * STREAMS
    assert others == [200] * 50, others
