"""Benchmarks of vidcap's own code against reference tools; run them with ``make bench``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def measure_in_fresh_process(module: str, path: Path) -> dict[str, Any]:
    """Runs ``python -m module --child path`` and returns the JSON line it prints last: a
    measurement in a process of its own, so its peak memory is its own."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--child", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
