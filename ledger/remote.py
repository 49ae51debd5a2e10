"""Remote object stores for backups, through fsspec: URL parsing, streaming put and streaming hashed reads.

A ``Location`` is a backup URL without credentials (``file://``, ``s3://``, ``gs://``, ``memory://``); it is
what blocks record. Credentials and endpoints come from ``RemoteOptions`` (built by the CLI from the
environment and ``ledger.toml``) and from each SDK's own credential chain; they never enter a block.
Every store failure becomes a ``RemoteStoreError`` naming the setting that fixes it.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlsplit

from ledger.errors import RemoteCopyError, RemoteStoreError, RemoteURLError
from ledger.hashing import CHUNK_SIZE, FileDigest, HashingWriter

SCHEMES = ("file", "s3", "gs", "memory")
_ALIASES = {"gcs": "gs"}

URL_SETTING = "--to/--from, LEDGER_BACKUP_URL or [backup] url in ledger.toml"
S3_CREDENTIALS = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
S3_ENDPOINT = "LEDGER_S3_ENDPOINT_URL or [backup] s3_endpoint_url in ledger.toml"
GCS_CREDENTIALS = "LEDGER_GCS_TOKEN (service-account JSON file or 'google_default') or GOOGLE_APPLICATION_CREDENTIALS"

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Location:
    """Where backups live: a scheme and an fsspec root path; ``url`` is what the chain records."""

    scheme: str
    root: str

    @property
    def url(self) -> str:
        """The canonical URL (no credentials, no trailing slash)."""
        if self.scheme == "file":
            return f"file://{self.root}"
        return f"{self.scheme}://{self.root.lstrip('/')}"

    def path(self, relative: str) -> str:
        """The store path of an object below the root."""
        return posixpath.join(self.root, relative)

    def url_of(self, relative: str) -> str:
        """The URL of an object below the root (recorded as ``remote`` in backup blocks)."""
        return posixpath.join(self.url, relative)

    def __str__(self) -> str:
        return self.url


def parse_location(url: str, *, setting: str = URL_SETTING) -> Location:
    """Parse a backup URL; refuse unknown schemes and embedded credentials, naming ``setting``."""
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise RemoteURLError(f"backup URL {text!r} is not a URL ({setting}): {exc}") from None
    scheme = _ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
    if scheme not in SCHEMES:
        shown = f"{parts.scheme}://" if parts.scheme else "no scheme"
        raise RemoteURLError(
            f"backup URL {text!r} has {shown}; supported: file://, s3://, gs://, memory:// (set {setting})"
        )
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise RemoteURLError(
            f"backup URL for {scheme}:// must not carry credentials ({setting}); "
            "use the store's credential settings instead, so they never reach the ledger"
        )
    if parts.query or parts.fragment:
        raise RemoteURLError(f"backup URL {text!r} must not have a query or fragment ({setting})")
    path = parts.path.rstrip("/")
    if any(part in (".", "..") for part in path.split("/")):
        raise RemoteURLError(f"backup URL {text!r} must not contain '.' or '..' components ({setting})")
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise RemoteURLError(f"file:// backup URL {text!r} needs an absolute path, e.g. file:///srv/backup")
        return Location("file", path)
    if scheme == "memory":
        root = "/" + "/".join(p for p in (parts.netloc, path.strip("/")) if p)
        return Location("memory", root.rstrip("/") or "/")
    if not parts.netloc:
        raise RemoteURLError(f"{scheme}:// backup URL {text!r} names no bucket ({setting})")
    return Location(scheme, parts.netloc + path)


@dataclass(frozen=True, slots=True)
class RemoteOptions:
    """How to reach the stores: endpoints, credentials sources and retry counts (never recorded)."""

    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    gcs_token: str | None = None
    gcs_project: str | None = None
    retries: int = 5
    part_size: int = 64 << 20
    concurrency: int = 8


class RemoteStore:
    """One backup location opened through fsspec; methods translate store errors into ledger errors."""

    def __init__(self, location: Location, fs: Any, options: RemoteOptions) -> None:
        self.location = location
        self.fs = fs
        self.options = options

    # --- writing --------------------------------------------------------------------------------

    def put(self, local: Path, relative: str, *, progress: Progress | None = None) -> None:
        """Upload one local file, streaming it (multipart on S3) without reading it whole into memory."""
        path = self.location.path(relative)
        with self._translating("upload", relative):
            if self.location.scheme in ("file", "memory"):
                self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            try:
                self._put_file(local, path, progress)
            except FileNotFoundError:
                if not local.is_file():
                    raise
                raise RemoteStoreError(
                    f"cannot upload {self.location.url_of(relative)}: the bucket or directory does not exist"
                ) from None
            self._forget(path)

    def _put_file(self, local: Path, path: str, progress: Progress | None) -> None:
        self.fs.put_file(os.fspath(local), path, callback=_callback(progress))

    def remove(self, relative: str) -> None:
        """Delete one object (used by tests and by nothing that the chain depends on)."""
        with self._translating("delete", relative):
            self.fs.rm_file(self.location.path(relative))
            self._forget(self.location.path(relative))

    # --- reading --------------------------------------------------------------------------------

    def size(self, relative: str) -> int | None:
        """Size of an object, or None when it does not exist."""
        path = self.location.path(relative)
        self._forget(path)
        with self._translating("inspect", relative):
            try:
                info = self.fs.info(path)
            except FileNotFoundError:
                return None
        if info.get("type") == "directory":
            return None
        return int(info["size"])

    def digest(self, relative: str, *, progress: Progress | None = None) -> FileDigest:
        """Re-read an object and compute its SHA-256 and BLAKE3 (streamed; hashing overlaps the download)."""
        with HashingWriter(cast(IO[bytes], _Discard())) as writer:
            self.read_into(relative, writer.write, progress=progress)
            return writer.finish()

    def read_into(self, relative: str, sink: Callable[[bytes], object], *, progress: Progress | None = None) -> None:
        """Stream an object's bytes into ``sink`` chunk by chunk; a missing object is a ``RemoteCopyError``."""
        path = self.location.path(relative)
        with self._translating("download", relative):
            try:
                self._stream(path, sink, progress)
            except FileNotFoundError:
                raise RemoteCopyError(f"{self.location.url_of(relative)} does not exist") from None

    def _stream(self, path: str, sink: Callable[[bytes], object], progress: Progress | None) -> None:
        with self.fs.open(path, "rb", block_size=CHUNK_SIZE, cache_type="none") as stream:
            while chunk := stream.read(CHUNK_SIZE):
                sink(chunk)
                if progress is not None:
                    progress(len(chunk))

    # --- errors ---------------------------------------------------------------------------------

    def _forget(self, path: str) -> None:
        invalidate = getattr(self.fs, "invalidate_cache", None)
        if invalidate is not None:
            invalidate(path)

    @contextlib.contextmanager
    def _translating(self, action: str, relative: str) -> Iterator[None]:
        where = self.location.url_of(relative)
        try:
            yield
        except (RemoteCopyError, FileNotFoundError):
            raise
        except PermissionError as exc:
            raise RemoteStoreError(f"cannot {action} {where}: access denied ({self._credentials()}): {exc}") from None
        except _store_errors(self.location.scheme) as exc:
            raise RemoteStoreError(f"cannot {action} {where}: {self._explain(exc)}") from None

    def _credentials(self) -> str:
        return {"s3": S3_CREDENTIALS, "gs": GCS_CREDENTIALS}.get(self.location.scheme, "file permissions")

    def _explain(self, exc: BaseException) -> str:
        name = type(exc).__name__
        text = " ".join(str(exc).split()) or name
        if self.location.scheme == "s3" and ("NoCredentials" in name or "credentials" in text.lower()):
            return f"no credentials: set {S3_CREDENTIALS}"
        if self.location.scheme == "s3" and _is_connection_error(exc):
            endpoint = self.options.s3_endpoint_url or "the default AWS endpoint"
            return f"cannot reach {endpoint} ({S3_ENDPOINT}): {text}"
        return f"{text} ({name})"


