"""The ``vidcap`` command line: one group of commands, each a thin call into the packages.

Commands print JSON on stdout. A problem with the input file prints
``{"error": {"code": ..., "message": ...}}`` and exits with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from models.media import Backend, Fit, MediaError, SampleMode, probe, sample_frames
from vidcap import __version__
from vidcap.config import get_settings

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

    from models.pipeline import CaptionPipeline

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
    pipe = CaptionPipeline.from_pretrained(
        path,
        device=device or settings.device,
        limits=settings.media_limits(),
        backend=settings.media_backend,
    )
    return pipe, path, time.perf_counter() - began


def _features(pipe: Any, file: Path, timer: Any) -> Any:
    from models.features import VideoFeatures

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


def _remote_caption(file: Path, server: str, api_key: str | None, segments: float | None) -> None:
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
    _print_json(
        {
            **ids,
            "caption": job["result"]["caption"],
            "segments": job["result"]["segments"],
            "timings_s": timings,
        }
    )


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
        typer.Option("--save", help="Save the video's features here (.safetensors) for `ask`."),
    ] = None,
    device: DeviceOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Caption a video (and its segments) and print JSON with timings per stage.

    With --server, the video is uploaded to that vidcap server (progress on stderr) and the
    JSON holds its video_id and job_id, the caption and the segments.
    """
    if server:
        _no_local_options(model=model, device=device, save=save)
        _remote_caption(file, server, api_key, segments)
        return

    from models.pipeline import StageTimer

    pipe, path, load_s = _load_pipeline(model, device)
    timer = StageTimer()
    features = _features(pipe, file, timer)
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
    if save is not None:
        features.save(save)
        result["features"] = str(save)
    result["timings_s"] = _timings(load_s, timer)
    _print_json(result)


@app.command("ask")
def ask_command(
    file: Annotated[
        str,
        typer.Argument(
            help="A video file, or features saved by caption --save; with --server, a video id.",
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

    from models.pipeline import StageTimer

    pipe, path, load_s = _load_pipeline(model, device)
    timer = StageTimer()
    features = _features(pipe, Path(file), timer)
    answer = pipe.answer(features, question, timer=timer)
    _print_json(
        {
            "file": str(Path(file)),
            "model": str(path),
            "question": question,
            "answer": answer,
            "timings_s": _timings(load_s, timer),
        }
    )


# ---------------------------------------------------------------------- data, training, eval

data_app = typer.Typer(help="Datasets: generate the synthetic world.", no_args_is_help=True)
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
    from models.data.world import generate

    counts = {"train": train, "val": val, "test": test, "compositional": compositional}
    counts = {split: n for split, n in counts.items() if n}
    if not counts:
        raise typer.BadParameter("ask for at least one clip (--train/--val/--test/...)")
    written = generate(out, counts, seed)
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
) -> None:
    """Train a captioner (settings: defaults < --config file < flags); prints the final dir."""
    from models.train import TrainConfig, train

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
    data: Annotated[Path, typer.Option("--data", help="Dataset folder or file.")],
    model: ModelOption = None,
    split: Annotated[str, typer.Option("--split", help="train, val, test, compositional.")] = (
        "test"
    ),
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default: model's).")] = (
        None
    ),
    limit: Annotated[int | None, typer.Option("--limit", help="First N clips only.", min=1)] = None,
    ablations: Annotated[
        bool, typer.Option("--ablations/--no-ablations", help="Also mask each stream.")
    ] = True,
    device: DeviceOption = None,
) -> None:
    """Evaluate a model: caption metrics, question accuracy by kind, stream ablations."""
    from models.evaluate import markdown_report, run_eval

    path = model or get_settings().model
    report = run_eval(
        path, data, split, out or path, limit=limit, device=device, ablations=ablations
    )
    sys.stdout.write(markdown_report(report) + "\n")


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
