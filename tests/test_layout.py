"""The package layering: settings/ and models/ at the bottom, workers/ above them, the CLI on top.

Each check imports in a fresh interpreter, so modules other tests imported do not count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imported_packages(modules: list[str], packages: list[str]) -> list[str]:
    """Which of ``packages`` a fresh interpreter has loaded after importing ``modules``."""
    code = (
        "import json, sys\n"
        f"for name in {modules!r}:\n    __import__(name)\n"
        "loaded = {m.partition('.')[0] for m in sys.modules}\n"
        f"print(json.dumps(sorted(loaded & {set(packages)!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.splitlines()[-1]))


def test_settings_import_neither_the_cli_nor_the_services() -> None:
    assert _imported_packages(["settings"], ["vidcap", "app", "workers"]) == []


def test_workers_and_models_do_not_import_the_cli() -> None:
    modules = [
        "workers.tasks",
        "workers.runtime",
        "workers.queue",
        "workers.store",
        "workers.metrics",
        "workers.redis_server",
        "models.captioner.pipeline",
    ]
    assert _imported_packages(modules, ["vidcap", "app"]) == []


def test_storage_imports_neither_the_cli_nor_the_services() -> None:
    assert _imported_packages(["storage"], ["vidcap", "app", "workers"]) == []