class S3Store(RemoteStore):
    """S3 (and S3-compatible servers): tuned multipart uploads and one streaming GET per verification."""

    def _put_file(self, local: Path, path: str, progress: Progress | None) -> None:
        self.fs.put_file(
            os.fspath(local),
            path,
            callback=_callback(progress),
            chunksize=self.options.part_size,
            max_concurrency=self.options.concurrency,
        )

    def _stream(self, path: str, sink: Callable[[bytes], object], progress: Progress | None) -> None:
        # One GET streamed in chunks: ranged reads would cost a request per block (and some servers copy
        # the whole object for every range).
        from fsspec.asyn import sync

        bucket, key, _version = self.fs.split_path(path)

        async def run() -> None:
            response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            body = response["Body"]
            try:
                while chunk := await body.read(CHUNK_SIZE):
                    sink(chunk)
                    if progress is not None:
                        progress(len(chunk))
            finally:
                body.close()

        sync(self.fs.loop, run)


def open_store(location: Location, options: RemoteOptions) -> RemoteStore:
    """Open the fsspec file system for ``location``; missing credentials are refused here, naming the setting."""
    if location.scheme == "s3":
        import s3fs

        client_kwargs: dict[str, Any] = {}
        if options.s3_endpoint_url:
            client_kwargs["endpoint_url"] = options.s3_endpoint_url
        if options.s3_region:
            client_kwargs["region_name"] = options.s3_region
        fs = s3fs.S3FileSystem(
            client_kwargs=client_kwargs,
            config_kwargs={"retries": {"max_attempts": max(1, options.retries)}, "connect_timeout": 10},
            skip_instance_cache=True,
            use_listings_cache=False,
        )
        fs.retries = max(1, options.retries)
        return S3Store(location, fs, options)
    if location.scheme == "gs":
        return RemoteStore(location, _gcs(options), options)
    import fsspec

    fs = fsspec.filesystem(location.scheme, skip_instance_cache=location.scheme != "memory")
    return RemoteStore(location, fs, options)


