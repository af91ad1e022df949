"""PostgreSQL helpers for tests of concurrent transactions."""

from __future__ import annotations

import time
from typing import Any

import psycopg


def wait_until_blocked(conn: psycopg.Connection[Any], what: str, timeout_s: float = 10.0) -> None:
    """Return once another session of ``conn``'s database waits for a lock.

    ``conn`` must be in autocommit mode, so each look at ``pg_stat_activity`` is
    a fresh snapshot. Fails with ``what`` (the wait expected) after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ).fetchone()
        if row is not None and row[0] > 0:
            return
        time.sleep(0.02)
    raise AssertionError(f"no session waited for a lock within {timeout_s:.0f} s: {what}")
