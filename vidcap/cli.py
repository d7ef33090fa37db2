"""The ``vidcap`` command line: one group of commands, each a thin call into the packages.

Commands print JSON on stdout. A problem with the input file prints
``{"error": {"code": ..., "message": ...}}`` and exits with status 2.
"""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from models.media import Backend, Fit, MediaError, SampleMode, probe, sample_frames
from settings import get_settings
from vidcap import __version__

if TYPE_CHECKING:
    from vidcap.client import VidcapClient

app = typer.Typer(
    name="vidcap",
    help="vidcap: caption videos and answer questions about them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_BAD_INPUT = 2


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _fail(error: MediaError) -> NoReturn:
    _print_json({"error": error.to_dict()})
    raise typer.Exit(EXIT_BAD_INPUT)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vidcap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """vidcap: caption videos and answer questions about them."""


@app.command("probe")
def probe_command(file: Annotated[Path, typer.Argument(help="A video file.")]) -> None:
    """Print a video's facts as JSON, or why it is not accepted (exit 2)."""
    try:
        info = probe(file, limits=get_settings().media_limits())
    except MediaError as e:
        _fail(e)
    _print_json(info.model_dump())


@app.command("frames")
def frames_command(
    file: Annotated[Path, typer.Argument(help="A video file.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNG files.")],
    num_frames: Annotated[
        int | None, typer.Option("--num-frames", "-n", help="How many frames (default 16).")
    ] = None,
    fps: Annotated[
        float | None, typer.Option("--fps", help="Frames per second instead of a count.")
    ] = None,
    size: Annotated[int, typer.Option("--size", help="Output side in pixels.")] = 224,
    fit: Annotated[Fit, typer.Option("--fit", help="crop (fill) or pad (letterbox).")] = Fit.CROP,
    mode: Annotated[
        SampleMode, typer.Option("--mode", help="exact frames, or fast (nearby keyframes).")
    ] = SampleMode.EXACT,
    start: Annotated[float, typer.Option("--start", help="Start of the span, seconds.")] = 0.0,
    end: Annotated[float | None, typer.Option("--end", help="End of the span, seconds.")] = None,
    backend: Annotated[Backend | None, typer.Option("--backend", help="Decoder.")] = None,
) -> None:
    """Write the frames the model would see as PNGs, and print where and when they are."""
    from PIL import Image

    settings = get_settings()
    if num_frames is None and fps is None:
        num_frames = 16
    try:
        images, stamps = sample_frames(
            file,
            num_frames=num_frames,
            fps=fps,
            size=size,
            fit=fit,
            mode=mode,
            start=start,
            end=end,
            backend=backend or settings.media_backend,
            limits=settings.media_limits(),
        )
    except MediaError as e:
        _fail(e)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (image, t) in enumerate(zip(images, stamps, strict=True)):
        path = out / f"frame_{i:04d}_{t:09.3f}s.png"
        Image.fromarray(image).save(path)
        written.append({"file": str(path), "time_s": round(float(t), 6)})
    _print_json({"frames": written})


# ---------------------------------------------------------------------- the model

ModelOption = Annotated[
    Path | None,
    typer.Option("--model", help="Model directory (default: VIDCAP_MODEL, else the shipped one)."),
]
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="cpu, cuda or cuda:N (default: CUDA if present).")
]


