"""The janitor: removes files whose records expired, and uploads abandoned mid-way.

Records expire in Redis by themselves (retention TTL); the files beside them do not. The API
process runs :func:`sweep` every ``janitor_interval_s``; any number of API processes may run it
at once (removing a directory twice is harmless).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from pathlib import Path

from workers.store import Store, video_key

log = logging.getLogger(__name__)

# A video folder whose upload was stored less than this ago is left alone: its record is
# being written to Redis right after the file was moved in (milliseconds; a failed write
# removes the folder itself). Short, so that files go with their records.
GRACE_S = 10.0
# An upload still being received is written continuously; one untouched this long was left
# by a process that died (normal failures clean up at once).
ABANDONED_UPLOAD_S = 3600.0


def _stored_at(folder: Path) -> float:
    """When the folder's upload was stored (its source file is stamped then; the worker's
    later files do not count), or the folder's own time when it holds none."""
    sources = list(folder.glob("source.*"))
    return max((p.stat().st_mtime for p in sources), default=folder.stat().st_mtime)


def sweep(
    data_dir: Path,
    store: Store,
    grace_s: float = GRACE_S,
    abandoned_s: float = ABANDONED_UPLOAD_S,
) -> list[Path]:
    """Removes video folders whose record expired (or was never written), and partial
    uploads untouched for ``abandoned_s``.

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    now = time.time()
    for folder in sorted((data_dir / "videos").glob("*/*")):
        if not folder.is_dir() or now - _stored_at(folder) < grace_s:
            continue
        if store.redis.exists(video_key(folder.name)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    for tenant in (data_dir / "videos").glob("*"):
        # A tenant's folder left empty (not one just made for an upload arriving now).
        if tenant.is_dir() and now - tenant.stat().st_mtime >= grace_s:
            with contextlib.suppress(OSError):  # not empty: kept
                tenant.rmdir()
                removed.append(tenant)
    for part in (data_dir / "uploads").glob(".upload-*"):
        if part.stat().st_mtime < now - abandoned_s:
            part.unlink(missing_ok=True)
            removed.append(part)
    for path in removed:
        log.info("janitor: removed %s (no record)", path)
    return removed
