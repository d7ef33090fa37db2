"""The web page at ``/``, in a real browser, against a real API, worker and redis-server.

The browser is Debian's ``chromium-headless-shell`` (``.ci/run`` installs it) driven by
Playwright, which never downloads a browser here. Screenshots of the page's main states are
written to the test's ``tmp_path/screenshots/`` and, when ``VIDCAP_SCREENSHOTS`` names a
folder, copied there for people to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEYS

CHROMIUM = Path("/usr/lib/chromium/chromium-headless-shell")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"no browser at {CHROMIUM}: apt-get install chromium-headless-shell libatomic1 "
        "(.ci/run does)",
    ),
]

# Chromium logs every HTTP error status as a console error. These are the page's own,
# expected ones: the 401 that tells it a key is needed (and the wrong key typed on purpose),
# the 415 of the text file uploaded on purpose and the 422 of the link to no video.
EXPECTED_CONSOLE = re.compile(
    r"Failed to load resource: the server responded with a status of (401|415|422) "
)


@pytest.fixture
def browser_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME, TMPDIR and XDG_RUNTIME_DIR of the browser and Playwright's driver: a scratch dir."""
    home = tmp_path / "browser-home"
    home.mkdir()
    for name in ("HOME", "TMPDIR", "XDG_RUNTIME_DIR"):
        monkeypatch.setenv(name, str(home))
    return home


