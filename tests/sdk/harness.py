"""Starting and stopping sluice for the SDK suite: the binary, its store and its process.

`fresh_store(backend)` gives an empty metadata store (a new PostgreSQL database, or nothing for
SQLite, whose store lives in the data directory) and `running_server(...)` a started server on
it that is stopped on exit. conftest.py builds the session's servers from these; tests that
need their own server (restarts) use them directly.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

STARTUP_TIMEOUT_S = 90.0
SHUTDOWN_TIMEOUT_S = 15.0


def sluice_binary() -> Path:
    if explicit := os.environ.get("SLUICE_BIN"):
        return Path(explicit)
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache" / "sluice-target")
    return Path(target) / "debug" / "sluice"


@dataclass
class Server:
    """A running `sluice serve` and what a test needs to talk to it."""

    backend: str
    base_url: str
    api_key: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    def admin(self, *args: str) -> str:
        """Runs `sluice admin ARGS` against the same store and returns its stdout, stripped."""
        result = subprocess.run(
            [str(sluice_binary()), "admin", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"`sluice admin {' '.join(args)}` exited with {result.returncode}:\n"
                f"{result.stderr}{result.stdout}"
            )
        return result.stdout.strip()

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3_blob_env() -> dict[str, str]:
    """Settings that put the server's blobs in a fresh bucket of the S3 emulator that
    scripts/services.sh runs (SLUICE_TEST_S3_ENDPOINT)."""
    endpoint = os.environ["SLUICE_TEST_S3_ENDPOINT"]
    bucket = f"sluice-sdk-{secrets.token_hex(6)}"
    # The emulator does not check signatures, so an unsigned request creates the bucket.
    response = requests.put(f"{endpoint}/{bucket}", timeout=30)
    response.raise_for_status()
    return {
        "SLUICE_STORAGE_URL": f"s3://{bucket}/sdk",
        "AWS_ACCESS_KEY_ID": "sluice-test",
        "AWS_SECRET_ACCESS_KEY": "sluice-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }


def server_env(data_dir: Path, port: int, api_key: str, database_url: str | None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SLUICE_") and k != "DATABASE_URL"
    }
    env.update(
        SLUICE_LISTEN=f"127.0.0.1:{port}",
        SLUICE_DATA_DIR=str(data_dir),
        SLUICE_BOOTSTRAP_API_KEY=api_key,
        SLUICE_LOG=os.environ.get("SLUICE_TEST_LOG", "info"),
        RUST_BACKTRACE="1",
        NO_COLOR="1",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    return env


def wait_until_healthy(process: subprocess.Popen, base_url: str, log_path: Path) -> None:
    """Polls /v1/health until it answers 200; fails early if the process exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"sluice exited with code {process.returncode} before it was healthy:\n"
                f"{log_path.read_text(errors='replace')}"
            )
        try:
            response = requests.get(f"{base_url}/v1/health", timeout=2)
            if response.status_code == 200:
                return
            last_error = f"HTTP {response.status_code}: {response.text[:200]}"
        except requests.ConnectionError as exc:
            last_error = str(exc)
        time.sleep(0.05)
    raise RuntimeError(
        f"sluice was not healthy within {STARTUP_TIMEOUT_S:.0f} s ({last_error}):\n"
        f"{log_path.read_text(errors='replace')}"
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=SHUTDOWN_TIMEOUT_S)


def new_api_key() -> str:
    return "sk_" + secrets.token_hex(24)


def start_server(
    backend: str,
    workdir: Path,
    database_url: str | None,
    api_key: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Server:
    """Starts `sluice serve` on a store in `workdir` (and `database_url`, for PostgreSQL),
    with `extra_env` added to its settings."""
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    log_path = workdir / "sluice.log"
    api_key = api_key or new_api_key()
    blob_env = s3_blob_env() if backend == "s3" else {}

    # A port picked by binding to port 0 can be taken before sluice binds it; try a few.
    for _attempt in range(3):
        port = free_port()
        env = server_env(data_dir, port, api_key, database_url)
        if backend == "s3":
            env.update(blob_env)
        env.update(extra_env or {})
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(sluice_binary()), "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(process, base_url, log_path)
        except RuntimeError:
            stop(process)
            if "address already in use" in log_path.read_text(errors="replace").lower():
                continue
            raise
        return Server(backend, base_url, api_key, env, log_path, process)
    raise RuntimeError(f"sluice could not bind a free port:\n{log_path.read_text()}")


@dataclass
class PgAdmin:
    """createdb/dropdb as the role in SLUICE_TEST_POSTGRES_URL, over TCP."""

    url: str

    def _run(self, program: str, *args: str) -> None:
        parts = urlsplit(self.url)
        env = dict(os.environ, PGPASSWORD=parts.password or "", PGCONNECT_TIMEOUT="10")
        command = [
            program,
            "--host", parts.hostname or "127.0.0.1",
            "--port", str(parts.port or 5432),
            "--username", parts.username or "sluice",
            *args,
        ]  # fmt: skip
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")

    def create(self, name: str) -> str:
        self._run("createdb", name)
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def drop(self, name: str) -> None:
        self._run("dropdb", "--if-exists", "--force", name)


@contextlib.contextmanager
def fresh_store(backend: str) -> Iterator[str | None]:
    """An empty metadata store: yields the DATABASE_URL for PostgreSQL (a database created
    now and dropped afterwards) and None for SQLite, whose store lives in the data directory."""
    if backend != "postgres":
        yield None
        return
    pg = PgAdmin(os.environ["SLUICE_TEST_POSTGRES_URL"])
    database = f"sluice_test_{secrets.token_hex(6)}"
    database_url = pg.create(database)
    try:
        yield database_url
    finally:
        pg.drop(database)


@contextlib.contextmanager
def running_server(
    backend: str,
    workdir: Path,
    database_url: str | None,
    api_key: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """A started server, stopped on exit; fails if it died while in use."""
    srv = start_server(backend, workdir, database_url, api_key, extra_env)
    try:
        yield srv
        crashed = srv.process.poll()
    finally:
        stop(srv.process)
    if crashed is not None:
        pytest.fail(
            f"sluice ({backend}) exited while in use, with code {crashed}:\n"
            f"{srv.log_path.read_text(errors='replace')[-20000:]}"
        )