def _load_pipeline(model: Path | None, device: str | None) -> tuple[Any, Path, float]:
    # torch loads only here: `vidcap probe` and the decode children stay light.
    import time

    from transformers.utils import logging as hf_logging

    from models.captioner.grounded_pipeline import GroundedPipeline, is_grounded
    from models.captioner.pipeline import CaptionPipeline

    hf_logging.disable_progress_bar()  # stdout is JSON; stderr stays for real problems
    settings = get_settings()
    path = model or settings.model
    if not (path / "config.json").is_file():
        _print_json(
            {
                "error": {
                    "code": "model_not_found",
                    "message": f"no vidcap model in {path} (config.json missing); pass --model"
                    " DIR or set VIDCAP_MODEL",
                }
            }
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    began = time.perf_counter()
    if is_grounded(path):
        return (
            GroundedPipeline.from_pretrained(path, device=device or settings.device),
            path,
            time.perf_counter() - began,
        )
    pipe = CaptionPipeline.from_pretrained(
        path,
        device=device or settings.device,
        limits=settings.media_limits(),
        backend=settings.media_backend,
    )
    return pipe, path, time.perf_counter() - began


def _features(pipe: Any, file: Path, timer: Any) -> Any:
    from models.captioner.features import VideoFeatures

    try:
        if file.suffix == ".safetensors":
            features = VideoFeatures.load(file)
            pipe.check_features(features)
            return features
        return pipe.extract(file, timer=timer)
    except MediaError as e:
        _fail(e)
    except ValueError as e:  # not a features file, or features of other backbones
        raise typer.BadParameter(str(e)) from None


def _timings(load_s: float, timer: Any) -> dict[str, float]:
    stages = {"load": load_s, **timer.seconds}
    stages["total"] = sum(stages.values())
    return {name: round(seconds, 4) for name, seconds in stages.items()}


LanguageOption = Annotated[
    str | None,
    typer.Option(
        "--language",
        help="The spoken language as an ISO 639-1 code (en, ru, ...), or auto (the default:"
        " detected per stretch of speech).",
    ),
]

ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="VIDCAP_SERVER",
        help="Use this vidcap server (e.g. http://127.0.0.1:8000) instead of a local model.",
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="VIDCAP_API_KEY",
        help="The server's API key (with --server).",
        show_default=False,
    ),
]


def _no_local_options(**given: object) -> None:
    """Refuses options that only a local model uses, when --server is given."""
    for name, value in given.items():
        if value is not None:
            raise typer.BadParameter(
                "for a local model only: leave it out when using --server",
                param_hint=f"--{name}",
            )


def _remote_fail(error: dict[str, Any], **context: Any) -> NoReturn:
    _print_json({**context, "error": error})
    raise typer.Exit(EXIT_BAD_INPUT)


def _follow(client: VidcapClient, job: dict[str, Any]) -> dict[str, Any]:
    """Waits for a job with a progress bar (0-100, the stage as its description) on stderr."""
    from tqdm import tqdm

    with tqdm(
        total=100,
        desc=f"{job['state']:<11}",
        file=sys.stderr,
        bar_format="{desc}{percentage:3.0f}%|{bar}| [{elapsed}]",
    ) as bar:

        def update(current: dict[str, Any]) -> None:
            bar.set_description_str(f"{current.get('stage') or current['state']:<11}", False)
            # Never backwards, even if the server reports a stage again.
            bar.n = max(bar.n, min(100, int(current["percent"])))
            bar.refresh()

        try:
            return client.wait(job["id"], on_update=update)
        except KeyboardInterrupt:
            bar.close()
            sys.stderr.write(
                f"interrupted: job {job['id']} goes on on the server "
                f"(cancel it with POST /v1/jobs/{job['id']}/cancel)\n"
            )
            raise typer.Exit(130) from None


def _remote_caption(
    file: Path,
    server: str,
    api_key: str | None,
    segments: float | None,
    *,
    language: str | None = None,
    translate: bool = False,
    as_json: bool = False,
) -> None:
    import time

    from tqdm import tqdm

    from vidcap.client import VidcapClient, VidcapError

    if not file.is_file():
        _remote_fail({"code": "file_not_found", "message": f"no such file: {file}"})
    began = time.perf_counter()
    try:
        with VidcapClient(server, api_key) as client:
            with tqdm(
                total=file.stat().st_size,
                desc="upload",
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=sys.stderr,
            ) as bar:
                created = client.upload(
                    file,
                    segment_seconds=segments,
                    language=language,
                    translate=translate,
                    on_progress=lambda sent, _total: bar.update(sent - bar.n),
                )
            upload_s = time.perf_counter() - began
            video_id = created["video"]["id"]
            job = _follow(client, created["job"])
    except VidcapError as e:
        _remote_fail(e.to_dict())
    except OSError as e:
        _remote_fail({"code": "file_not_readable", "message": f"cannot read {file}: {e}"})
    ids = {"video_id": video_id, "job_id": job["id"]}
    if job["state"] != "succeeded":
        _remote_fail(job.get("error") or {"code": job["state"], "message": "the job ended"}, **ids)
    timings = {name: round(float(s), 4) for name, s in job["timings"].items()}
    timings["upload"] = round(upload_s, 4)
    timings["total"] = round(time.perf_counter() - began, 4)
    result = job["result"]
    if as_json:
        _print_json({**ids, **result, "timings_s": timings})
    else:
        sys.stdout.write(_caption_report(ids, result, timings))


