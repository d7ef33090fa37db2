"""The janitor: removes stored videos whose records expired, and uploads abandoned mid-way.

Records expire in Redis by themselves (retention TTL); the objects beside them do not. The API
process runs :func:`sweep` every ``janitor_interval_s``; any number of API processes may run it
at once (removing a video's objects twice is harmless). It works through the store
(:mod:`storage`), so it cleans a local folder and an S3 bucket alike.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from storage import VIDEOS, LocalStorage, Storage, StoredObject
from workers.store import Store, video_key

log = logging.getLogger(__name__)

# A video whose upload was stored less than this ago is left alone: its record is being
# written to Redis right after the file was stored (milliseconds; a failed write removes the
# objects itself). Short, so that objects go with their records.
GRACE_S = 10.0
# An upload still being received is written continuously; one untouched this long was left
# by a process that died (normal failures clean up at once). The same age for multipart
# uploads the object store holds unfinished.
ABANDONED_UPLOAD_S = 3600.0


def _video_id(key: str) -> str:
    """The video id of a key ``videos/{tenant}/{id}/...``."""
    parts = key.split("/")
    return parts[2] if len(parts) >= 4 and parts[0] == VIDEOS.rstrip("/") else ""


def _videos(storage: Storage) -> dict[str, list[StoredObject]]:
    """Stored objects by video prefix (``videos/{tenant}/{id}/``)."""
    found: dict[str, list[StoredObject]] = {}
    for obj in storage.objects(VIDEOS):
        parts = obj.key.split("/")
        if len(parts) >= 4:
            found.setdefault("/".join(parts[:3]) + "/", []).append(obj)
    return found


def _stored_at(objects: list[StoredObject]) -> float:
    """When the video's upload was stored (its source is stamped then; the worker's later
    objects do not count), or its newest object's time when it has no source."""
    sources = [o.modified for o in objects if o.key.rsplit("/", 1)[-1].startswith("source.")]
    return max(sources or [o.modified for o in objects])


def sweep(
    storage: Storage,
    store: Store,
    spool_dir: Path,
    grace_s: float = GRACE_S,
    abandoned_s: float = ABANDONED_UPLOAD_S,
) -> list[str]:
    """Removes stored videos whose record expired (or was never written), partial uploads in
    the API's spool untouched for ``abandoned_s``, and the store's multipart uploads begun
    that long ago.

    Args:
        storage: The video store.
        store: The record store.
        spool_dir: The API's data folder (its ``uploads/`` spool).

    Returns:
        What was removed (object prefixes, paths, and a count of aborted uploads).
    """
    removed: list[str] = []
    now = time.time()
    for prefix, objects in sorted(_videos(storage).items()):
        if now - _stored_at(objects) < grace_s:
            continue
        if store.redis.exists(video_key(_video_id(objects[0].key))):
            continue
        storage.delete_prefix(prefix)
        removed.append(prefix)
    if isinstance(storage, LocalStorage):
        removed += [str(p) for p in storage.prune(grace_s)]
    for part in (spool_dir / "uploads").glob(".upload-*"):
        if part.stat().st_mtime < now - abandoned_s:
            part.unlink(missing_ok=True)
            removed.append(str(part))
    # A pending direct upload may take longer than that: its parts stay while its record does.
    aborted = storage.abort_stale_uploads(
        abandoned_s, keep=lambda key: bool(store.redis.exists(video_key(_video_id(key))))
    )
    if aborted:
        removed.append(f"{aborted} unfinished multipart upload(s)")
    for what in removed:
        log.info("janitor: removed %s (no record)", what)
    return removed
