"""Settings of the CLI and of the reindex job (each field is in the README's table).

Durations are written the way people say them: ``7d``, ``36h``, ``90m``,
``600s`` (or Pub/Sub's own ``604800s``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from ragrun_common.settings import CommonSettings, EmbeddingBudgetSettings

# Pub/Sub's bounds on message_retention_duration, for topics and for subscriptions.
MIN_RETENTION = timedelta(minutes=10)
MAX_RETENTION = timedelta(days=31)
# A snapshot lives at most 7 days (less the age of the oldest unacked message).
MAX_SNAPSHOT_LIFETIME = timedelta(days=7)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """``"7d"`` -> 7 days; also ``"1d12h"``, ``"90m"``, ``"604800s"``. ValueError otherwise."""
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(compact):
        raise ValueError(f"{text!r} is not a duration like 7d, 36h, 90m or 600s")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact ``7d`` / ``36h`` / ``90m`` / ``45s`` form of ``value``."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class CliSettings(CommonSettings):
    """What ``ragrun setup`` / ``ragrun up`` provision beyond the names."""

    retention: Duration = Field(timedelta(days=7), validation_alias="RAGRUN_RETENTION")

    @model_validator(mode="after")
    def _check_retention(self) -> CliSettings:
        if not MIN_RETENTION <= self.retention <= MAX_RETENTION:
            raise ValueError(
                f"RAGRUN_RETENTION={format_duration(self.retention)} is outside what Pub/Sub "
                "allows for topics and subscriptions (10m to 31d)"
            )
        return self


class ReindexSettings(CommonSettings):
    """The reindex job: which objects, how fast, and which share of them is this task's.

    ``CLOUD_RUN_TASK_INDEX`` and ``CLOUD_RUN_TASK_COUNT`` are set by Cloud Run
    Jobs for every task of an execution.
    """

    reindex_source: str | None = Field(None, validation_alias="RAGRUN_REINDEX_SOURCE")
    reindex_rate: float = Field(100.0, ge=0, validation_alias="RAGRUN_REINDEX_RATE")
    task_index: int = Field(0, ge=0, validation_alias="CLOUD_RUN_TASK_INDEX")
    task_count: int = Field(1, ge=1, validation_alias="CLOUD_RUN_TASK_COUNT")

    @model_validator(mode="after")
    def _check_task(self) -> ReindexSettings:
        if self.task_index >= self.task_count:
            raise ValueError(
                f"CLOUD_RUN_TASK_INDEX={self.task_index} must be below "
                f"CLOUD_RUN_TASK_COUNT={self.task_count}"
            )
        return self


class IndexSettings(EmbeddingBudgetSettings):
    """``ragrun index``: the database, embedding budgets, and the index build's memory."""

    build_memory: str = Field("512MB", validation_alias="RAGRUN_INDEX_BUILD_MEMORY")