@pytest.fixture
def page_of(browser_home: Path) -> Iterator[Any]:
    """A function making a Playwright page (1280x900) that records console errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:

            def make() -> Any:
                context = browser.new_context(
                    viewport={"width": 1280, "height": 900}, accept_downloads=True
                )
                page = context.new_page()
                page.errors = []  # type: ignore[attr-defined]
                page.on(
                    "console",
                    lambda m: m.type == "error" and page.errors.append(f"console: {m.text}"),
                )
                page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e}"))
                page.set_default_timeout(20_000)
                return page

            yield make
        finally:
            browser.close()


@pytest.fixture
def shot(tmp_path: Path) -> Callable[..., Path]:
    """``shot(page, name, full_page=False)``: a screenshot in tmp_path/screenshots, copied to
    $VIDCAP_SCREENSHOTS when it is set (for people to look at)."""
    folder = tmp_path / "screenshots"
    folder.mkdir()
    keep = Path(os.environ["VIDCAP_SCREENSHOTS"]) if os.environ.get("VIDCAP_SCREENSHOTS") else None

    def take(page: Any, name: str, full_page: bool = False) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, keep / path.name)
        return path

    return take


def test_page_uploads_plays_captions_answers_and_deletes(
    make_service: Any, make_video: Any, page_of: Any, shot: Any
) -> None:
    # No worker yet: the upload stays queued long enough to be seen, then one is started.
    service = make_service(workers=0)
    page = page_of()
    page.goto(service.url + "/")

    # --- the server needs a key: a wrong one is refused, alice's is kept --------------------
    key_input = page.get_by_label("API key", exact=True)
    key_input.wait_for()
    assert page.locator("#app").is_hidden()
    key_input.fill("not-a-key")
    page.get_by_role("button", name="Continue").click()
    page.get_by_text("That key was not accepted").wait_for()
    shot(page, "1-key-entry")
    key_input.fill(API_KEYS["alice"])
    page.get_by_role("button", name="Continue").click()
    page.get_by_text("No videos yet").wait_for()
    assert page.evaluate("localStorage.getItem('vidcap.apiKey')") == API_KEYS["alice"]

    # --- upload (throttled, to see the bar move), then the queued and running job ------------
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    throttle = {"offline": False, "latency": 0, "downloadThroughput": -1}
    cdp.send("Network.emulateNetworkConditions", {**throttle, "uploadThroughput": 20_000})
    page.get_by_label("Segment length").fill("2")
    video_file = make_video("h264_aac_mp4", duration=4)
    page.locator("#file-input").set_input_files(str(video_file))
    page.wait_for_function(
        "() => { const p = document.querySelector('#upload-progress');"
        " return !p.closest('[hidden]') && p.value > 5 && p.value < 95; }"
    )
    shot(page, "2-uploading")
    page.get_by_text("Waiting for a worker").wait_for()
    cdp.send("Network.emulateNetworkConditions", {**throttle, "uploadThroughput": -1})
    assert page.locator("#video-title").inner_text() == video_file.name
    shot(page, "3-processing")
    service.start_worker()

    # --- done: caption, segments, a subtitle track in 'showing' mode, seeking ----------------
    page.locator("#caption").wait_for(timeout=60_000)
    with service.client() as client:
        (video,) = client.get("/v1/videos").json()["videos"]
    assert video["status"] == "ready"
    segments = video["segments"]
    assert [(s["start"], s["end"]) for s in segments] == [(0.0, 2.0), (2.0, 4.0)]
    assert page.locator("#caption").text_content() == video["caption"]
    buttons = page.locator("#segments button")
    assert buttons.count() == len(segments)
    page.wait_for_function(
        "n => { const t = document.querySelector('#player').textTracks[0];"
        " return t && t.mode === 'showing' && t.cues && t.cues.length === n; }",
        arg=len(segments),
    )
    page.wait_for_function("() => document.querySelector('#player').readyState >= 1")
    buttons.nth(1).click()
    page.wait_for_function(
        "s => Math.abs(document.querySelector('#player').currentTime - s) < 0.1",
        arg=segments[1]["start"],
    )
    assert buttons.nth(1).get_attribute("aria-current") == "true"
    buttons.nth(0).focus()  # keyboard: Enter on a segment seeks too
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#player').currentTime < 0.1")
    page.wait_for_function(
        "() => { const v = document.querySelector('#player');"
        " return v.textTracks[0].activeCues.length === 1 && !v.seeking && v.readyState >= 2; }"
    )
    shot(page, "4-captions")
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(300)  # the drop zone's colour transition
    shot(page, "4-captions-dark")
    page.emulate_media(color_scheme="light")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download subtitles (VTT)").click()
    assert download.value.suggested_filename == video_file.stem + ".vtt"
    assert Path(download.value.path()).read_text().startswith("WEBVTT")

    # --- a question: pending, then answered; the history survives a reload -------------------
    page.get_by_label("Your question").fill("what colour is the shape?")
    page.get_by_role("button", name="Ask").click()
    answer = page.locator("#qa-list .a").first
    page.wait_for_function(
        "() => { const a = document.querySelector('#qa-list .a');"
        " return a && !a.classList.contains('pending') && a.textContent.trim(); }",
        timeout=30_000,
    )
    with service.client() as client:
        (asked,) = client.get(f"/v1/videos/{video['id']}/questions").json()["questions"]
    assert asked["state"] == "succeeded"
    assert answer.text_content() == asked["result"]["answer"]
    shot(page, "5-question")

    page.reload()  # the key is remembered; reopening the video shows the history
    page.locator("#videos .video-open", has_text=video_file.name).click()
    page.locator("#qa-list .q").get_by_text("what colour is the shape?").wait_for()
    assert page.locator("#qa-list .a").text_content() == asked["result"]["answer"]

    # --- a file that is not a video: a sentence for people, not a code ----------------------
    page.locator("#file-input").set_input_files(str(make_video("text")))
    error = page.locator("#upload-error")
    error.get_by_text("This file is not a video.").wait_for()
    assert "not_a_video" in error.inner_text()  # the code and request id, small, beneath
    page.locator("#upload-panel").scroll_into_view_if_needed()
    shot(page, "6-error")
    page.get_by_label("Or paste a link to a video file").fill(service.url + "/no-such.mp4")
    page.get_by_role("button", name="Fetch").click()
    error.get_by_text("could not download the video from that link").wait_for()
    assert "fetch_failed" in error.inner_text()

    # --- a phone: one column, nothing wider than the screen ---------------------------------
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_function(
        "() => { const v = document.querySelector('#player');"
        " return v.readyState >= 2 && !v.seeking && v.textTracks[0].activeCues.length; }"
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "7-phone", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # --- delete, with a confirmation --------------------------------------------------------
    page.get_by_role("button", name=f"Delete {video_file.name}").click()
    dialog = page.get_by_role("dialog", name="Delete this video?")
    dialog.get_by_role("button", name="Keep it").wait_for()
    shot(page, "8-confirm-delete")
    dialog.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_text(f"Deleted “{video_file.name}”").wait_for()
    assert page.locator("#video-panel").is_hidden()
    page.get_by_text("No videos yet").wait_for()
    with service.client() as client:
        assert client.get("/v1/videos").json()["videos"] == []

    # --- forget the key ---------------------------------------------------------------------
    page.get_by_role("button", name="Forget key").click()
    page.get_by_label("API key", exact=True).wait_for()
    assert page.evaluate("localStorage.getItem('vidcap.apiKey')") is None

    unexpected = [e for e in page.errors if not EXPECTED_CONSOLE.search(e)]
    assert not unexpected, unexpected


def test_without_keys_the_page_opens_at_once_and_loads_nothing_from_elsewhere(
    make_service: Any, page_of: Any
) -> None:
    service = make_service(workers=0, env={"VIDCAP_API_KEYS": ""})  # local mode: no keys
    page = page_of()
    page.goto(service.url + "/")
    page.get_by_text("No videos yet").wait_for()
    assert page.locator("#key-panel").is_hidden()
    assert page.get_by_role("button", name="Forget key").is_hidden()
    assert page.errors == []

    with httpx.Client(base_url=service.url) as client:
        html = client.get("/")
        script = client.get("/static/app.js")
        missing = client.get("/static/nope.js")
        docs = client.get("/docs")
    assert html.headers["content-type"].startswith("text/html")
    policy = html.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    for src in re.findall(r'(?:src|href)="([^"#]+)"', html.text):
        assert src.startswith("/static/"), src  # nothing from elsewhere: it runs offline
    assert "javascript" in script.headers["content-type"]
    assert script.headers["cache-control"] == "no-cache"
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert docs.status_code == 200


def test_every_error_code_has_a_sentence_for_people() -> None:
    from app.errors import STATUS

    script = (Path(__file__).resolve().parents[2] / "app" / "static" / "app.js").read_text()
    table = script[
        script.index("const MESSAGES = {") : script.index("};", script.index("MESSAGES"))
    ]
    missing = [code for code in STATUS if not re.search(rf"\b{code}:", table)]
    assert not missing, f"app/static/app.js MESSAGES lacks {missing}"


# --------------------------------------------------------------------------- real footage

VISIBLE_LINES = (
    "() => [...document.querySelectorAll('#transcript li[data-index]')]"
    ".filter(li => !li.hidden).length"
)


def words(text: str) -> str:
    """Lower case, punctuation and line breaks gone: what a person reads."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def wait_ready(page: Any, service: Any, name: str) -> dict[str, Any]:
    """Waits for the page to show the captioned video ``name``; returns it from the API."""
    page.locator("#caption").wait_for(timeout=240_000)
    with service.client(None) as client:
        videos = client.get("/v1/videos").json()["videos"]
    (video,) = [v for v in videos if v["filename"] == name]
    assert video["status"] == "ready", video
    page.wait_for_function("() => document.querySelector('#player').readyState >= 1")
    return video


