"""Where videos and what the workers make of them are kept: a local folder or S3.

Every stored object has a key such as ``videos/{tenant}/{video_id}/source.mp4``. Nothing else
in vidcap builds paths of stored objects: the API stores uploads, serves media and deletes
through a :class:`Storage`, and a worker works on a :class:`Workspace`, which fetches the
objects a job reads into local scratch and stores back what it writes.

* :class:`LocalStorage` (``VIDCAP_STORAGE=local``, the default): keys are paths under
  ``VIDCAP_DATA_DIR``. One machine, or machines sharing that folder as a volume. The
  workspace of a video is its folder itself: nothing is copied.
* :class:`S3Storage` (``VIDCAP_STORAGE=s3``): any S3 service (AWS S3, Cloudflare R2,
  SeaweedFS, Ceph RGW, Garage) through boto3. The API and the workers need no shared disk:
  uploads go to the bucket in multipart parts read from the API's spool file, media is served
  by a presigned GET (Range requests answered by the store itself), and workers download to a
  scratch folder that is removed after each job.

A ground-floor package: it imports ``settings`` and nothing of app/, workers/ or vidcap/.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from settings import Settings

log = logging.getLogger(__name__)

VIDEOS = "videos/"  # every video's objects live under videos/{tenant}/{video_id}/


class StorageError(RuntimeError):
    """The object store refused or failed an operation (after its client's retries)."""


class ScratchFull(StorageError):
    """A worker's scratch folder has no room for an object it must read."""


@dataclass(frozen=True)
class StoredObject:
    """One object: its key, size in bytes, and when it was last written (Unix time)."""

    key: str
    size: int
    modified: float


class Storage(ABC):
    """The objects of one vidcap deployment (see the module docstring)."""

    kind: str

    @abstractmethod
    def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        """Stores the file at ``path`` as ``key`` (replacing it). ``move``: the file is not
        needed afterwards (a local store renames it instead of copying)."""

    @abstractmethod
    def fetch(self, key: str, dest: Path) -> bool:
        """Writes the object to ``dest`` (whole or not at all); False when there is none."""

    @abstractmethod
    def stat(self, key: str) -> StoredObject | None:
        """The object's size and time, or None when there is none."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        return self.stat(key) is not None

    @abstractmethod
    def objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with ``prefix``."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Removes every object under ``prefix`` (which must end with ``/``); how many."""

    @abstractmethod
    def rename(self, key: str, new_key: str) -> None:
        """Gives object ``key`` the key ``new_key`` (inside the store, no download)."""

    def local_path(self, key: str) -> Path | None:
        """Where the object lies on this machine's disk, for stores that keep files there."""
        return None

    def url(self, key: str, *, expires_s: int, content_type: str, filename: str) -> str | None:
        """A time-limited link that serves the object (with Range requests), or None when
        the store cannot give one (the API then serves the bytes itself)."""
        return None

    def abort_stale_uploads(
        self, older_than_s: float, keep: Callable[[str], bool] = lambda key: False
    ) -> int:
        """Aborts multipart uploads begun more than ``older_than_s`` ago, except those whose
        key ``keep`` says are still wanted (a client's direct upload); how many."""
        return 0

    def link_origin(self) -> str | None:
        """The origin (scheme://host[:port]) of the links :meth:`url` gives, if any."""
        return None

    @abstractmethod
    def check(self) -> None:
        """Raises :class:`StorageError` when the store cannot be reached (readiness)."""

    def describe(self) -> str:
        """For logs and /readyz: which store this is."""
        return self.kind


class LocalStorage(Storage):
    """Keys are paths under ``root`` (``VIDCAP_DATA_DIR``)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = self.root / key
        if ".." in Path(key).parts or key.startswith("/"):
            raise ValueError(f"not a storage key: {key!r}")
        return path

    def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(path, dest)
        else:
            tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        os.utime(dest)  # stored now: the janitor's clock for it

    def fetch(self, key: str, dest: Path) -> bool:
        source = self._path(key)
        if not source.is_file():
            return False
        if source.resolve() != dest.resolve():
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.part")
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)
        return True

    def stat(self, key: str) -> StoredObject | None:
        try:
            st = self._path(key).stat()
        except OSError:
            return None
        return StoredObject(key, st.st_size, st.st_mtime) if S_ISREG(st.st_mode) else None

    def objects(self, prefix: str) -> Iterator[StoredObject]:
        base = self._path(prefix.rstrip("/") or ".")
        folder = base if prefix.endswith("/") or base.is_dir() else base.parent
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if not key.startswith(prefix) or path.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                if path.is_file():
                    st = path.stat()
                    yield StoredObject(key, st.st_size, st.st_mtime)

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError(f"a prefix ends with '/': {prefix!r}")
        folder = self._path(prefix.rstrip("/"))
        count = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def rename(self, key: str, new_key: str) -> None:
        dest = self._path(new_key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._path(key), dest)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def check(self) -> None:
        if not os.access(self.root, os.W_OK) and self.root.exists():
            raise StorageError(f"the data folder {self.root} is not writable")

    def prune(self, grace_s: float) -> list[Path]:
        """Removes tenant folders left empty for ``grace_s`` (not one just made for an upload
        arriving now)."""
        removed = []
        now = time.time()
        for tenant in self._path(VIDEOS.rstrip("/")).glob("*"):
            if tenant.is_dir() and now - tenant.stat().st_mtime >= grace_s:
                with contextlib.suppress(OSError):  # not empty: kept
                    tenant.rmdir()
                    removed.append(tenant)
        return removed

    def describe(self) -> str:
        return f"local folder {self.root}"


class S3Storage(Storage):
    """Objects in one bucket of an S3 service, under an optional key prefix.

    Args:
        bucket: The bucket (:meth:`ensure_bucket` creates it when missing).
        prefix: Prepended to every key ("" or ending with "/"), for a bucket shared with
            other data.
        client: A boto3 S3 client (see :func:`open_storage`).
        link_client: The client that signs links given to browsers and clients, when they
            reach the store at another address than vidcap does (default: ``client``).
        part_bytes: Multipart part size for uploads of files larger than one part.
    """

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        client: Any,
        *,
        prefix: str = "",
        link_client: Any = None,
        part_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        from boto3.s3.transfer import TransferConfig

        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.bucket, self.client, self.prefix = bucket, client, prefix
        self.link_client = link_client or client
        # Parts are read from the file one at a time per thread: a 2 GB upload never sits in
        # memory. Four threads keep a remote store's bandwidth busy.
        self.transfer = TransferConfig(
            multipart_threshold=part_bytes, multipart_chunksize=part_bytes, max_concurrency=4
        )

    def _key(self, key: str) -> str:
        return self.prefix + key

    @staticmethod
    def _code(error: Exception) -> str:
        """The S3 error code of a botocore ClientError ("" for any other error)."""
        return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))

    @classmethod
    def _missing(cls, error: Exception) -> bool:
        return cls._code(error) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")

    def _fail(self, what: str, error: Exception) -> StorageError:
        return StorageError(f"object store ({self.describe()}): {what} failed: {error}")

    def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key), Config=self.transfer)
        except Exception as e:  # s3transfer aborts its multipart upload itself
            raise self._fail(f"storing {key}", e) from e
        if move:
            path.unlink(missing_ok=True)

    def fetch(self, key: str, dest: Path) -> bool:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            self.client.download_file(self.bucket, self._key(key), str(tmp), Config=self.transfer)
        except Exception as e:
            tmp.unlink(missing_ok=True)
            if self._missing(e):
                return False
            raise self._fail(f"reading {key}", e) from e
        os.replace(tmp, dest)
        return True

    def stat(self, key: str) -> StoredObject | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:
            if self._missing(e):
                return None
            raise self._fail(f"looking up {key}", e) from e
        return StoredObject(key, int(head["ContentLength"]), head["LastModified"].timestamp())

    def objects(self, prefix: str) -> Iterator[StoredObject]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield StoredObject(
                        item["Key"][len(self.prefix) :],
                        int(item["Size"]),
                        item["LastModified"].timestamp(),
                    )
        except Exception as e:
            if self._missing(e):
                return
            raise self._fail(f"listing {prefix}", e) from e

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError(f"a prefix ends with '/': {prefix!r}")
        keys = [self._key(o.key) for o in self.objects(prefix)]
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            try:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except Exception as e:
                raise self._fail(f"deleting {prefix}", e) from e
        return len(keys)

    def rename(self, key: str, new_key: str) -> None:
        try:  # a server-side copy (in parts above 5 GB), then the old key goes
            self.client.copy(
                {"Bucket": self.bucket, "Key": self._key(key)},
                self.bucket,
                self._key(new_key),
                Config=self.transfer,
            )
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:
            raise self._fail(f"renaming {key}", e) from e

    # Direct uploads: the client sends the bytes to the store itself, on presigned links.

    def put_link(self, key: str, expires_s: int) -> str:
        """A presigned PUT of the whole object."""
        return str(
            self.link_client.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=expires_s,
            )
        )  # fmt: skip

    def start_upload(self, key: str) -> str:
        """Begins a multipart upload of ``key``; its upload id."""
        try:
            made = self.client.create_multipart_upload(Bucket=self.bucket, Key=self._key(key))
        except Exception as e:
            raise self._fail(f"starting the upload of {key}", e) from e
        return str(made["UploadId"])

    def part_link(self, key: str, upload_id: str, number: int, expires_s: int) -> str:
        """A presigned PUT of part ``number`` (1-based) of a multipart upload."""
        params = {
            "Bucket": self.bucket, "Key": self._key(key), "UploadId": upload_id,
            "PartNumber": number,
        }  # fmt: skip
        return str(
            self.link_client.generate_presigned_url(
                "upload_part", Params=params, ExpiresIn=expires_s
            )
        )

    def uploaded_parts(self, key: str, upload_id: str) -> dict[int, tuple[int, str]] | None:
        """The parts the store holds: number -> (size, ETag); None when the upload is gone
        (completed or aborted)."""
        parts: dict[int, tuple[int, str]] = {}
        try:
            pages = self.client.get_paginator("list_parts").paginate(
                Bucket=self.bucket, Key=self._key(key), UploadId=upload_id
            )
            for page in pages:
                for part in page.get("Parts", []):
                    parts[int(part["PartNumber"])] = (int(part["Size"]), str(part["ETag"]))
        except Exception as e:
            if self._code(e) in ("NoSuchUpload", "404"):
                return None
            raise self._fail(f"listing the parts of {key}", e) from e
        return parts

    def complete_upload(self, key: str, upload_id: str, parts: dict[int, str]) -> None:
        """Joins the parts (number -> ETag) into the object."""
        ordered = [{"PartNumber": n, "ETag": etag} for n, etag in sorted(parts.items())]
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), UploadId=upload_id,
                MultipartUpload={"Parts": ordered},
            )  # fmt: skip
        except Exception as e:
            raise self._fail(f"completing the upload of {key}", e) from e

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Drops a multipart upload and its parts (nothing when it is gone already)."""
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=self._key(key), UploadId=upload_id
            )

    def url(self, key: str, *, expires_s: int, content_type: str, filename: str) -> str | None:
        return str(
            self.link_client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self._key(key),
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": f'inline; filename="{filename}"',
                    "ResponseCacheControl": "private, no-cache",
                },
                ExpiresIn=expires_s,
            )
        )

    def link_origin(self) -> str | None:
        from urllib.parse import urlsplit

        link = urlsplit(str(self.url("x", expires_s=60, content_type="x", filename="x")))
        return f"{link.scheme}://{link.netloc}"

    def abort_stale_uploads(
        self, older_than_s: float, keep: Callable[[str], bool] = lambda key: False
    ) -> int:
        cutoff = time.time() - older_than_s
        aborted = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    key = upload["Key"][len(self.prefix) :]
                    if upload["Initiated"].timestamp() < cutoff and not keep(key):
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        aborted += 1
        except Exception as e:
            raise self._fail("aborting stale uploads", e) from e
        return aborted

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            raise self._fail("reaching the bucket", e) from e

    def ensure_bucket(self) -> None:
        """Creates the bucket when the store has none of that name (a fresh SeaweedFS)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except Exception as e:
            if not self._missing(e):
                raise self._fail("reaching the bucket", e) from e
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except Exception as e:
            if self._code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._fail(f"creating bucket {self.bucket}", e) from e
        log.info("created bucket %s", self.bucket)

    def describe(self) -> str:
        endpoint = self.client.meta.endpoint_url
        return f"s3://{self.bucket}/{self.prefix} at {endpoint}"


def source_name(container: str) -> str:
    """The stored name of an uploaded video: from its probed container, never the client's
    name (an upload called page.html or shell.php is stored as source.mp4 when it is an mp4)."""
    import re

    return "source." + (re.sub(r"[^a-z0-9]", "", container.lower())[:5] or "video")


def open_storage(settings: Settings) -> Storage:
    """The store the settings name (``VIDCAP_STORAGE``)."""
    if settings.storage == "local":
        return LocalStorage(settings.data_dir)
    import boto3
    from botocore.config import Config

    secret = settings.s3_secret_access_key.get_secret_value()

    def client(endpoint: str) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=endpoint or None,
            region_name=settings.s3_region or None,
            # Empty: boto3's own chain (AWS_* variables, ~/.aws, an instance role).
            aws_access_key_id=settings.s3_access_key_id or None,
            aws_secret_access_key=secret or None,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": settings.s3_addressing_style},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    public = settings.s3_public_endpoint_url
    return S3Storage(
        settings.s3_bucket,
        client(settings.s3_endpoint_url),
        prefix=settings.s3_prefix,
        link_client=client(public) if public else None,
    )


class Workspace:
    """One job's view of a video's objects as local files.

    With a local store the workspace is the video's folder itself. With a remote one it is a
    folder of its own under ``scratch`` (removed by :meth:`close`): :meth:`get` downloads an
    object the first time it is asked for, :meth:`put` uploads a file written there.

    Args:
        storage: The store.
        prefix: The video's key prefix (``videos/{tenant}/{id}``).
        scratch: Root of the worker's scratch folders.
        max_bytes: The most this workspace may download (the scratch bound); 0: no bound
            beyond the free space on the disk.
    """

    def __init__(self, storage: Storage, prefix: str, scratch: Path, max_bytes: int = 0) -> None:
        self.storage, self.prefix = storage, prefix.rstrip("/")
        local = storage.local_path(self.prefix)
        self.remote = local is None
        # Named after this process: a worker that starts removes the folders of dead ones.
        mine = scratch / f"{os.getpid()}-{uuid.uuid4().hex}"
        self.folder = mine if local is None else local
        self.max_bytes, self.fetched = max_bytes, 0

    def key(self, name: str) -> str:
        """The object key of ``name`` in this video."""
        return f"{self.prefix}/{name}"

    def path(self, name: str) -> Path:
        """Where ``name`` is (or is to be written) locally."""
        if self.remote:
            self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / name

    def get(self, name: str) -> Path | None:
        """The local file of object ``name`` (fetched now if need be), or None if not stored."""
        path = self.folder / name
        if not self.remote:
            return path if path.is_file() else None
        if path.is_file():
            return path
        found = self.storage.stat(self.key(name))
        if found is None:
            return None
        self.path(name)
        free = shutil.disk_usage(self.folder).free
        if (self.max_bytes and self.fetched + found.size > self.max_bytes) or found.size > free:
            raise ScratchFull(
                f"{name} ({found.size} bytes) does not fit the worker's scratch folder"
                f" ({free} bytes free, bound {self.max_bytes or 'none'})"
            )
        if not self.storage.fetch(self.key(name), path):
            return None
        self.fetched += found.size
        return path

    def put(self, name: str) -> None:
        """Stores the file written at :meth:`path` (``name``) as this video's object."""
        if self.remote:
            self.storage.put_file(self.key(name), self.folder / name, move=False)

    def rename(self, name: str, new_name: str) -> None:
        """Renames object ``name`` (and its local copy) to ``new_name``."""
        self.storage.rename(self.key(name), self.key(new_name))
        copy = self.folder / name
        if self.remote and copy.is_file():
            os.replace(copy, self.folder / new_name)

    def exists(self, name: str) -> bool:
        """Whether object ``name`` is stored (a deleted video's source is not)."""
        if not self.remote:
            return (self.folder / name).is_file()
        return self.storage.exists(self.key(name))

    def close(self) -> None:
        """Removes the scratch folder (nothing, with a local store)."""
        if self.remote:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def clean_scratch(scratch: Path) -> list[Path]:
    """Removes scratch folders that processes no longer running left (a worker killed
    mid-job); returns them. Folders of live processes, on this machine, are kept."""
    removed = []
    for folder in scratch.glob("*-*") if scratch.is_dir() else ():
        pid = folder.name.partition("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # alive (or not ours to signal, so alive)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
