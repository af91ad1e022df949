"""The whole pipeline on one machine: stand-ins for the cloud plus the four services.

``ragrun up`` runs a :class:`LocalStack` in the foreground; the integration
tests start the very same stack from a pytest fixture. Every child process is
ours, started on a free port, and stopped in reverse order on exit.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragrun_cli.components import (
    FakeGcs,
    Postgres,
    PubSubEmulator,
    free_port,
    http_ok,
    stop_process,
    wait_until,
)
from ragrun_cli.provision import provision
from ragrun_common.db import migrate_url
from ragrun_common.settings import CommonSettings

log = logging.getLogger("ragrun.stack")

SERVICES = ("chunker", "embedder", "writer", "query")
STATE_FILE = "stack.json"


def default_home() -> Path:
    return Path(os.environ.get("RAGRUN_HOME", ".ragrun")).resolve()


def load_state(home: Path | None = None) -> dict[str, str]:
    """The environment a running ``ragrun up`` published, or {} if none runs."""
    path = (home or default_home()) / STATE_FILE
    if not path.exists():
        return {}
    data: dict[str, str] = json.loads(path.read_text())
    return data


@dataclass
class StackConfig:
    home: Path
    project: str = "ragrun-local"
    bucket: str = "ragrun-docs"
    embeddings: str = "local"
    database_url: str | None = None
    query_port: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)
    services: tuple[str, ...] = SERVICES


@dataclass
class LocalStack:
    config: StackConfig
    pubsub: PubSubEmulator | None = None
    gcs: FakeGcs | None = None
    postgres: Postgres | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _env: dict[str, str] = field(default_factory=dict)

    @property
    def log_dir(self) -> Path:
        return self.config.home / "logs"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['query']}"

    def env(self) -> dict[str, str]:
        """Variables that point a ragrun process or client at this stack."""
        return dict(self._env)

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        cfg = self.config
        self.log_dir.mkdir(parents=True, exist_ok=True)
        settings_env = {
            "GOOGLE_CLOUD_PROJECT": cfg.project,
            "RAGRUN_BUCKET": cfg.bucket,
            "RAGRUN_EMBEDDINGS": cfg.embeddings,
            **cfg.extra_env,
        }
        self.pubsub = PubSubEmulator(self.log_dir)
        self.pubsub.start()
        objects_topic = CommonSettings.model_validate(settings_env).objects_topic
        self.gcs = FakeGcs(self.log_dir, cfg.project, objects_topic, self.pubsub.host)
        self.gcs.start()
        database_url = cfg.database_url
        if database_url is None:
            self.postgres = Postgres(data_dir=_postgres_dir(cfg.home), log_dir=self.log_dir)
            self.postgres.start()
            database_url = self.postgres.url
        self._env = {
            **settings_env,
            "PUBSUB_EMULATOR_HOST": self.pubsub.host,
            "STORAGE_EMULATOR_HOST": self.gcs.url,
            "DATABASE_URL": database_url,
            "HF_HUB_OFFLINE": "1",
        }
        self.ports = {"chunker": free_port(), "query": cfg.query_port or free_port()}
        self._env["RAGRUN_QUERY_URL"] = self.query_url
        with _environ(self._env):
            settings = CommonSettings()
            provision(settings, chunker_endpoint=f"http://127.0.0.1:{self.ports['chunker']}/")
            migrate_url(database_url, settings.embedding.dim)
        for name in cfg.services:
            self.start_service(name)
        for name in ("query", "chunker"):
            if name in cfg.services:
                self.wait_ready(name)
        (cfg.home / STATE_FILE).write_text(json.dumps(self._env, indent=2))

    def wait_ready(self, name: str) -> None:
        """Wait until a service that answers (query: /readyz, chunker: its port) does."""
        if name == "query":
            wait_until(
                http_ok(f"{self.query_url}/readyz"),
                timeout_s=180,
                what="query service",
                proc=self.procs["query"],
            )
        elif name == "chunker":
            wait_until(
                _port_open(self.ports["chunker"]),
                timeout_s=60,
                what="chunker",
                proc=self.procs["chunker"],
            )

    def service_command(self, name: str) -> list[str]:
        if name == "chunker":
            spec = importlib.util.find_spec("ragrun_chunker.main")
            if spec is None or spec.origin is None:
                raise RuntimeError("ragrun-chunker is not installed")
            return [
                sys.executable, "-m", "functions_framework",
                "--target", "on_object_event",
                "--source", spec.origin,
                "--signature-type", "cloudevent",
                "--host", "127.0.0.1",
                "--port", str(self.ports["chunker"]),
            ]  # fmt: skip
        return [sys.executable, "-m", f"ragrun_{name}"]

    def start_service(self, name: str, extra_env: dict[str, str] | None = None) -> None:
        """Start (or restart) one service as a child process."""
        stop_process(self.procs.get(name))
        env = {**os.environ, **self._env, **(extra_env or {})}
        if name == "query":
            env.update({"PORT": str(self.ports["query"]), "RAGRUN_QUERY_HOST": "127.0.0.1"})
        log_file = (self.log_dir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            self.service_command(name),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def failed_services(self) -> dict[str, int]:
        return {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            stop_process(self.procs[name], timeout_s=15)
        self.procs.clear()
        for component in (self.gcs, self.pubsub, self.postgres):
            if component is not None:
                component.stop()
        with contextlib.suppress(FileNotFoundError):
            (self.config.home / STATE_FILE).unlink()


@contextlib.contextmanager
def temporary_stack(
    prefix: str, factory: Callable[[StackConfig], LocalStack] = LocalStack, **config: Any
) -> Iterator[LocalStack]:
    """A whole stack in a throwaway home, for tests and benchmarks.

    ``os.environ`` points at the stack while the block runs. If the block
    fails, the end of each exited service's log is printed before the logs are
    removed. Afterwards everything is stopped and deleted (the logs stay when
    ``RAGRUN_KEEP_LOGS`` is set).
    """
    home = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(home, 0o755)
    local = factory(StackConfig(home=home, **config))
    saved = dict(os.environ)
    local.start()
    os.environ.update(local.env())
    try:
        yield local
    except BaseException:
        for name in local.failed_services():
            lines = (local.log_dir / f"{name}.log").read_text(errors="replace").splitlines()
            print(f"  {name} exited; its log ends:", *lines[-15:], sep="\n    ")
        raise
    finally:
        local.stop()
        os.environ.clear()
        os.environ.update(saved)
        if local.postgres is not None:
            shutil.rmtree(local.postgres.data_dir, ignore_errors=True)
        if not os.environ.get("RAGRUN_KEEP_LOGS"):
            shutil.rmtree(home, ignore_errors=True)


def _postgres_dir(home: Path) -> Path:
    """Where the embedded server keeps its data (somewhere the 'nobody' user can reach)."""
    if os.geteuid() != 0:
        return home / "postgres"
    key = hashlib.sha256(str(home).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"ragrun-postgres-{key}"


def _port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    return check


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