def _clock(seconds: float) -> str:
    """``m:ss.s`` (``h:mm:ss.s`` past an hour) for people reading times in a terminal."""
    tenths = max(0, round(float(seconds) * 10))
    minutes, tenth_s = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    text = f"{minutes:02d}:{tenth_s / 10:04.1f}" if hours else f"{minutes}:{tenth_s / 10:04.1f}"
    return f"{hours}:{text}" if hours else text


def _span(item: dict[str, Any]) -> str:
    return f"{_clock(item['start'])}-{_clock(item['end'])}"


def _tag_text(tag: dict[str, Any]) -> str:
    names = [n for n in tag.get("names") or [] if n != tag["label"]]
    shown = f"{tag['label']} ({', '.join(names[:2])})" if names else tag["label"]
    return f"{shown} {round(100 * float(tag['score']))}%"


def _caption_report(ids: dict[str, str], result: dict[str, Any], timings: dict[str, float]) -> str:
    """A caption job's result for people: description, speech, on-screen text, tags."""
    lines = [f"video {ids['video_id']} (job {ids['job_id']})", ""]
    lines += ["Description:", f"  {result.get('caption') or '(none)'}"]
    for segment in result.get("segments") or []:
        lines.append(f"  {_span(segment)}  {segment['text']}")

    def speech(title: str, transcript: dict[str, Any] | None) -> None:
        lines.append("")
        if not transcript or not transcript.get("segments"):
            lines.append(f"{title}: nothing is said")
            return
        language = transcript.get("language") or "unknown"
        probability = round(100 * float(transcript.get("language_probability") or 0))
        lines.append(f"{title} (language {language}, {probability}%; {transcript['model']}):")
        for segment in transcript["segments"]:
            other = segment.get("language")
            mark = f" [{other}]" if other and other != transcript.get("language") else ""
            lines.append(f"  {_span(segment)}  {segment['text']}{mark}")

    speech("Speech", result.get("transcript"))
    if result.get("translation") is not None:
        speech("Translation", result["translation"])
    lines.append("")
    texts = result.get("on_screen_text") or []
    lines.append("On-screen text:" if texts else "On-screen text: none read")
    for item in texts:
        lines.append(f"  {_span(item)}  {item['text']}")
    lines.append("")
    tags = ((result.get("tags") or {}).get("video")) or []
    lines.append("Tags: " + ("; ".join(_tag_text(t) for t in tags[:5]) if tags else "none"))
    total = timings.get("total")
    if total is not None:
        lines += ["", f"Done in {total:.1f} s (--json for everything, with timings per stage)."]
    return "\n".join(lines) + "\n"


def _remote_ask(video_id: str, question: str, server: str, api_key: str | None) -> None:
    from vidcap.client import VidcapClient, VidcapError

    try:
        with VidcapClient(server, api_key) as client:
            job = _follow(client, client.ask(video_id, question))
    except VidcapError as e:
        _remote_fail(e.to_dict())
    ids = {"video_id": video_id, "job_id": job["id"]}
    if job["state"] != "succeeded":
        _remote_fail(job.get("error") or {"code": job["state"], "message": "the job ended"}, **ids)
    _print_json(
        {
            **ids,
            "question": job["result"].get("question", question),
            "answer": job["result"]["answer"],
            "evidence": job["result"].get("evidence", []),
            "timings_s": {name: round(float(s), 4) for name, s in job["timings"].items()},
        }
    )


