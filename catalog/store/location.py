"""Where a catalog lives: a local (or mounted) folder, or an S3 prefix (`s3://bucket/prefix`).

Everything that reads or writes a catalog goes through a :class:`CatalogLocation`: object paths are
relative to the catalog root ("images.parquet", "shards/D/x-0a1b2c3d4e5f.zarr"), whatever the backend.
The S3 backend is s3fs; its endpoint, region and credentials come from the standard AWS environment
variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_PROFILE)
and config files (~/.aws/config, ~/.aws/credentials), read by botocore.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

SUPPORTED = "a local folder or an s3://bucket/prefix URL"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
# Local files are written under this prefix and renamed into place; catalog.writer removes leftovers of a
# writer killed before its rename.
TMP_PREFIX = ".tmp-"
# Fail in seconds, not minutes, when the endpoint is unreachable: botocore's defaults retry a dead
# endpoint with a 60 s connect timeout.
_CONNECT_TIMEOUT_S = 3
_READ_TIMEOUT_S = 60
_MAX_ATTEMPTS = 2
# The access check before a command: an endpoint that accepts connections but never answers would
# otherwise hold it for s3fs's 5 retries x 2 attempts x the 60 s read timeout.
_PROBE_READ_TIMEOUT_S = 5


class CatalogLocationError(ValueError):
    """The location cannot be used: unreachable endpoint, refused credentials, missing bucket."""


class CatalogLocation:
    """A catalog root: a local folder or an S3 prefix.

    >>> CatalogLocation.parse("catalog").is_local
    True
    >>> CatalogLocation.parse("s3://bucket/run1").url
    's3://bucket/run1'

    A location pickles as its URL (for Dask and data-loader workers); the receiving process uses its own
    file system, so no event loop or connection crosses a fork or a pickle.
    """

    def __init__(self, url: str, local_path: Path | None):
        self.url = url
        self.local_path = local_path
        self._fs: fsspec.AbstractFileSystem | None = None

    @classmethod
    def parse(cls, location: str | Path | CatalogLocation) -> CatalogLocation:
        """`location` as a catalog root; any scheme other than s3:// is a ValueError naming the supported ones."""
        if isinstance(location, CatalogLocation):
            return location
        text = str(location)
        match = _URL.match(text)
        if not match:
            return cls(text, Path(text))
        scheme, rest = match.groups()
        if scheme != "s3":
            raise ValueError(
                f"catalog location {text!r} is a URL with scheme {scheme}://, which is not supported; "
                f"a catalog location is {SUPPORTED}"
            )
        rest = rest.strip("/")
        if not rest or not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/|$)", rest):
            raise ValueError(f"catalog location {text!r} names no valid bucket; a catalog location is {SUPPORTED}")
        return cls(f"s3://{rest}", None)

    def __reduce__(self):
        return (CatalogLocation.parse, (self.url,))

    def __repr__(self) -> str:
        return f"CatalogLocation({self.url!r})"

    def __str__(self) -> str:
        return self.url

    @property
    def is_local(self) -> bool:
        return self.local_path is not None

    @property
    def absolute(self) -> str:
        """The location as a run parameter: a local folder made absolute, an s3:// URL as it is."""
        return str(self.local_path.resolve()) if self.is_local else self.url

    @property
    def name(self) -> str:
        """The last path element (the catalog's name in reports)."""
        return self.local_path.name if self.is_local else self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        if self.is_local:
            if self._fs is None:
                self._fs = fsspec.filesystem("file")
            return self._fs
        return _s3_filesystem(asynchronous=False)

    def path(self, relative: str = "") -> str:
        """The file system path of `relative` (a local path, or "bucket/prefix/relative" for s3fs)."""
        base = str(self.local_path) if self.is_local else self.url[len("s3://"):]
        return f"{base}/{relative}" if relative else base

    def url_of(self, relative: str) -> str:
        return f"{self.url.rstrip('/')}/{relative}"

    def exists(self, relative: str) -> bool:
        return self.fs.exists(self.path(relative))

    def read_bytes(self, relative: str) -> bytes:
        return self.fs.cat_file(self.path(relative))

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write one small object in one step: a single PUT on S3, temporary file + rename locally."""
        if self.is_local:
            target = self.local_path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.parent / f"{TMP_PREFIX}{target.name}-{uuid.uuid4().hex[:8]}"
            tmp.write_bytes(data)
            os.replace(tmp, target)
        else:
            self.fs.pipe_file(self.path(relative), data)

    def create_bytes(self, relative: str, data: bytes) -> None:
        """Write `relative` only if no object of that name exists (S3: a conditional PUT, If-None-Match: *).

        Raises FileExistsError when it exists.
        """
        if self.is_local:
            target = self.local_path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "xb") as handle:
                handle.write(data)
        else:
            self.fs.pipe_file(self.path(relative), data, mode="create")

    def remove(self, relative: str) -> None:
        try:
            self.fs.rm_file(self.path(relative))
        except FileNotFoundError:
            pass

    def remove_prefix(self, relative: str) -> None:
        """Remove everything under `relative` (a folder, or every object of an S3 prefix)."""
        if self.is_local:
            target = self.local_path / relative
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
        elif self.fs.exists(self.path(relative)):
            self.fs.rm(self.path(relative), recursive=True)

    def list(self, relative: str) -> list[str]:
        """Names of the entries directly under `relative` ([] when there are none)."""
        if self.is_local:
            folder = self.local_path / relative
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        try:
            entries = self.fs.ls(self.path(relative), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)

    def size_under(self, relative: str) -> int:
        """Bytes of all files/objects under `relative`."""
        return int(self.fs.du(self.path(relative), total=True)) if self.fs.exists(self.path(relative)) else 0

    def read_parquet(self, relative: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path(relative), columns=columns, filesystem=self.fs)

    def parquet_rows(self, relative: str) -> int:
        return pq.read_metadata(self.path(relative), filesystem=self.fs).num_rows

    def write_parquet(self, table: pa.Table, relative: str) -> None:
        """Write a Parquet file in one step (`write_bytes`: temporary file + rename locally; one PUT on S3)."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        self.write_bytes(relative, sink.getvalue().to_pybytes())

    def zarr_store(self, relative: str, read_only: bool = False):
        """A zarr v3 store for the group at `relative` (LocalStore, or FsspecStore over S3)."""
        from zarr.storage import FsspecStore, LocalStore

        if self.is_local:
            return LocalStore(str(self.local_path / relative), read_only=read_only)
        return FsspecStore(_s3_filesystem(asynchronous=True), path=self.path(relative), read_only=read_only)

    @contextmanager
    def local_output(self, relative: str) -> Iterator[Path]:
        """A local folder to write files into, that become `relative` in the catalog: the folder itself for
        a local catalog; a temporary folder uploaded on exit for S3."""
        if self.is_local:
            folder = self.local_path / relative
            folder.mkdir(parents=True, exist_ok=True)
            yield folder
            return
        with tempfile.TemporaryDirectory(prefix="sammed3d-upload-") as tmp:
            yield Path(tmp)
            for file in sorted(Path(tmp).rglob("*")):
                if file.is_file():
                    self.fs.put_file(str(file), self.path(f"{relative}/{file.relative_to(tmp).as_posix()}"))

    def output_reference(self, relative: str, written: Path) -> Path | str:
        """Where a file written into `local_output(relative)` ends up: its path locally, its URL on S3."""
        return written if self.is_local else self.url_of(f"{relative}/{written.name}")

    def check_access(self, for_writing: bool) -> None:
        """Fail early, with the location and the cause, when the catalog cannot be used.

        Local: the folder (or its parent, when writing) must be a folder. S3: the endpoint must answer,
        the credentials be accepted and the bucket exist (one HEAD of the bucket). Writes nothing.
        """
        if self.is_local:
            if self.local_path.exists() and not self.local_path.is_dir():
                raise CatalogLocationError(f"catalog location {self.url} is a file, not a folder")
            return
        from botocore.exceptions import BotoCoreError, ClientError

        bucket = self.path().split("/", 1)[0]
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        # s3fs turns S3's answers into OSErrors (404 -> FileNotFoundError, 403 -> PermissionError).
        try:
            _s3_filesystem(asynchronous=False, probe=True).call_s3("head_bucket", Bucket=bucket)
        except FileNotFoundError:
            raise CatalogLocationError(_client_error_text(self.url, bucket, endpoint, "404", None)) from None
        except PermissionError as error:
            raise CatalogLocationError(_client_error_text(self.url, bucket, endpoint, "403", error)) from None
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            raise CatalogLocationError(_client_error_text(self.url, bucket, endpoint, code, error)) from None
        except (BotoCoreError, OSError) as error:
            cause = _translate_boto(error)
            raise CatalogLocationError(f"catalog location {self.url}: {cause} (endpoint {endpoint})") from None