def showing_cues(page: Any, track: str) -> list[str]:
    """The cue texts of the player's ``track`` once it shows them (the others are off)."""
    page.wait_for_function(
        "name => { const ts = [...document.querySelectorAll('#player track')];"
        " const t = ts.find(t => t.dataset.track === name);"
        " return t && t.track.mode === 'showing' && t.track.cues && t.track.cues.length > 0"
        " && ts.every(o => o === t || o.track.mode !== 'showing'); }",
        arg=track,
    )
    return list(
        page.evaluate(
            "name => [...document.querySelector(`#player track[data-track=${name}]`).track.cues]"
            ".map(c => c.text)",
            track,
        )
    )


def test_page_shows_speech_tracks_transcript_tags_and_screen_text(
    make_service: Any, page_of: Any, shot: Any, real_data: Path, real_manifest: dict[str, Any]
) -> None:
    service = make_service(workers=1, env={"VIDCAP_API_KEYS": ""})
    page = page_of()
    page.goto(service.url + "/")
    page.get_by_text("No videos yet").wait_for()

    # --- speech: uploaded with the speech options of the form -------------------------------
    spoken = real_data / "derived" / "photo_dog_speech.mp4"
    expected = words(real_manifest["derived/photo_dog_speech.mp4"]["speech"][0]["text"])
    page.get_by_label("Spoken language").select_option("en")
    page.get_by_label("Translate speech to English").check()
    page.locator("#file-input").set_input_files(str(spoken))
    page.get_by_text("Listening to the speech").or_(page.locator("#caption")).first.wait_for(
        timeout=240_000
    )
    video = wait_ready(page, service, spoken.name)
    assert video["options"]["language"] == "en" and video["options"]["translate"] is True
    transcript = video["transcript"]
    assert transcript["language"] == "en" and transcript["segments"], transcript
    assert set(video["tracks"]) == {"speech", "description", "translation"}

    # the speech track is on by default, and its cues say what is said
    select = page.get_by_label("Subtitles")
    assert select.input_value() == "speech"
    options = select.locator("option").all_inner_texts()
    assert options == ["Speech (English)", "Description", "English translation", "Off"]
    cues = showing_cues(page, "speech")
    assert "greasy wash" in words(" ".join(cues)), cues
    assert any(word in words(" ".join(cues)) for word in expected.split()[-3:])

    # the transcript beside the video: its lines, what the API says
    assert page.get_by_role("tab", name="Transcript").get_attribute("aria-selected") == "true"
    lines = page.locator("#transcript li[data-index] .words")
    assert lines.all_inner_texts() == [s["text"] for s in transcript["segments"]]
    assert "greasy wash" in words(" ".join(lines.all_inner_texts()))
    page.locator("#player").evaluate("v => { v.currentTime = 5; }")
    page.wait_for_function("() => document.querySelector('#player').currentTime > 4.9")
    shot(page, "speech-1-ready")

    # a click on a line's time plays from there; the line is marked as the one spoken
    first = transcript["segments"][0]
    page.locator("#transcript .segment .time").first.click()
    page.wait_for_function(
        "s => Math.abs(document.querySelector('#player').currentTime - s) < 0.1", arg=first["start"]
    )
    page.wait_for_function(
        "() => document.querySelector('#transcript .segment').getAttribute('aria-current')"
        " === 'true'"
    )
    page.wait_for_function(
        "() => { const v = document.querySelector('#player');"
        " const t = [...v.querySelectorAll('track')].find(t => t.track.mode === 'showing');"
        " return !v.seeking && v.readyState >= 2 && t.track.activeCues.length === 1; }"
    )
    shot(page, "speech-2-seeked")

    # find in the transcript: the lines narrow to the matches, which are marked
    find = page.get_by_label("Find in the transcript")
    find.fill("no such words here")
    page.wait_for_function(f"() => ({VISIBLE_LINES})() === 0")
    page.get_by_text("No line matches").wait_for()
    find.fill("greasy")
    matching = [s for s in transcript["segments"] if "greasy" in s["text"].lower()]
    page.wait_for_function(f"n => ({VISIBLE_LINES})() === n", arg=len(matching))
    assert page.locator("#transcript mark").first.inner_text().lower() == "greasy"
    shot(page, "speech-3-find")
    find.fill("")
    page.wait_for_function(f"n => ({VISIBLE_LINES})() === n", arg=len(transcript["segments"]))

    # the description track: the player shows the captioner's segments instead
    select.select_option("description")
    cues = showing_cues(page, "description")
    assert cues == [s["text"] for s in video["segments"] if s["text"].strip()]
    page.get_by_role("tab", name="Segments").click()
    assert page.locator("#segments .segment").count() == len(video["segments"])
    shot(page, "speech-4-description")
    page.get_by_role("tab", name="Transcript").click()

    # the translation track: the transcript beside it shows the English text
    select.select_option("translation")
    showing_cues(page, "translation")
    page.get_by_role("tab", name="Transcript (English)").wait_for()
    english = [s["text"] for s in video["translation"]["segments"]]
    assert page.locator("#transcript li[data-index] .words").all_inner_texts() == english
    select.select_option("speech")
    showing_cues(page, "speech")

    # what is seen: the video's tags with their scores, and per segment
    tags = page.locator("#tags .tag")
    assert tags.count() == len(video["tags"]["video"]) > 0
    top = video["tags"]["video"][0]
    assert tags.first.locator(".tag-name").inner_text().lower() == top["label"].lower()
    assert tags.first.locator(".score-text").inner_text() == f"{round(100 * top['score'])}%"
    timed_tags = [s for s in video["tags"]["segments"] if s["tags"]]
    assert page.locator("#segment-tags li").count() == len(timed_tags)
    assert page.locator("#screen-text li").count() == max(1, len(video["on_screen_text"]))
    page.locator(".insights").scroll_into_view_if_needed()
    shot(page, "speech-5-tags")
    page.emulate_media(color_scheme="dark")
    page.wait_for_timeout(300)
    shot(page, "speech-6-dark", full_page=True)
    page.emulate_media(color_scheme="light")

    # --- on-screen text: a sign, no speech -------------------------------------------------
    sign = real_data / "derived" / "text_beware_of_the_dog.mp4"
    page.get_by_label("Spoken language").select_option("auto")
    page.get_by_label("Translate speech to English").uncheck()
    page.locator("#file-input").set_input_files(str(sign))
    page.locator("#video-title", has_text=sign.name).wait_for()
    video = wait_ready(page, service, sign.name)
    assert video["options"].get("translate") in (None, False)
    assert set(video["tracks"]) == {"description"}
    assert page.get_by_label("Subtitles").input_value() == "description"
    showing_cues(page, "description")
    # nothing said: the segments are shown first, the transcript says so
    assert page.get_by_role("tab", name="Segments").get_attribute("aria-selected") == "true"
    items = video["on_screen_text"]
    assert items, "no text read on the sign"
    assert "beware" in words(" ".join(i["text"] for i in items))
    buttons = page.locator("#screen-text .timed")
    assert buttons.count() == len(items)
    assert [t.lower() for t in buttons.locator(".text").all_inner_texts()] == [
        i["text"].lower() for i in items
    ]
    last = items[-1]
    page.locator("#player").evaluate("v => { v.currentTime = 6.5; }")
    page.wait_for_function("() => document.querySelector('#player').currentTime > 6.4")
    buttons.last.click()
    page.wait_for_function(
        "s => Math.abs(document.querySelector('#player').currentTime - s) < 0.1", arg=last["start"]
    )
    page.locator(".insights").scroll_into_view_if_needed()
    shot(page, "text-1-sign")
    page.get_by_role("tab", name="Transcript").click()
    page.get_by_text("Nothing is said in this video.").wait_for()

    # --- a phone: nothing wider than the screen --------------------------------------------
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(200)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "text-2-phone", full_page=True)

    assert page.errors == [], page.errors


