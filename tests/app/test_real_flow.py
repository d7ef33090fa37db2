"""Real footage through the real service: speech subtitles, on-screen text and tags of a real
clip, over HTTP, from an API process, a worker process and a redis-server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.test_service_flow import finished, upload

pytestmark = pytest.mark.slow

CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d\d\d) --> (\d\d):(\d\d):(\d\d)\.(\d\d\d)$")


def seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def vtt_cues(text: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each cue of a WebVTT file."""
    cues = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        for i, line in enumerate(lines):
            if match := CUE.match(line):
                g = match.groups()
                cues.append((seconds(*g[:4]), seconds(*g[4:]), " ".join(lines[i + 1 :])))
    return cues


@pytest.fixture(scope="module")
def dog(service: Any, real_data: Path) -> dict[str, Any]:
    """derived/photo_dog_speech.mp4 (a real photo, a real utterance) uploaded and captioned."""
    with service.client() as client:
        response = upload(client, real_data / "derived" / "photo_dog_speech.mp4")
        assert response.status_code == 202, response.text
        job = finished(client, response.json()["job"]["id"], timeout=240)
        assert job["state"] == "succeeded", (job, service.logs())
        video = client.get(f"/v1/videos/{job['video_id']}").json()
        return {"job": job, "video": video}


def test_real_clip_speech_vtt_cues_follow_the_reference_times(
    service: Any, dog: dict[str, Any], real_manifest: dict[str, Any]
) -> None:
    (said,) = real_manifest["derived/photo_dog_speech.mp4"]["speech"]
    video = dog["video"]
    with service.client() as client:
        default = client.get(f"/v1/videos/{video['id']}/captions", params={"format": "vtt"})
        speech = client.get(
            f"/v1/videos/{video['id']}/captions", params={"format": "vtt", "track": "speech"}
        )
    assert default.status_code == speech.status_code == 200
    assert default.text == speech.text  # speech is the default track when something is said
    cues = vtt_cues(speech.text)
    assert cues, speech.text
    assert abs(cues[0][0] - said["start"]) <= 0.5, (cues, said)
    assert abs(cues[-1][1] - said["end"]) <= 0.5, (cues, said)
    words = " ".join(c[2] for c in cues).lower()
    assert "dark suit" in words and "greasy wash" in words, words


def test_real_clip_record_has_transcript_tags_and_tracks(dog: dict[str, Any]) -> None:
    video, job = dog["video"], dog["job"]
    assert video["transcript"]["language"] == "en"
    assert "dark suit" in video["transcript"]["segments"][0]["text"].lower()
    assert set(video["tracks"]) == {"speech", "description"}
    names = {n for t in video["tags"]["video"] for n in [t["label"], *t["names"]]}
    assert "dog" in names, video["tags"]
    assert video["on_screen_text"] == []  # nothing is written in this photo
    assert {"transcribing", "tagging", "reading_text"} <= set(job["timings"])


def test_text_video_on_screen_text_is_read(service: Any, real_data: Path) -> None:
    with service.client() as client:
        response = upload(client, real_data / "derived" / "text_beware_of_the_dog.mp4")
        job = finished(client, response.json()["job"]["id"], timeout=240)
        assert job["state"] == "succeeded", (job, service.logs())
        video = client.get(f"/v1/videos/{job['video_id']}").json()
        missing = client.get(
            f"/v1/videos/{job['video_id']}/captions", params={"track": "translation"}
        )
    texts = [item["text"].upper() for item in video["on_screen_text"]]
    assert "BEWARE OF THE DOG" in texts, texts
    assert video["transcript"]["segments"] == [] and "speech" not in video["tracks"]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "track_not_found"


def test_unknown_language_option_is_refused(service: Any, real_data: Path) -> None:
    with service.client() as client:
        response = upload(client, real_data / "derived" / "photo_dog_speech.mp4", language="xx")
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert "language" in response.json()["error"]["message"]


def test_translate_option_gives_an_english_track(service: Any, real_data: Path) -> None:
    with service.client() as client:
        response = upload(
            client, real_data / "derived" / "photo_kitchen_speech_ru.mp4", translate="true"
        )
        job = finished(client, response.json()["job"]["id"], timeout=240)
        assert job["state"] == "succeeded", (job, service.logs())
        video = client.get(f"/v1/videos/{job['video_id']}").json()
        english = client.get(
            f"/v1/videos/{job['video_id']}/captions", params={"track": "translation"}
        ).json()
    assert video["transcript"]["language"] == "ru"
    assert set(video["tracks"]) == {"speech", "description", "translation"}
    assert english["language"] == "en" and english["segments"]
    text = " ".join(c["text"] for c in english["segments"])
    assert re.search(r"[A-Za-z]{3,}", text) and not re.search("[\u0400-\u04ff]", text), text


def test_captions_json_of_the_speech_track(service: Any, dog: dict[str, Any]) -> None:
    with service.client() as client:
        body = client.get(
            f"/v1/videos/{dog['video']['id']}/captions", params={"track": "speech"}
        ).json()
    assert body["track"] == "speech" and body["language"] == "en" and body["caption"] is None
    for cue in body["segments"]:
        lines = cue["text"].split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), cue
        assert cue["end"] > cue["start"]


def test_description_track_unchanged_for_a_video_without_speech(
    service: Any, make_video: Any
) -> None:
    with service.client() as client:
        response = upload(client, make_video("h264_aac_mp4", duration=3))
        job = finished(client, response.json()["job"]["id"], timeout=240)
        video = client.get(f"/v1/videos/{job['video_id']}").json()
        body = client.get(f"/v1/videos/{job['video_id']}/captions").json()
    assert video["transcript"]["segments"] == []
    assert body["track"] == "description" and body["caption"] == job["result"]["caption"]
    assert httpx.URL(video["captions_url"]).params.get("track") is None