def _client_error_text(url: str, bucket: str, endpoint: str, code: str, error: Exception | None) -> str:
    if code in ("404", "NoSuchBucket", "NotFound"):
        return f"catalog location {url}: bucket {bucket!r} does not exist at {endpoint}; create it first"
    if code in ("403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden"):
        return (
            f"catalog location {url}: the credentials were refused by {endpoint} for bucket {bucket!r} ({code}); "
            "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        )
    return f"catalog location {url}: {endpoint} answered {code}: {error}"


def _translate_boto(error: Exception) -> str:
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return "the S3 endpoint cannot be reached"
    if isinstance(error, ReadTimeoutError):
        return f"the S3 endpoint accepted the connection but did not answer within {_PROBE_READ_TIMEOUT_S} s"
    if isinstance(error, NoCredentialsError):
        return "no S3 credentials found (set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE)"
    return f"{type(error).__name__}: {error}"


# Environment that decides which server and identity an S3 file system talks to.
_AWS_SETTINGS = (
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
)
_FILESYSTEMS: dict[tuple, fsspec.AbstractFileSystem] = {}


def _s3_filesystem(asynchronous: bool, probe: bool = False):
    """The s3fs file system for the AWS settings of the environment as it is now.

    One per process, setting and mode, kept here rather than in fsspec's instance cache (whose key ignores
    the environment): a changed endpoint or key gets a new one, and a forked or spawned process (a data
    loader worker, a Dask worker) makes its own instead of using its parent's event loop and connections.
    `probe`: one attempt with a short read timeout, for the access check.
    """
    import s3fs

    key = (os.getpid(), asynchronous, probe, tuple(os.environ.get(name) for name in _AWS_SETTINGS))
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = s3fs.S3FileSystem(
            skip_instance_cache=True,
            asynchronous=asynchronous,
            config_kwargs={
                "connect_timeout": _CONNECT_TIMEOUT_S,
                "read_timeout": _PROBE_READ_TIMEOUT_S if probe else _READ_TIMEOUT_S,
                "retries": {"max_attempts": 1 if probe else _MAX_ATTEMPTS, "mode": "standard"},
            },
        )
        if probe:
            _FILESYSTEMS[key].retries = 1  # s3fs's own retry loop (a class setting, 5 by default)
    return _FILESYSTEMS[key]