def test_page_uploads_straight_to_s3_and_resumes_after_the_page_was_closed(
    s3_server: Any, make_service: Any, make_video: Any, page_of: Any, tmp_path: Path
) -> None:
    service = make_service(env={"VIDCAP_DIRECT_UPLOAD_PART_MB": "5"}, s3=s3_server)
    page = page_of()
    page.goto(service.url + "/")
    page.get_by_label("API key", exact=True).fill(API_KEYS["alice"])
    page.get_by_role("button", name="Continue").click()
    page.get_by_text("No videos yet").wait_for()
    csp = httpx.get(service.url + "/").headers["content-security-policy"]
    assert f"connect-src 'self' {s3_server.endpoint}" in csp  # the page may reach the store

    # A video goes to the store in one PUT, is captioned, and plays from the store.
    video_file = make_video("h264_aac_mp4", duration=2)
    page.locator("#file-input").set_input_files(str(video_file))
    page.locator("#caption").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelector('#player').readyState >= 2")
    with service.client() as client:
        (video,) = client.get("/v1/videos").json()["videos"]
    assert video["status"] == "ready" and video["media"]["container"] == "mp4"
    assert f"videos/alice/{video['id']}/source.mp4" in service.stored()
    assert not (service.data_dir / "videos").exists()  # nothing through the API's disk

    # A large file in parts, slowed down; the page is closed mid-way (reloaded), then the
    # same file is chosen again: it goes on with the same video, from the parts stored.
    big = tmp_path / "holiday.mov"
    big.write_bytes(os.urandom(11 * 1024 * 1024))  # not a video: the worker will say so
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    throttle = {"offline": False, "latency": 0, "downloadThroughput": -1}
    cdp.send("Network.emulateNetworkConditions", {**throttle, "uploadThroughput": 1_000_000})
    page.locator("#file-input").set_input_files(str(big))
    page.wait_for_function("() => document.querySelector('#upload-progress').value > 50")
    page.reload()
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {**throttle, "uploadThroughput": -1})
    page.get_by_text("holiday.mov").first.wait_for()  # listed, still uploading
    page.locator("#file-input").set_input_files(str(big))
    error = page.locator("#upload-error")
    page.locator("#video-error").get_by_text("This file is not a video.").wait_for(timeout=60_000)
    with service.client() as client:
        videos = client.get("/v1/videos").json()["videos"]
    assert [v["filename"] for v in videos] == ["holiday.mov", video_file.name]  # one, resumed
    assert videos[0]["status"] == "failed"
    assert videos[0]["error"]["code"] == "not_a_video"
    assert (
        page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('vidcap.upload'))") == []
    )
    assert error.is_hidden() or "upload" not in error.inner_text()
    unexpected = [e for e in page.errors if not EXPECTED_CONSOLE.search(e)]
    assert not unexpected, unexpected
