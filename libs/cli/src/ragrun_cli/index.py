"""``ragrun index``: build, list, activate and drop index versions.

The work is :mod:`ragrun_common.versions`; this module connects it to the
settings, the embedding provider (Vertex AI behind the same budgets as the
embedder) and the terminal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import psycopg
from pgvector.psycopg import register_vector

from ragrun_cli.settings import IndexSettings
from ragrun_common.embeddings.limited import with_budget
from ragrun_common.embeddings.registry import create_provider
from ragrun_common.embeddings.spec import parse_embedding_spec
from ragrun_common.versions import (
    PIPELINE_VERSION,
    FillProgress,
    IndexVersion,
    activate,
    build_index,
    coverage,
    create_version,
    defer_index,
    drop,
    fill,
    get_version,
    list_versions,
)

OnProgress = Callable[[FillProgress, float], None]


def _connect(settings: IndexSettings) -> psycopg.Connection[Any]:
    conn = psycopg.connect(settings.database_url, autocommit=True)
    register_vector(conn)
    return conn


def create(
    settings: IndexSettings, embeddings: str, dim: int | None, on_progress: OnProgress
) -> IndexVersion:
    """A new version for ``embeddings``, filled from the stored chunk text and indexed."""
    spec = parse_embedding_spec(embeddings, dim)
    with _connect(settings) as conn:
        version = create_version(conn, spec)
    return sync(settings, version.version, on_progress)


def sync(settings: IndexSettings, version: int, on_progress: OnProgress) -> IndexVersion:
    """Embed the chunks ``version`` lacks, build its index if missing, and mark it ready.

    Filling before the index is built loads rows without index maintenance; a
    second pass picks up chunks the pipeline wrote during the build. Version 1
    is filled by the pipeline: only its index is built (after ``defer``).
    """
    with _connect(settings) as conn:
        target = get_version(conn, version)
        spec = target.spec()
        if spec is None:  # version 1: the pipeline fills it, only its index is built here
            build_index(conn, target, maintenance_work_mem=settings.build_memory)
            return get_version(conn, version)
        provider = with_budget(create_provider(settings, spec), settings, spec.kind)
        started = time.monotonic()
        limits = settings.batch_limits

        def report(progress: FillProgress) -> None:
            on_progress(progress, time.monotonic() - started)

        fill(conn, target, provider, limits, on_progress=report)
        build_index(conn, target, maintenance_work_mem=settings.build_memory)
        fill(conn, target, provider, limits, on_progress=report)
        return get_version(conn, version)


@dataclass(frozen=True, slots=True)
class Listed:
    version: IndexVersion
    embeddings: str
    vectors: int
    chunks: int

    def to_json(self) -> dict[str, Any]:
        v = self.version
        return {
            "version": v.version,
            "embeddings": self.embeddings,
            "dim": v.dim,
            "state": v.state,
            "active": v.active,
            "vectors": self.vectors,
            "chunks": self.chunks,
            "created_at": v.created_at.isoformat() if v.created_at else None,
            "activated_at": v.activated_at.isoformat() if v.activated_at else None,
        }


def listing(settings: IndexSettings) -> list[Listed]:
    """Every version with its row count; version 1 is named after the pipeline's model."""
    out: list[Listed] = []
    with _connect(settings) as conn:
        for version in list_versions(conn):
            counted = coverage(conn, version)
            embeddings = version.embeddings
            if version.version == PIPELINE_VERSION:
                row = conn.execute(
                    "SELECT model FROM ragrun.chunks WHERE embedding IS NOT NULL LIMIT 1"
                ).fetchone()
                embeddings = f"{row[0] if row else 'pipeline'} (pipeline)"
            out.append(Listed(version, embeddings or "", counted.vectors, counted.chunks))
    return out


def print_listing(out: TextIO, rows: list[Listed], *, as_json: bool = False) -> None:
    if as_json:
        out.write(json.dumps([row.to_json() for row in rows], indent=2) + "\n")
        return
    out.write(f"{'VERSION':>7}  {'EMBEDDINGS':<32} {'DIM':>5}  {'STATE':<8}  VECTORS\n")
    for row in rows:
        v = row.version
        marker = "  active" if v.active else ""
        out.write(
            f"{v.version:>7}  {row.embeddings:<32} {v.dim:>5}  {v.state:<8}  "
            f"{row.vectors}/{row.chunks}{marker}\n"
        )


def activate_version(settings: IndexSettings, version: int, *, force: bool) -> tuple[int, int]:
    """Activate ``version``; unless ``force``, refuse while it lacks vectors for stored chunks.

    Returns (vectors, chunks) of the version as activated.
    """
    with _connect(settings) as conn:
        counted = coverage(conn, get_version(conn, version))
        if counted.vectors < counted.chunks and not force:
            missing = counted.chunks - counted.vectors
            raise ValueError(
                f"index version {version} has no vector for {missing} of {counted.chunks} "
                f"chunks: run `ragrun index sync {version}` (or activate with --force)"
            )
        activate(conn, version)
        return counted.vectors, counted.chunks


def defer(settings: IndexSettings, version: int) -> None:
    with _connect(settings) as conn:
        defer_index(conn, get_version(conn, version))


def drop_version(settings: IndexSettings, version: int) -> None:
    with _connect(settings) as conn:
        drop(conn, version)
