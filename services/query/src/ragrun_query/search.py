"""The query core: validate a search request and run it against the pgvector index.

Parsing is pure: it turns a JSON body into a frozen :class:`QueryRequest` or
raises :class:`RequestError` naming the offending field. :func:`search` is the
only function that touches the database; it is given a connection and never
formats user input into SQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from ragrun_common.errors import PermanentError

MAX_QUERY_CHARS = 8000
# GCS object names are at most 1024 bytes; no filter value needs to be longer.
MAX_FILTER_CHARS = 1024

Vector = npt.NDArray[np.float32]


class RequestError(PermanentError):
    """A search request that can never succeed as sent; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Filter:
    """Restricts results to documents matching every given value (``None`` = any)."""

    bucket: str | None = None
    prefix: str | None = None
    content_type: str | None = None

    def active(self) -> dict[str, str]:
        """The keys that are set, with their values, in declaration order."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}


_FILTER_KEYS = tuple(f.name for f in fields(Filter))


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """A validated search request: the text, how many results and the filter."""

    query: str
    k: int
    filter: Filter = field(default_factory=Filter)

    @classmethod
    def from_json(cls, body: object, *, default_k: int = 10, max_k: int = 100) -> QueryRequest:
        """Validate a decoded JSON body; explicit ``null`` counts as an absent optional field."""
        if not isinstance(body, Mapping):
            raise RequestError("body", "expected a JSON object")
        _reject_unknown(body, ("query", "k", "filter"), prefix="")
        return cls(
            query=_parse_query(body.get("query")),
            k=_parse_k(body.get("k"), default_k=default_k, max_k=max_k),
            filter=_parse_filter(body.get("filter")),
        )


def decode_body(raw: bytes) -> object:
    """Decode a request body as JSON, raising :class:`RequestError` on anything else."""
    try:
        return json.loads(raw)
    # ValueError covers malformed JSON, bad UTF-8 and integers past Python's digit
    # limit; RecursionError covers absurdly nested arrays.
    except (ValueError, RecursionError) as e:
        raise RequestError("body", "the body is not valid JSON") from e


def _reject_unknown(obj: Mapping[Any, Any], allowed: tuple[str, ...], *, prefix: str) -> None:
    unknown = sorted(str(key) for key in obj if key not in allowed)
    if unknown:
        raise RequestError(
            f"{prefix}{unknown[0]}", f"unknown field; expected one of: {', '.join(allowed)}"
        )


def _parse_query(value: object) -> str:
    if value is None:
        raise RequestError("query", "required")
    if not isinstance(value, str):
        raise RequestError("query", "must be a string")
    if not value.strip():
        raise RequestError("query", "must not be empty")
    if len(value) > MAX_QUERY_CHARS:
        raise RequestError("query", f"must be at most {MAX_QUERY_CHARS} characters")
    return value


def _parse_k(value: object, *, default_k: int, max_k: int) -> int:
    if value is None:
        return default_k
    # bool is an int subclass, and 5.0 is not an integer as far as the API goes.
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError("k", "must be an integer")
    if not 1 <= value <= max_k:
        raise RequestError("k", f"must be between 1 and {max_k}")
    return value


def _parse_filter(value: object) -> Filter:
    if value is None:
        return Filter()
    if not isinstance(value, Mapping):
        raise RequestError("filter", "must be an object")
    _reject_unknown(value, _FILTER_KEYS, prefix="filter.")
    return Filter(**{key: _parse_filter_value(key, value.get(key)) for key in _FILTER_KEYS})


def _parse_filter_value(key: str, value: object) -> str | None:
    name = f"filter.{key}"
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError(name, "must be a string")
    if not value:
        raise RequestError(name, "must not be empty")
    if len(value) > MAX_FILTER_CHARS:
        raise RequestError(name, f"must be at most {MAX_FILTER_CHARS} characters")
    if "\0" in value:  # PostgreSQL text cannot hold NUL; it would fail as a 500
        raise RequestError(name, "must not contain NUL characters")
    return value


@dataclass(frozen=True, slots=True)
class Result:
    """One matching chunk of the active generation of a document."""

    chunk_id: str
    bucket: str
    name: str
    generation: int
    content: str
    score: float
    metadata: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "document": f"gs://{self.bucket}/{self.name}",
            "generation": self.generation,
            "content": self.content,
            "score": self.score,
            "metadata": self.metadata,
        }


# One condition per filter key; each binds the parameter of the same name.
# starts_with() takes the prefix literally, so '%', '_' and '\' need no escaping.
_CONDITIONS: dict[str, sql.Composable] = {
    "bucket": sql.SQL("d.bucket = %(bucket)s"),
    "prefix": sql.SQL("starts_with(d.name, %(prefix)s)"),
    "content_type": sql.SQL("d.content_type = %(content_type)s"),
}

# Only the distance may appear in ORDER BY, or PostgreSQL cannot use the HNSW index.
_SEARCH = sql.SQL(
    """
    SELECT c.chunk_id, d.bucket, d.name, c.generation, c.content, c.metadata,
           1 - (c.embedding <=> %(v)s) AS score
    FROM ragrun.chunks c
    JOIN ragrun.documents d
      ON d.document_id = c.document_id AND c.generation = d.active_generation
    {where}
    ORDER BY c.embedding <=> %(v)s
    LIMIT %(k)s
    """
)


def build_query(request: QueryRequest) -> tuple[sql.Composed, dict[str, Any]]:
    """The search SQL for ``request`` and its parameters, without the vector (``v``)."""
    params: dict[str, Any] = {"k": request.k}
    conditions: list[sql.Composable] = []
    for key, value in request.filter.active().items():
        conditions.append(_CONDITIONS[key])
        params[key] = value
    where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")
    return _SEARCH.format(where=where), params


def search(
    conn: psycopg.Connection[Any], vector: Vector, request: QueryRequest, ef_search: int
) -> list[Result]:
    """The ``request.k`` chunks nearest to ``vector`` by cosine distance, best first.

    Only chunks of each document's active generation are candidates. The HNSW
    candidate list size applies to this search only, and is never below ``k``,
    since fewer candidates than ``k`` cannot yield ``k`` results.
    """
    query, params = build_query(request)
    params["v"] = np.asarray(vector, dtype=np.float32)
    with conn.transaction() as tx:
        conn.execute(
            "SELECT set_config('hnsw.ef_search', %s, true)", (str(max(ef_search, request.k)),)
        )
        rows = conn.execute(query, params).fetchall()
        # Nothing was written, so roll back: that also ends the setting when this block
        # is only a savepoint inside a transaction the caller left open, where a commit
        # would let it outlive the search.
        raise psycopg.Rollback(tx)
    return [
        Result(
            chunk_id=row[0],
            bucket=row[1],
            name=row[2],
            generation=int(row[3]),
            content=row[4],
            metadata=row[5],
            score=float(row[6]),
        )
        for row in rows
    ]
