"""Fixtures for the lifecycle tests: a real S3-compatible HTTP server (moto) on 127.0.0.1, a TCP proxy that can
cut connections mid-stream, and credentials in the environment the way an operator would set them."""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Workspace

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server over real HTTP on 127.0.0.1 (one per test process)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def sqlite_ws(tmp_path: Path) -> Workspace:
    """An initialised workspace on SQLite only, for CLI subprocess tests (the library tests cover both backends)."""
    from ledger.api import Ledger
    from ledger.signing import SigningKey, write_key_file

    models, adapters, key = tmp_path / "models", tmp_path / "lora_adapters", tmp_path / "key.pem"
    models.mkdir()
    adapters.mkdir()
    write_key_file(key, SigningKey.generate(), None)
    ws = Workspace(tmp_path, models, adapters, key, f"sqlite:///{tmp_path / 'ledger.db'}")
    Ledger.create(ws.db_url, models_dir=models, key=key, adapters_dir=adapters)
    return ws


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Test credentials in the environment (botocore reads them); no shared config files."""
    empty = tmp_path_factory.mktemp("aws")
    env = {**S3_ENV, "AWS_CONFIG_FILE": str(empty / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(empty / "creds")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def s3_bucket(s3_endpoint: str, s3_env: dict[str, str]) -> str:
    """A fresh bucket on the local server; returns its name."""
    import s3fs

    name = f"ledger-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint}, skip_instance_cache=True)
    fs.mkdir(name)
    return name


class CuttingProxy:
    """A TCP proxy to ``upstream``; after ``cut()`` it stops forwarding once ``budget`` more bytes went up, closes
    every connection and refuses new ones (the server "stops"), until ``heal()``."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Lock()
        self.budget: int | None = None
        self.down = False
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, after: int) -> None:
        with self.lock:
            self.budget = after

    def heal(self) -> None:
        with self.lock:
            self.budget, self.down = None, False

    def close(self) -> None:
        self.listener.close()
        self._drop()

    def _drop(self) -> None:
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self.sockets.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.down:
                    client.close()
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            with self.lock:
                if counted and self.budget is not None:
                    self.budget -= len(data)
                    if self.budget <= 0:
                        self.down = True
                        self._drop()
                        return
                if self.down:
                    return
            try:
                sink.sendall(data)
            except OSError:
                return


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[CuttingProxy]:
    """A cutting proxy in front of the local S3 server."""
    port = int(s3_endpoint.rsplit(":", 1)[1])
    cutter = CuttingProxy(port)
    try:
        yield cutter
    finally:
        cutter.close()
