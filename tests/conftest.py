"""Integration fixtures: the whole local stack, started as ``ragrun up`` starts it."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.cloud import storage

from ragrun_cli.stack import LocalStack, temporary_stack
from ragrun_common.gcs import storage_client

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"


class Stack:
    """A running local stack plus the conveniences tests need."""

    def __init__(self, stack: LocalStack) -> None:
        self.local = stack
        self.env = stack.env()
        self.query_url = stack.query_url

    def bucket(self) -> storage.Bucket:
        return storage_client(self.env["GOOGLE_CLOUD_PROJECT"]).bucket(self.env["RAGRUN_BUCKET"])

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ``ragrun`` command against this stack."""
        done = subprocess.run(
            [sys.executable, "-m", "ragrun_cli.main", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"ragrun {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    def status(self) -> dict[str, dict[str, Any]]:
        rows = json.loads(self.cli("status", "--json").stdout)
        return {row["document"]: row for row in rows}


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@contextlib.contextmanager
def started_stack(**config: Any) -> Iterator[Stack]:
    """A whole local stack for the duration of a ``with`` block (see StackConfig)."""
    with temporary_stack("ragrun-test-stack-", **config) as local:
        yield Stack(local)


@pytest.fixture(scope="session")
def stack(pubsub_emulator_available: None) -> Iterator[Stack]:
    """The four services on the emulators and PostgreSQL, with the real local model."""
    with started_stack(embeddings="local", bucket="e2e-docs") as running:
        yield running
