"""The janitor: removes files whose records expired, and uploads abandoned mid-way.

Records expire in Redis by themselves (retention TTL); the files beside them do not. The API
process runs :func:`sweep` every ``janitor_interval_s``; any number of API processes may run it
at once (removing a directory twice is harmless).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from workers.store import Store, video_key

log = logging.getLogger(__name__)

# A directory younger than this is left alone: its upload may still be on its way to Redis.
GRACE_S = 3600.0


def sweep(data_dir: Path, store: Store, grace_s: float = GRACE_S) -> list[Path]:
    """Removes video folders without a record, and partial uploads older than ``grace_s``.

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    cutoff = time.time() - grace_s
    for folder in sorted((data_dir / "videos").glob("*/*")):
        if not folder.is_dir() or folder.stat().st_mtime > cutoff:
            continue
        if store.redis.exists(video_key(folder.name)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    for part in (data_dir / "uploads").glob(".upload-*"):
        # Uploads in flight are written continuously: an old modification time means the
        # request that wrote it is gone (a crashed process; normal failures clean up at once).
        if part.stat().st_mtime < cutoff:
            part.unlink(missing_ok=True)
            removed.append(part)
    for path in removed:
        log.info("janitor: removed %s (no record)", path)
    return removed
