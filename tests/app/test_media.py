"""Playing a video in a browser: ``/media`` with Range requests, signed links, browser previews."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from app.deps import link_query, link_signature, signed_tenant
from models.media import MediaInfo, probe, read_audio, sample_frames, synth
from models.media.preview import PREVIEW_NAME, needs_preview, output_size, write_preview
from settings import Settings
from tests.app.test_service_flow import finished, upload

# --------------------------------------------------------------------------- unit tests


def media(container: str, video: str, audio: str | None) -> dict[str, Any]:
    return {
        "container": container,
        "video_codec": video,
        "audio_codec": audio,
        "has_audio": bool(audio),
    }


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (media("mp4", "h264", "aac"), False),
        (media("mp4", "h264", None), False),
        (media("mov", "h264", "mp3"), False),
        (media("mp4", "av1", "opus"), False),
        (media("webm", "vp9", "opus"), False),
        (media("webm", "vp8", "vorbis"), False),
        (media("webm", "av1", None), False),
        (media("mp4", "hevc", "aac"), True),  # HEVC: not in every browser
        (media("mp4", "mpeg4", "aac"), True),
        (media("mov", "prores", None), True),
        (media("mov", "h264", "pcm_s16le"), True),  # PCM audio in ISO media
        (media("webm", "vp9", "aac"), True),  # not WebM's audio
        (media("mkv", "h264", "aac"), True),  # Matroska, AVI, TS, FLV: not reliably
        (media("avi", "mpeg4", "mp2"), True),
        (media("mpegts", "h264", "aac"), True),
        (media("flv", "h264", "aac"), True),
        (media("ogg", "theora", "vorbis"), True),
        (media("mpeg", "mpeg2video", "mp2"), True),
    ],
)
def test_needs_preview(info: dict[str, Any], expected: bool) -> None:
    assert needs_preview(info) is expected


def test_needs_preview_takes_a_probe_result(make_video: Any) -> None:
    playable, unplayable = (
        probe(make_video(k, duration=1)) for k in ("h264_aac_mp4", "mpeg4_mp2_avi")
    )
    assert isinstance(playable, MediaInfo)
    assert needs_preview(playable) is False
    assert needs_preview(unplayable) is True


@pytest.mark.parametrize(
    ("size", "rotation", "aspect", "expected"),
    [
        ((320, 240), 0, 1.0, (320, 240)),  # small: kept
        ((1920, 1080), 0, 1.0, (1280, 720)),
        ((1920, 1080), 90, 1.0, (720, 404)),  # shown 1080x1920: 720 tall once turned
        ((720, 576), 0, 16 / 11, (1048, 576)),  # anamorphic PAL: square pixels
        ((321, 241), 0, 1.0, (320, 240)),  # even, for yuv420p
    ],
)
def test_output_size(
    size: tuple[int, int], rotation: int, aspect: float, expected: tuple[int, int]
) -> None:
    width, height = size
    assert (
        output_size(width, height, rotation=rotation, pixel_aspect=aspect, max_height=720)
        == expected
    )


def test_preview_keeps_the_timeline(make_video: Any, tmp_path: Path) -> None:
    src = make_video("mpeg4_mp2_avi", duration=3, tone_start=1.0)
    dest = tmp_path / PREVIEW_NAME
    write_preview(src, dest)
    before, after = probe(src), probe(dest)
    assert (after.container, after.video_codec, after.audio_codec) == ("mp4", "h264", "aac")
    assert after.duration_s == pytest.approx(before.duration_s, abs=0.05)
    assert after.frame_count == before.frame_count
    assert (after.width, after.height) == (before.width, before.height)
    assert not needs_preview(after)
    # The same frame at the same time, and the tone starts at the same time.
    a, b = sample_frames(src, fps=5, size=64), sample_frames(dest, fps=5, size=64)
    assert [synth.frame_index(x) for x in a.images] == [synth.frame_index(x) for x in b.images]
    onset = [int((abs(read_audio(p)) > 0.1).argmax()) / 16000 for p in (src, dest)]  # type: ignore[arg-type]
    assert onset[1] == pytest.approx(onset[0], abs=0.03)
    assert [p.name for p in tmp_path.iterdir()] == [PREVIEW_NAME]  # nothing left beside it


def test_preview_keeps_the_rotation_and_scales_to_720(make_video: Any, tmp_path: Path) -> None:
    if not synth.encoder_available("libx265"):
        pytest.skip("no libx265 encoder")
    src = make_video("hevc_flac_mkv", duration=1, width=1280, height=960, rotation=90)
    write_preview(src, tmp_path / PREVIEW_NAME)
    after = probe(tmp_path / PREVIEW_NAME)
    assert after.rotation == 90
    assert (after.display_width, after.display_height) == (540, 720)
    # upright (the red band on top) and the same frames as the upload
    a, b = (
        sample_frames(p, num_frames=3, size=(96, 72), fit="pad")
        for p in (src, tmp_path / PREVIEW_NAME)
    )
    assert [synth.frame_index(x) for x in a.images] == [synth.frame_index(x) for x in b.images]
    assert b.images[:, 2, 48, 0].min() > 180 and b.images[:, 2, 48, 2].max() < 80


def test_a_damaged_file_leaves_no_preview(make_video: Any, tmp_path: Path) -> None:
    from models.media import MediaError

    with pytest.raises(MediaError):
        write_preview(make_video("truncated"), tmp_path / PREVIEW_NAME)
    assert list(tmp_path.iterdir()) == []


def test_url_signing_key_is_derived_from_the_keys_unless_set() -> None:
    one = Settings(api_keys="key-aaaaaaaa:a,key-bbbbbbbb:b")  # type: ignore[arg-type]
    same = Settings(api_keys=" key-bbbbbbbb:b , key-aaaaaaaa:a")  # type: ignore[arg-type]
    other = Settings(api_keys="key-aaaaaaaa:a")  # type: ignore[arg-type]
    explicit = Settings(api_keys="key-aaaaaaaa:a", url_secret="s3cret")  # type: ignore[arg-type]
    assert one.url_signing_key() == same.url_signing_key() != other.url_signing_key()
    assert explicit.url_signing_key() == b"s3cret"


def test_link_signatures() -> None:
    key, tenants = b"k" * 32, {"key-a": "alice", "key-b": "bob"}
    query = parse_qs(link_query(key, "vid_1", "alice"))
    expires, sig = query["expires"][0], query["sig"][0]
    assert int(expires) >= time.time() + 12 * 3600
    assert sig == link_signature(key, "vid_1", "alice", int(expires))
    assert signed_tenant(key, tenants, "vid_1", expires, sig) == "alice"
    assert signed_tenant(key, tenants, "vid_2", expires, sig) is None  # another video
    assert signed_tenant(b"x" * 32, tenants, "vid_1", expires, sig) is None  # another key
    assert signed_tenant(key, tenants, "vid_1", str(int(expires) + 1), sig) is None
    past = int(time.time()) - 1
    assert (
        signed_tenant(key, tenants, "vid_1", str(past), link_signature(key, "vid_1", "alice", past))
        is None
    )
    assert signed_tenant(key, tenants, "vid_1", "soon", sig) is None


# --------------------------------------------------------------------------- over HTTP

SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def played(service: Any, make_video: Any) -> dict[str, Any]:
    """An h264/aac mp4 uploaded by alice and captioned: its video record once ready."""
    return _uploaded(service, make_video("h264_aac_mp4", duration=2, width=160, height=120))


def _uploaded(service: Any, path: Path) -> dict[str, Any]:
    with service.client() as client:
        response = upload(client, path, segment_seconds=1)
        assert response.status_code == 202, response.text
        created = response.json()["video"]
        job = finished(client, response.json()["job"]["id"])
        assert job["state"] == "succeeded", (job, service.logs())
        video = client.get(f"/v1/videos/{created['id']}").json()
    return {"created": created, "video": video, "job": job, "path": path}


@SLOW
def test_full_get_and_range_requests(service: Any, played: dict[str, Any]) -> None:
    video_id, data = played["video"]["id"], played["path"].read_bytes()
    with service.client() as client:
        whole = client.get(f"/v1/videos/{video_id}/media")
        part = client.get(f"/v1/videos/{video_id}/media", headers={"Range": "bytes=100-1099"})
        tail = client.get(f"/v1/videos/{video_id}/media", headers={"Range": "bytes=-500"})
        beyond = client.get(
            f"/v1/videos/{video_id}/media", headers={"Range": f"bytes={len(data) + 10}-"}
        )
    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.content == data
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert part.content == data[100:1100]
    assert tail.status_code == 206
    assert tail.content == data[-500:]
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(data)}"


@SLOW
def test_media_is_tenant_checked(service: Any, played: dict[str, Any]) -> None:
    video_id = played["video"]["id"]
    with service.client("bob") as bob:
        response = bob.get(f"/v1/videos/{video_id}/media")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "video_not_found"
        # bob's key with alice's link: the link is not looked at, the key is
        assert bob.get(played["video"]["media_url"]).status_code == 404
    with service.client(None) as anonymous:
        response = anonymous.get(f"/v1/videos/{video_id}/media")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert anonymous.get(f"/v1/videos/{video_id}/captions?format=vtt").status_code == 401


@SLOW
def test_signed_links_work_without_a_key(service: Any, played: dict[str, Any]) -> None:
    video = played["video"]
    assert video["playable"] is True
    assert video["media_url"].startswith(f"/v1/videos/{video['id']}/media?expires=")
    assert video["captions_url"].startswith(f"/v1/videos/{video['id']}/captions?format=vtt&")
    with service.client(None) as anonymous:
        media = anonymous.get(video["media_url"], headers={"Range": "bytes=0-99"})
        captions = anonymous.get(video["captions_url"])
    assert media.status_code == 206
    assert media.content == played["path"].read_bytes()[:100]
    assert captions.status_code == 200
    assert captions.headers["content-type"].startswith("text/vtt")
    assert captions.text.startswith("WEBVTT\n")


@SLOW
def test_tampered_or_expired_links_are_refused(service: Any, played: dict[str, Any]) -> None:
    video = played["video"]
    query = parse_qs(urlsplit(video["media_url"]).query)
    expires, sig = query["expires"][0], query["sig"][0]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    past = int(time.time()) - 60
    key = Settings(
        api_keys=service.env["VIDCAP_API_KEYS"]  # the server's keys: a correctly signed, old link
    ).url_signing_key()
    media = f"/v1/videos/{video['id']}/media"
    with service.client(None) as anonymous:
        for params in (
            {"expires": expires, "sig": flipped},
            {"expires": str(int(expires) + 3600), "sig": sig},
            {"expires": str(past), "sig": link_signature(key, video["id"], "alice", past)},
            {"expires": "tomorrow", "sig": sig},
            {"sig": sig},
        ):
            response = anonymous.get(media, params=params)
            assert response.status_code == 401, params
            assert response.json()["error"]["code"] == "unauthorized"
        # the same link for another video of alice's is not valid either
        other = anonymous.get("/v1/videos/vid_other/media", params={"expires": expires, "sig": sig})
        assert other.status_code == 401
        # a freshly signed link with the server's key works: the signature scheme is as documented
        fresh = int(time.time()) + 60
        good = anonymous.get(
            media,
            params={"expires": str(fresh), "sig": link_signature(key, video["id"], "alice", fresh)},
            headers={"Range": "bytes=0-9"},
        )
        assert good.status_code == 206


@SLOW
def test_browser_playable_upload_gets_no_preview(service: Any, played: dict[str, Any]) -> None:
    folder = service.data_dir / "videos" / "alice" / played["video"]["id"]
    assert not (folder / PREVIEW_NAME).exists()
    assert "preview" not in played["job"]["timings"]


@SLOW
@pytest.mark.parametrize("kind", ["mpeg4_mp2_avi", "hevc_flac_mkv"])
def test_unplayable_upload_gets_a_preview(service: Any, make_video: Any, kind: str) -> None:
    path = make_video(kind, duration=2)
    done = _uploaded(service, path)
    video = done["video"]
    assert done["created"]["playable"] is False  # at upload: no preview yet
    assert video["playable"] is True
    assert done["job"]["timings"]["preview"] > 0
    assert {"decoding", "features", "generating"} <= set(done["job"]["timings"])
    preview = service.data_dir / "videos" / "alice" / video["id"] / PREVIEW_NAME
    info = probe(preview)
    assert (info.container, info.video_codec, info.audio_codec) == ("mp4", "h264", "aac")
    assert info.duration_s == pytest.approx(video["media"]["duration_s"], abs=0.1)
    with service.client(None) as anonymous:
        whole = anonymous.get(video["media_url"])
        part = anonymous.get(video["media_url"], headers={"Range": "bytes=0-1023"})
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.content == preview.read_bytes()
    assert part.status_code == 206
    assert part.content == preview.read_bytes()[:1024]
    assert whole.content != path.read_bytes()


@SLOW
def test_original_is_served_with_its_type(service: Any, make_video: Any) -> None:
    done = _uploaded(service, make_video("vp9_opus_webm", duration=1))
    assert done["video"]["playable"] is True
    with service.client() as client:
        response = client.get(f"/v1/videos/{done['video']['id']}/media")
    assert response.headers["content-type"] == "video/webm"
    assert response.content == done["path"].read_bytes()


@SLOW
def test_without_api_keys_links_are_plain_paths(make_service: Any, make_video: Any) -> None:
    service = make_service(workers=0, env={"VIDCAP_API_KEYS": ""})
    with service.client(None) as client:
        video = upload(client, make_video("h264_aac_mp4", duration=1)).json()["video"]
        assert video["media_url"] == f"/v1/videos/{video['id']}/media"
        assert video["captions_url"] == f"/v1/videos/{video['id']}/captions?format=vtt"
        assert client.get(video["media_url"]).status_code == 200
