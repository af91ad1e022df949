"""What the CLI commands do, apart from argument parsing."""

from __future__ import annotations

import json
import mimetypes
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import psycopg
import requests

from ragrun_common.gcs import storage_client
from ragrun_common.settings import CommonSettings


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def _files(paths: list[Path]) -> list[tuple[Path, str]]:
    """(file, object name) for each file, folders expanded (names relative to the folder)."""
    out: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            out += [
                (f, f.relative_to(path).as_posix())
                for f in sorted(path.rglob("*"))
                if f.is_file() and not any(part.startswith(".") for part in f.parts)
            ]
        elif path.is_file():
            out.append((path, path.name))
        else:
            raise CliError(f"{path}: no such file or folder")
    return out


def put(paths: list[Path], prefix: str) -> int:
    """Upload files and folders into the configured bucket; return how many."""
    settings = CommonSettings()
    bucket = storage_client(settings.project).bucket(settings.bucket)
    files = _files(paths)
    for path, name in files:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        bucket.blob(prefix + name).upload_from_filename(str(path), content_type=content_type)
    return len(files)


@dataclass(frozen=True, slots=True)
class StatusRow:
    document: str
    state: str
    chunks_written: int
    chunks_expected: int
    generation: int | None
    error: str | None


_STATUS_SQL = """
SELECT bucket, name, state, chunks_written, chunks_expected, generation, error
FROM ragrun.documents WHERE state <> 'deleted' ORDER BY bucket, name
"""


def status() -> list[StatusRow]:
    """Every document in the index, plus objects in the bucket it has not seen (queued)."""
    settings = CommonSettings()
    try:
        with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
            records = conn.execute(_STATUS_SQL).fetchall()
    except psycopg.errors.UndefinedTable:
        records = []
    except psycopg.OperationalError as e:
        raise CliError(f"cannot reach the database: {e}") from e
    rows = {
        f"gs://{b}/{n}": StatusRow(f"gs://{b}/{n}", s, w, x, g, err)
        for b, n, s, w, x, g, err in records
    }
    client = storage_client(settings.project)
    for blob in client.list_blobs(settings.bucket):
        uri = f"gs://{settings.bucket}/{blob.name}"
        known = rows.get(uri)
        if known is None or (known.generation or 0) < int(blob.generation or 0):
            rows[uri] = StatusRow(uri, "queued", 0, 0, blob.generation, None)
    return [rows[key] for key in sorted(rows)]


def print_status(out: TextIO, as_json: bool = False) -> list[StatusRow]:
    rows = status()
    if as_json:
        out.write(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        return rows
    width = max([len(r.document) for r in rows] + [8])
    out.write(f"{'DOCUMENT':<{width}}  {'STATE':<9}  {'CHUNKS':>11}  ERROR\n")
    for r in rows:
        chunks = f"{r.chunks_written}/{r.chunks_expected}"
        out.write(f"{r.document:<{width}}  {r.state:<9}  {chunks:>11}  {r.error or ''}\n")
    done = sum(r.state == "indexed" for r in rows)
    failed = sum(r.state == "failed" for r in rows)
    out.write(f"{len(rows)} document(s): {done} indexed, {failed} failed\n")
    out.flush()
    return rows


def wait_indexed(timeout_s: float, should_stop: Callable[[], bool] = lambda: False) -> bool:
    """Wait until every object is indexed or failed; True if all got there in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not should_stop():
        rows = status()
        if rows and all(r.state in ("indexed", "failed") for r in rows):
            return True
        time.sleep(0.5)
    return False


def query(text: str, k: int) -> dict[str, Any]:
    url = os.environ.get("RAGRUN_QUERY_URL")
    if not url:
        raise CliError("RAGRUN_QUERY_URL is not set and no `ragrun up` is running here")
    try:
        response = requests.post(f"{url}/v1/query", json={"query": text, "k": k}, timeout=60)
    except requests.RequestException as e:
        raise CliError(f"cannot reach the query service at {url}: {e}") from e
    body: dict[str, Any] = response.json()
    if response.status_code != 200:
        raise CliError(f"{response.status_code}: {json.dumps(body.get('error', body))}")
    return body