@app.command("caption")
def caption_command(
    file: Annotated[Path, typer.Argument(help="A video file, or features saved by --save.")],
    model: ModelOption = None,
    segments: Annotated[
        float | None,
        typer.Option("--segments", help="Also caption every SECONDS of the video.", min=0.1),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            help="Save what the model read for `ask`: features (.safetensors), or the grounded"
            " captioner's context (.npz).",
        ),
    ] = None,
    device: DeviceOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
    language: LanguageOption = None,
    translate: Annotated[
        bool, typer.Option("--translate", help="Also translate the speech to English.")
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="With --server: print everything as JSON instead of a summary."
        ),
    ] = False,
) -> None:
    """Caption a video (and its segments) and print JSON with timings per stage: what is said
    (transcript, subtitle cues), the text on screen and the tags, and the description.

    With --server, the video is uploaded to that vidcap server (progress on stderr) and the
    result is printed for people: the description and its segments, the speech's language
    and transcript with times, on-screen text with times and the top tags. --json prints all
    of it as JSON (video_id, job_id, caption, segments, transcript, translation,
    on_screen_text, tags, subtitle cues, timings_s).
    """
    if server:
        _no_local_options(model=model, device=device, save=save)
        _remote_caption(
            file,
            server,
            api_key,
            segments,
            language=language,
            translate=translate,
            as_json=as_json,
        )
        return
    saved = file.suffix == ".safetensors"
    if saved and (language is not None or translate):
        raise typer.BadParameter(
            "saved features hold no speech: caption the video file itself",
            param_hint="--language" if language is not None else "--translate",
        )
    language = _whisper_language(language)

    from models.captioner.pipeline import StageTimer

    pipe, path, load_s = _load_pipeline(model, device)
    timer = StageTimer()
    if not hasattr(pipe, "extract"):  # the grounded captioner reads the experts' findings
        if saved:
            raise typer.BadParameter(
                "this model reads the experts' findings: caption the video file itself"
            )
        _caption_grounded(pipe, path, file, load_s, timer, segments, language, translate, save)
        return
    found = None
    if saved:
        features = _features(pipe, file, timer)
    else:
        from models.perception.runner import Perceiver, public_view

        with timer.stage("load_experts"):
            experts = Perceiver(whisper_model=get_settings().whisper_model, device=device)
        began, before = time.perf_counter(), sum(timer.seconds.values())
        try:
            found, features = experts.run(
                file,
                segment_seconds=segments or get_settings().default_segment_s,
                language=language,
                translate=translate,
                during=lambda: pipe.extract(file, timer=timer),
            )
        except MediaError as e:
            _fail(e)
        # The experts' own wall time, beside the features extracted meanwhile (the stages in
        # perception_timings_s overlap: speech runs in its own thread).
        extracted = sum(timer.seconds.values()) - before
        timer.seconds["perception"] = time.perf_counter() - began - extracted
    result: dict[str, Any] = {
        "file": str(file),
        "model": str(path),
        "duration_s": round(features.duration_s, 3),
        "frames": len(features),
        "has_audio": features.has_audio,
        "caption": pipe.caption(features, timer=timer),
    }
    if segments is not None:
        result["segments"] = [
            {"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
            for s in pipe.caption_segments(features, segments, timer=timer)
        ]
    if found is not None:
        result.update(public_view(found))
        result["perception_timings_s"] = {k: round(v, 4) for k, v in found.timings.items()}
    if save is not None:
        features.save(save)
        result["features"] = str(save)
    result["timings_s"] = _timings(load_s, timer)
    _print_json(result)


def _grounded_context(
    pipe: Any, file: Path, timer: Any, segment_s: float, language: str | None, translate: bool
) -> tuple[Any, Any]:
    """Run the experts on a file and build what the grounded captioner reads about it."""
    from models.perception.runner import Perceiver

    if file.suffix == ".npz":  # a context saved by `caption --save`
        try:
            return None, pipe.load_context(file)
        except (OSError, ValueError, KeyError) as e:
            raise typer.BadParameter(f"not a saved context: {e}") from None
    with timer.stage("load_experts"):
        experts = Perceiver(whisper_model=get_settings().whisper_model, device=pipe.device.type)
    try:
        with timer.stage("perception"):
            found, _ = experts.run(
                file, segment_seconds=segment_s, language=language, translate=translate
            )
        with timer.stage("context"):
            return found, pipe.context(found, file, limits=get_settings().media_limits())
    except MediaError as e:
        _fail(e)


def _caption_grounded(
    pipe: Any,
    path: Path,
    file: Path,
    load_s: float,
    timer: Any,
    segments: float | None,
    language: str | None,
    translate: bool,
    save: Path | None,
) -> None:
    from models.perception.runner import public_view

    segment_s = segments or get_settings().default_segment_s
    found, ctx = _grounded_context(pipe, file, timer, segment_s, language, translate)
    result: dict[str, Any] = {
        "file": str(file),
        "model": str(path),
        "duration_s": round(ctx.duration, 3),
        "frames": len(ctx.frame_times),
        "has_audio": ctx.has_audio,
        "caption": pipe.describe(ctx, timer=timer),
    }
    if segments is not None:
        result["segments"] = [
            {"start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
            for s in pipe.describe_segments(ctx, segments, timer=timer)
        ]
    result.update(public_view(found))
    result["perception_timings_s"] = {k: round(v, 4) for k, v in found.timings.items()}
    if save is not None:
        pipe.save_context(ctx, save)
        result["context"] = str(save)
    result["timings_s"] = _timings(load_s, timer)
    _print_json(result)


@app.command("ask")
def ask_command(
    file: Annotated[
        str,
        typer.Argument(
            help="A video file, or features (.safetensors) or a context (.npz) saved by caption"
            " --save; with --server, a video id.",
            metavar="FILE_OR_VIDEO_ID",
        ),
    ],
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    model: ModelOption = None,
    device: DeviceOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Answer a question about a video and print JSON with timings per stage.

    With --server, the first argument is the id of a video uploaded there (see `caption
    --server`).
    """
    if not question.strip():
        raise typer.BadParameter("the question is empty")
    if server:
        _no_local_options(model=model, device=device)
        _remote_ask(file, question, server, api_key)
        return

    from models.captioner.pipeline import StageTimer

    pipe, path, load_s = _load_pipeline(model, device)
    timer = StageTimer()
    evidence: list[dict[str, Any]] = []
    if hasattr(pipe, "extract"):
        features = _features(pipe, Path(file), timer)
        answer = pipe.answer(features, question, timer=timer)
    else:  # the grounded captioner: answers carry the moments they rest on
        _, ctx = _grounded_context(
            pipe, Path(file), timer, get_settings().default_segment_s, None, False
        )
        found = pipe.answer(ctx, [question], timer=timer)[0]
        answer, evidence = found.text, [e.to_dict() for e in found.evidence]
    _print_json(
        {
            "file": str(Path(file)),
            "model": str(path),
            "question": question,
            "answer": answer,
            "evidence": evidence,
            "timings_s": _timings(load_s, timer),
        }
    )


# ---------------------------------------------------------------------- subtitles, locally


class SubtitleFormat(StrEnum):
    """What ``vidcap transcribe`` writes."""

    VTT = "vtt"
    SRT = "srt"
    JSON = "json"


def _transcribe_fail(code: str, message: str) -> NoReturn:
    # stdout is often redirected into the subtitle file: say it on stderr too.
    sys.stderr.write(f"vidcap transcribe: {message}\n")
    _print_json({"error": {"code": code, "message": message}})
    raise typer.Exit(EXIT_BAD_INPUT)


def _whisper_language(language: str | None) -> str | None:
    from models.perception.languages import language_code

    try:
        return language_code(language)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--language") from None


@app.command("transcribe")
def transcribe_command(
    file: Annotated[Path, typer.Argument(help="A video file.")],
    format: Annotated[
        SubtitleFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="vtt (WebVTT), srt or json (default: from --output's suffix, else vtt).",
        ),
    ] = None,
    translate: Annotated[
        bool, typer.Option("--translate", help="Subtitles in English, whatever is spoken.")
    ] = False,
    language: LanguageOption = None,
    whisper_model: Annotated[
        str | None,
        typer.Option(
            "--whisper-model",
            help="tiny.en (English only, fastest), base (99 languages), or a CTranslate2 Whisper"
            " directory (default: VIDCAP_WHISPER_MODEL, else base).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the subtitles here instead of to stdout."),
    ] = None,
    device: DeviceOption = None,
) -> None:
    """Subtitles of what is said in a video, made on this machine (no server needed).

    Whisper transcribes the audio track (or translates it to English with --translate) and the
    words are cut into short, readable cues. A video without speech, or without sound, gives
    a valid file with no cues. Progress is shown on stderr.
    """
    import time

    from app.subtitles import to_srt, to_vtt
    from models.perception.subtitles import speech_cues

    code = _whisper_language(language)
    chosen = format
    if chosen is None:
        suffix = output.suffix.lower().lstrip(".") if output is not None else ""
        chosen = SubtitleFormat(suffix) if suffix in {f.value for f in SubtitleFormat} else None
    chosen = chosen or SubtitleFormat.VTT
    if not file.is_file():
        _transcribe_fail("file_not_found", f"no such file: {file}")
    settings = get_settings()
    try:
        info = probe(file, limits=settings.media_limits())
    except MediaError as e:
        _transcribe_fail(e.code, f"{file}: {e.message}")

    from models.perception.result import Transcript
    from models.perception.speech import SpeechRecognizer
    from models.perception.weights import WeightsError

    model = whisper_model or settings.whisper_model
    task = "translate" if translate else "transcribe"
    load_s = transcribe_s = 0.0
    if not info.has_audio:  # nothing to hear: no need to load Whisper
        transcript = Transcript(task=task, model=Path(model).name)
    else:
        began = time.perf_counter()
        try:
            recognizer = SpeechRecognizer(model, device=device or settings.device)
        except (WeightsError, FileNotFoundError) as e:
            _transcribe_fail("model_not_found", str(e))
        load_s = time.perf_counter() - began
        began = time.perf_counter()
        transcript = _transcribe_with_progress(
            recognizer, file, info.duration_s, code, task, settings.media_limits()
        )
        transcribe_s = time.perf_counter() - began
    cues = speech_cues(transcript)
    if chosen is SubtitleFormat.VTT:
        text = to_vtt(cues)
    elif chosen is SubtitleFormat.SRT:
        text = to_srt(cues)
    else:
        text = json.dumps(
            {
                "file": str(file),
                "model": transcript.model,
                "task": transcript.task,
                "language": transcript.language,
                "language_probability": transcript.language_probability,
                "duration_s": round(info.duration_s, 3),
                "segments": [
                    {
                        "start": s.start,
                        "end": s.end,
                        "text": s.text,
                        "language": s.language,
                        "confidence": s.confidence,
                    }
                    for s in transcript.segments
                ],
                "cues": cues,
                "timings_s": {"load": round(load_s, 4), "transcribe": round(transcribe_s, 4)},
            },
            indent=2,
            ensure_ascii=False,
        )
        text += "\n"
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(output)
    said = f"language {transcript.language}" if transcript.language else "no speech"
    sys.stderr.write(f"wrote {output}: {len(cues)} cues, {said}\n")


def _transcribe_with_progress(
    recognizer: Any,
    file: Path,
    duration_s: float,
    language: str | None,
    task: str,
    limits: Any,
) -> Any:
    """``recognizer.transcribe_file`` with a progress bar (seconds of audio) on stderr."""
    from tqdm import tqdm

    total = round(duration_s, 1)
    with tqdm(
        total=total,
        desc="transcribing",
        unit="s",
        file=sys.stderr,
        bar_format="{desc} {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]",
    ) as bar:

        def update(seconds: float) -> None:
            done = max(bar.n, min(total, round(float(seconds), 1)))
            if done != bar.n:
                bar.n = done
                bar.refresh()

        try:
            transcript = recognizer.transcribe_file(
                file, language=language, task=task, limits=limits, on_progress=update
            )
        except MediaError as e:
            bar.close()
            _transcribe_fail(e.code, f"{file}: {e.message}")
        except ValueError as e:  # translation asked of an English-only model, and the like
            bar.close()
            _transcribe_fail("invalid_option", str(e))
        update(total)
        return transcript


# ---------------------------------------------------------------------- data, training, eval

data_app = typer.Typer(
    help="Datasets: generate the synthetic worlds (shapes and tones; everyday).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command("synth")
def synth_command(
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write.")],
    train: Annotated[int, typer.Option("--train", help="Training clips.", min=0)] = 0,
    val: Annotated[int, typer.Option("--val", help="Validation clips.", min=0)] = 0,
    test: Annotated[int, typer.Option("--test", help="Test clips.", min=0)] = 0,
    compositional: Annotated[
        int, typer.Option("--compositional", help="Clips with held-out combinations.", min=0)
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same clips.")] = 0,
) -> None:
    """Render synthetic clips (mp4) and their ground truth (one JSONL manifest per split)."""
    from models.training.data.world import generate

    counts = {"train": train, "val": val, "test": test, "compositional": compositional}
    counts = {split: n for split, n in counts.items() if n}
    if not counts:
        raise typer.BadParameter("ask for at least one clip (--train/--val/--test/...)")
    written = generate(out, counts, seed)
    _print_json({split: str(path) for split, path in written.items()})


@data_app.command("everyday")
def everyday_command(
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to write.")],
    train: Annotated[int, typer.Option("--train", help="Training clips.", min=0)] = 0,
    val: Annotated[int, typer.Option("--val", help="Validation clips.", min=0)] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same clips.")] = 0,
) -> None:
    """The everyday world for the grounded captioner: espeak-ng speech, music, noise and
    silence, and what the experts would report (transcript, on-screen text, tags), with
    descriptions and questions. Needs espeak-ng (apt-get install espeak-ng). Resumable."""
    from models.training.data.everyday import generate

    counts = {split: n for split, n in (("train", train), ("val", val)) if n}
    if not counts:
        raise typer.BadParameter("ask for at least one clip (--train/--val)")
    written = {
        split: generate(out, split=split, clips=n, seed=seed + i)
        for i, (split, n) in enumerate(counts.items())
    }
    _print_json({split: str(path) for split, path in written.items()})


@app.command("train")
def train_command(
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML file of training settings.")
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="Dataset folder or file.")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Run folder.")] = None,
    preset: Annotated[str | None, typer.Option("--preset", help="world, default, tiny.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=1)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1)] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    objectives: Annotated[
        str | None, typer.Option("--objectives", help="Comma list: caption,segments,qa,...")
    ] = None,
    time_limit_min: Annotated[float | None, typer.Option("--time-limit-min")] = None,
    train_clips: Annotated[int | None, typer.Option("--train-clips", min=1)] = None,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    device: DeviceOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue OUT/checkpoint.")] = False,
    grounded: Annotated[
        bool,
        typer.Option(
            "--grounded",
            help="Train the grounded captioner on an everyday-world folder (vidcap data"
            " everyday) instead of the shapes-and-tones captioner.",
        ),
    ] = False,
    scratch: Annotated[
        bool, typer.Option("--scratch", help="With --grounded: no warm start from MiniLM.")
    ] = False,
    init: Annotated[
        Path | None,
        typer.Option(
            "--init",
            help="With --grounded: start from this saved model (e.g. models/checkpoints/default)"
            " instead of MiniLM; the optimizer starts afresh.",
        ),
    ] = None,
    quote_spans: Annotated[
        bool,
        typer.Option(
            "--quote-spans",
            help="With --grounded: a span head picks each quote whole (with --init from a model"
            " without one, it starts as the copy pointer).",
        ),
    ] = False,
) -> None:
    """Train a captioner (settings: defaults < --config file < flags); prints the final dir."""
    if grounded:
        from models.training import train_grounded

        argv = ["--data", data or "data/everyday", "--out", out or "runs/grounded"]
        for flag, value in (
            ("--steps", steps), ("--batch-size", batch_size), ("--lr", lr),
            ("--time-limit-min", time_limit_min), ("--train-clips", train_clips), ("--seed", seed),
        ):  # fmt: skip
            if value is not None:
                argv += [flag, str(value)]
        argv += ["--resume"] * resume + ["--scratch"] * scratch
        argv += ["--init", str(init)] if init else []
        argv += ["--model-config", '{"quote_spans": true}'] if quote_spans else []
        final = train_grounded.GroundedTrainer(train_grounded.parse(argv)).run()
        _print_json({"model": str(final), "metrics": str(final.parent / "metrics.jsonl")})
        return
    from models.training.train import TrainConfig, train

    try:
        settings = TrainConfig.load(
            config,
            data=data,
            out=out,
            preset=preset,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            objectives=objectives.split(",") if objectives else None,
            time_limit_min=time_limit_min,
            train_clips=train_clips,
            seed=seed,
            device=device,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    final = train(settings, resume=resume)
    _print_json({"model": str(final), "metrics": str(Path(settings.out) / "metrics.jsonl")})


@app.command("eval")
def eval_command(
    data: Annotated[Path | None, typer.Option("--data", help="Dataset folder or file.")] = None,
    model: ModelOption = None,
    split: Annotated[str, typer.Option("--split", help="train, val, test, compositional.")] = (
        "test"
    ),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Report folder (default: the model's; with --manifest: var/eval-real)."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="First N clips only.", min=1)] = None,
    ablations: Annotated[
        bool, typer.Option("--ablations/--no-ablations", help="Also mask each stream.")
    ] = True,
    device: DeviceOption = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="A real-video manifest (JSONL, e.g. ../shared/data/real/manifest.jsonl): score"
            " the model on its videos instead of --data; writes eval-real.json and eval-real.md"
            " (default folder: var/eval-real).",
        ),
    ] = None,
    whisper: Annotated[
        str | None,
        typer.Option(
            "--whisper",
            help="With --manifest: the speech expert, base or tiny.en (default: VIDCAP_WHISPER"
            "_MODEL, else base).",
        ),
    ] = None,
    ablation: Annotated[
        list[str] | None,
        typer.Option(
            "--ablation",
            help="With --manifest: also score with this ablation (no_audio, no_visual, no_text);"
            " repeatable.",
        ),
    ] = None,
) -> None:
    """Evaluate a model: caption metrics, question accuracy by kind, stream ablations.

    With --manifest, score it on real videos with ground truth instead: question accuracy by
    kind, evidence, description coverage and hallucination (models/training/evaluate_real.py).
    """
    if (data is None) == (manifest is None):
        raise typer.BadParameter("give either --data or --manifest", param_hint="--data")
    settings = get_settings()
    path = model or settings.model
    if manifest is None:
        from models.training.evaluate import markdown_report, run_eval

        assert data is not None
        report = run_eval(
            path, data, split, out or path, limit=limit, device=device, ablations=ablations
        )
        sys.stdout.write(markdown_report(report) + "\n")
        return

    from models.training import evaluate_real

    if not (path / "config.json").is_file():
        _print_json({"error": {"code": "model_not_found", "message": f"no vidcap model in {path}"}})
        raise typer.Exit(EXIT_BAD_INPUT)
    if not manifest.is_file():
        raise typer.BadParameter(f"no such file: {manifest}", param_hint="--manifest")
    for name in ablation or []:
        if name not in evaluate_real.BASELINE_ABLATIONS:
            raise typer.BadParameter(
                f"use one of {', '.join(evaluate_real.BASELINE_ABLATIONS)}",
                param_hint="--ablation",
            )
    base = evaluate_real.predictor_for(
        path,
        whisper or settings.whisper_model,
        device=device or settings.device,
        limits=settings.media_limits(),
        backend=settings.media_backend,
    )

    def factory(*, ablation: str | None = None) -> evaluate_real.Predictor:
        return base.ablated(ablation)

    report = evaluate_real.run_real_eval(
        manifest,
        out or Path("var/eval-real"),
        factory,
        ablations=ablation or [],
        limit=limit,
    )
    sys.stdout.write(evaluate_real.markdown_report(report) + "\n")


# ---------------------------------------------------------------------- the service

HostOption = Annotated[
    str | None, typer.Option("--host", help="Address to listen on (default: VIDCAP_HOST).")
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="Port (default: VIDCAP_PORT, 8000).", min=0)
]


@app.command("serve")
def serve_command(host: HostOption = None, port: PortOption = None) -> None:
    """Run the HTTP API (needs REDIS_URL; workers run separately: `vidcap worker`)."""
    from vidcap import service

    settings = get_settings()
    service.configure_logging()
    service.serve(settings, host or settings.host, settings.port if port is None else port)


@app.command("worker")
def worker_command(
    burst: Annotated[bool, typer.Option("--burst", help="Exit once the queue is empty.")] = False,
) -> None:
    """Run a worker: load the model once (VIDCAP_MODEL), then caption and answer queued jobs."""
    from vidcap import service

    service.configure_logging()
    service.worker(get_settings(), burst=burst)


@app.command("run")
def run_command(
    host: HostOption = None,
    port: PortOption = None,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.", min=1)] = 1,
) -> None:
    """Run everything on this machine: Redis (unless REDIS_URL is set), workers and the API."""
    from vidcap import service

    settings = get_settings()
    service.configure_logging()
    port = settings.port if port is None else port
    service.run(settings, host or settings.host, port, workers=workers)


if __name__ == "__main__":
    app()