def _gcs(options: RemoteOptions) -> Any:
    token = options.gcs_token
    if not token:
        raise RemoteStoreError(f"no credentials for gs://: set {GCS_CREDENTIALS}")
    if token not in ("google_default", "cloud", "anon") and not Path(token).is_file():
        raise RemoteStoreError(f"GCS credentials file {token!r} does not exist (LEDGER_GCS_TOKEN)")
    import gcsfs
    from google.auth.exceptions import GoogleAuthError

    try:
        return gcsfs.GCSFileSystem(project=options.gcs_project, token=token, skip_instance_cache=True)
    except (GoogleAuthError, KeyError, ValueError, OSError) as exc:
        raise RemoteStoreError(f"GCS credentials {token!r} are not usable (LEDGER_GCS_TOKEN): {exc}") from None


def _callback(progress: Progress | None) -> Any:
    from fsspec.callbacks import Callback, NoOpCallback

    if progress is None:
        return NoOpCallback()
    report: Progress = progress

    class _Relay(Callback):  # type: ignore[misc]
        def relative_update(self, inc: int = 1) -> None:
            report(inc)

        def absolute_update(self, value: int) -> None:
            step = value - int(getattr(self, "value", 0))
            self.value = value
            if step > 0:
                report(step)

    return _Relay()


class _Discard:
    """A raw sink for ``HashingWriter`` that keeps nothing (hash-only reads)."""

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return len(data)

    def flush(self) -> None:
        return None


def _store_errors(scheme: str) -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]
    if scheme in ("s3", "gs"):
        import aiohttp

        errors.append(aiohttp.ClientError)
    if scheme == "s3":
        from botocore.exceptions import BotoCoreError, ClientError

        errors.extend([BotoCoreError, ClientError])
    if scheme == "gs":
        from gcsfs.retry import HttpError
        from google.auth.exceptions import GoogleAuthError

        errors.extend([HttpError, GoogleAuthError])
    return tuple(errors)


def _is_connection_error(exc: BaseException) -> bool:
    import aiohttp
    from botocore.exceptions import ConnectionError as BotoConnectionError

    return isinstance(exc, BotoConnectionError | aiohttp.ClientConnectionError | ConnectionError | TimeoutError)
