"""The query core: validate a search request and run it against PostgreSQL + pgvector.

Parsing is pure: it turns a JSON body into a frozen :class:`QueryRequest` or
raises :class:`RequestError` naming the offending field. :func:`search` is the
only function that touches the database; it is given a connection and never
formats user input into SQL.

Three modes share one statement shape: a vector leg (HNSW, or ScaNN on AlloyDB,
``ORDER BY embedding <=> v``), a keyword leg (full-text search over the stored
``tsvector``, ranked by ``ts_rank``: any of the query's words, or with web search
syntax through ``websearch_to_tsquery``), and for ``hybrid`` both, fused in the
same SQL statement with Reciprocal Rank Fusion. Filters apply inside each leg,
so a selective filter still yields ``k`` rows: the vector leg runs with pgvector's
iterative index scan, and if it stops short of ``k`` (its tuple budget ran out) the
search is repeated as an exact scan over the matching chunks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from ragrun_common.versions import vectors_table
from ragrun_query.errors import RequestError
from ragrun_query.filters import Node, compile_filter, fields_used, parse_filter

__all__ = [
    "MAX_QUERY_CHARS",
    "Mode",
    "QueryRequest",
    "RequestError",
    "Result",
    "SearchConfig",
    "SearchOutcome",
    "build_query",
    "decode_body",
    "search",
]

MAX_QUERY_CHARS = 8000
# pgvector accepts hnsw.ef_search in 1..1000.
MAX_EF_SEARCH = 1000

Mode = Literal["vector", "keyword", "hybrid"]
MODES: tuple[Mode, ...] = get_args(Mode)
IndexKind = Literal["hnsw", "scann"]
KeywordMatch = Literal["all", "any"]

Vector = npt.NDArray[np.float32]

QUERY_FIELDS = ("query", "k", "filter", "mode", "ef_search", "rerank")


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """A validated search request.

    ``ef_search`` and ``rerank`` are ``None`` when the request leaves them to the
    service's settings.
    """

    query: str
    k: int
    filter: Node | None = None
    mode: Mode = "hybrid"
    ef_search: int | None = None
    rerank: bool | None = None

    @classmethod
    def from_json(cls, body: object, *, default_k: int = 10, max_k: int = 100) -> QueryRequest:
        """Validate a decoded JSON body; explicit ``null`` counts as an absent optional field."""
        if not isinstance(body, Mapping):
            raise RequestError("body", "expected a JSON object")
        reject_unknown(body, QUERY_FIELDS, prefix="")
        return cls.from_fields(body, default_k=default_k, max_k=max_k)

    @classmethod
    def from_fields(cls, body: Mapping[str, Any], *, default_k: int, max_k: int) -> QueryRequest:
        """The search fields of an already checked object (shared with /v1/answer)."""
        return cls(
            query=_parse_query(body.get("query")),
            k=parse_int(body.get("k"), "k", default=default_k, low=1, high=max_k),
            filter=parse_filter(body.get("filter")),
            mode=_parse_mode(body.get("mode")),
            ef_search=_optional_int(body.get("ef_search"), "ef_search", 1, MAX_EF_SEARCH),
            rerank=parse_bool(body.get("rerank"), "rerank"),
        )

    @property
    def filter_fields(self) -> list[str]:
        return fields_used(self.filter)


def decode_body(raw: bytes) -> object:
    """Decode a request body as strict JSON, raising :class:`RequestError` on anything else."""
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    # ValueError covers malformed JSON, bad UTF-8, NaN/Infinity and integers past
    # Python's digit limit; RecursionError covers absurdly nested arrays.
    except (ValueError, RecursionError) as e:
        raise RequestError("body", "the body is not valid JSON") from e
    try:
        lone = _has_lone_surrogate(body)
    except RecursionError as e:  # nesting json.loads still took
        raise RequestError("body", "the body is nested too deeply") from e
    if lone:
        raise RequestError(
            "body", "the body holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), not text"
        )
    return body


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_lone_surrogate(value: object) -> bool:
    """Whether any string in decoded JSON holds half of a surrogate pair (JSON allows the
    escape, UTF-8 and so PostgreSQL do not); json.loads joins proper pairs."""
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def reject_unknown(obj: Mapping[Any, Any], allowed: tuple[str, ...], *, prefix: str) -> None:
    unknown = sorted(str(key) for key in obj if key not in allowed)
    if unknown:
        raise RequestError(
            f"{prefix}{unknown[0]}" or "body",
            f"unknown field {unknown[0]!r}; expected one of: {', '.join(allowed)}",
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
    if "\0" in value:  # PostgreSQL text cannot hold NUL
        raise RequestError("query", "must not contain NUL characters")
    return value


def parse_int(value: object, name: str, *, default: int, low: int, high: int) -> int:
    """An integer in ``low..high``; JSON does not tell 5 from 5.0, so neither does this."""
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(name, "must be an integer")
    if not low <= value <= high:
        raise RequestError(name, f"must be between {low} and {high}")
    return value


def _optional_int(value: object, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    return parse_int(value, name, default=low, low=low, high=high)


def parse_bool(value: object, name: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise RequestError(name, "must be true or false")
    return value


def _parse_mode(value: object) -> Mode:
    if value is None:
        return "hybrid"
    for mode in MODES:
        if value == mode:
            return mode
    raise RequestError("mode", f"must be one of: {', '.join(MODES)}")


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """The service's search knobs (see :class:`~ragrun_query.settings.QuerySettings`)."""

    ef_search: int = 40
    max_scan_tuples: int = 20_000
    candidates: int = 50
    rrf_k: int = 60
    index: IndexKind = "hnsw"
    num_leaves_to_search: int | None = None
    statement_timeout_ms: int = 10_000
    keyword_match: KeywordMatch = "any"
    # The index version searched (see ragrun_common.versions): 1 is the chunk rows' own
    # column, any other a table of its own.
    version: int = 1


@dataclass(frozen=True, slots=True)
class Result:
    """One matching chunk of the active generation of a document.

    ``ranks`` holds the chunk's 1-based rank in each leg that found it (``None``
    where that leg did not), and ``rerank`` once a reranker reordered the list.
    """

    chunk_id: str
    document_id: str
    bucket: str
    name: str
    generation: int
    content: str
    score: float
    metadata: dict[str, Any]
    ranks: dict[str, int | None] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "document": self.uri,
            "generation": self.generation,
            "content": self.content,
            "score": self.score,
            "ranks": dict(self.ranks),
            "metadata": self.metadata,
        }


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    """The results, and whether the exact scan had to finish what the index began."""

    results: list[Result]
    exact_fallback: bool = False


_FROM = sql.SQL(
    "FROM ragrun.chunks c"
    " JOIN ragrun.documents d"
    " ON d.document_id = c.document_id AND c.generation = d.active_generation"
)

# Another index version's vectors live in a table of their own, which drives the scan.
_VERSION_FROM = sql.SQL(
    "FROM {table} e JOIN ragrun.chunks c ON c.chunk_id = e.chunk_id"
    " JOIN ragrun.documents d"
    " ON d.document_id = c.document_id AND c.generation = d.active_generation"
)

# Only the bare distance in ORDER BY lets PostgreSQL use the vector index; "+ 0" is
# the same order without it, which makes the scan exact.
_VECTOR_LEG = sql.SQL(
    "SELECT chunk_id, distance, row_number() OVER (ORDER BY distance, chunk_id) AS rank"
    " FROM (SELECT c.chunk_id, {column} <=> %(v)s AS distance {from_}"
    " WHERE {column} IS NOT NULL AND {where}"
    " ORDER BY {order} LIMIT %(n)s) s"
)
_KEYWORD_LEG = sql.SQL(
    "SELECT chunk_id, score, row_number() OVER (ORDER BY score DESC, chunk_id) AS rank"
    " FROM (SELECT c.chunk_id, ts_rank(c.content_tsv, q.query) AS score {from_}"
    " CROSS JOIN (SELECT {tsquery}) AS q(query)"
    " WHERE c.content_tsv @@ q.query AND {where}"
    " ORDER BY score DESC, c.chunk_id LIMIT %(n)s) s"
)
# "all": web search syntax, every word must occur ("quoted phrases", -exclusions, or).
# "any": chunks holding any of the query's words; plainto_tsquery joins bare lexemes
# with " & " only, so swapping that for " | " is exact.
_TSQUERY = {
    "all": sql.SQL("websearch_to_tsquery('english', %(q)s)"),
    "any": sql.SQL("replace(plainto_tsquery('english', %(q)s)::text, ' & ', ' | ')::tsquery"),
}
# A double quote, a word with a leading "-", or the word "or": web search syntax.
_SEARCH_SYNTAX = re.compile(r'"|(?:^|\s)-\w|(?:^|\s)or(?:\s|$)', re.IGNORECASE)


def keyword_match_for(query: str, setting: KeywordMatch) -> KeywordMatch:
    """How the keyword leg reads ``query``: ``any`` unless set to ``all`` or the query
    uses web search syntax, which is then honoured as written."""
    return "all" if setting == "all" or _SEARCH_SYNTAX.search(query) else "any"


_FUSED = {
    "vector": sql.SQL(
        "SELECT chunk_id, rank AS vector_rank, NULL::bigint AS keyword_rank,"
        " 1 - distance AS score FROM vector_leg"
    ),
    "keyword": sql.SQL(
        "SELECT chunk_id, NULL::bigint AS vector_rank, rank AS keyword_rank, score FROM keyword_leg"
    ),
    "hybrid": sql.SQL(
        "SELECT coalesce(v.chunk_id, w.chunk_id) AS chunk_id,"
        " v.rank AS vector_rank, w.rank AS keyword_rank,"
        " coalesce(1.0::float8 / (%(rrf_k)s + v.rank), 0)"
        " + coalesce(1.0::float8 / (%(rrf_k)s + w.rank), 0) AS score"
        " FROM vector_leg v FULL JOIN keyword_leg w ON v.chunk_id = w.chunk_id"
    ),
}
_SEARCH = sql.SQL(
    "WITH {legs}, fused AS ({fused})"
    " SELECT f.chunk_id, d.document_id, d.bucket, d.name, c.generation, c.content,"
    " c.metadata, f.score::float8, f.vector_rank, f.keyword_rank"
    " FROM fused f JOIN ragrun.chunks c ON c.chunk_id = f.chunk_id"
    " JOIN ragrun.documents d ON d.document_id = c.document_id"
    " ORDER BY f.score DESC, f.chunk_id LIMIT %(k)s"
)


def build_query(
    request: QueryRequest,
    *,
    limit: int,
    candidates: int,
    exact: bool = False,
    keyword_match: KeywordMatch = "any",
    version: int = 1,
) -> tuple[sql.Composed, dict[str, Any]]:
    """The SQL for ``request`` and its parameters, less the vector ``v`` and ``rrf_k``.

    Each leg contributes ``candidates`` rows; the fused list is cut to ``limit``.
    The vector leg searches index version ``version``.
    """
    where, params = compile_filter(request.filter)
    params.update({"k": limit, "n": candidates})
    legs: list[sql.Composable] = []
    if request.mode in ("vector", "hybrid"):
        from_: sql.Composable
        if version == 1:
            column, from_ = sql.SQL("c.embedding"), _FROM
        else:
            table = vectors_table(version)
            column, from_ = sql.SQL("e.embedding"), _VERSION_FROM.format(table=table)
        distance = sql.SQL("{} <=> %(v)s").format(column)
        order = sql.SQL("({}) + 0").format(distance) if exact else distance
        leg = _VECTOR_LEG.format(column=column, from_=from_, where=where, order=order)
        legs.append(sql.SQL("vector_leg AS MATERIALIZED ({})").format(leg))
    if request.mode in ("keyword", "hybrid"):
        params["q"] = request.query
        tsquery = _TSQUERY[keyword_match_for(request.query, keyword_match)]
        leg = _KEYWORD_LEG.format(from_=_FROM, where=where, tsquery=tsquery)
        legs.append(sql.SQL("keyword_leg AS MATERIALIZED ({})").format(leg))
    query = _SEARCH.format(legs=sql.SQL(", ").join(legs), fused=_FUSED[request.mode])
    return query, params


def search(
    conn: psycopg.Connection[Any],
    vector: Vector | None,
    request: QueryRequest,
    config: SearchConfig,
    *,
    limit: int | None = None,
    exact: bool = False,
) -> SearchOutcome:
    """The best ``limit`` (default ``request.k``) chunks for ``request``, best first.

    ``vector`` is the embedded query (unused, and may be ``None``, in keyword
    mode). A reranking caller asks for more than ``k``. In hybrid mode each leg
    contributes at least ``config.candidates`` rows to the fusion. Only chunks of
    each document's active generation are candidates. The index settings apply
    to this search only. ``exact`` skips the vector index (for measurements).
    """
    limit = max(limit or request.k, request.k)
    candidates = max(limit, config.candidates) if request.mode == "hybrid" else limit
    rows = _run(conn, vector, request, config, limit, candidates, exact)
    fallback = False
    needs_vector = request.mode in ("vector", "hybrid")
    if needs_vector and not exact and request.filter is not None and len(rows) < limit:
        # The iterative index scan stopped at its tuple budget before finding enough
        # matches: an exact scan over the matching chunks finds every one there is.
        rows = _run(conn, vector, request, config, limit, candidates, True)
        fallback = True
    return SearchOutcome([_result(row) for row in rows], exact_fallback=fallback)


def _run(
    conn: psycopg.Connection[Any],
    vector: Vector | None,
    request: QueryRequest,
    config: SearchConfig,
    limit: int,
    candidates: int,
    exact: bool,
) -> list[tuple[Any, ...]]:
    query, params = build_query(
        request,
        limit=limit,
        candidates=candidates,
        exact=exact,
        keyword_match=config.keyword_match,
        version=config.version,
    )
    if request.mode != "keyword":
        if vector is None:
            raise ValueError(f"a {request.mode} search needs the query vector")
        array = np.asarray(vector, dtype=np.float32)
        if array.ndim != 1 or not np.all(np.isfinite(array)):
            raise ValueError("the query vector must be one finite row")
        params["v"] = array
    if request.mode == "hybrid":
        params["rrf_k"] = config.rrf_k
    ef_search = min(MAX_EF_SEARCH, max(request.ef_search or config.ef_search, candidates))
    settings: dict[str, str] = {
        "statement_timeout": str(config.statement_timeout_ms),
        "hnsw.ef_search": str(ef_search),
        # relaxed_order finds more of the true neighbours for the same work; the
        # window function in each leg puts the rows back in exact distance order.
        "hnsw.iterative_scan": "relaxed_order",
        "hnsw.max_scan_tuples": str(config.max_scan_tuples),
    }
    if config.index == "scann":
        leaves = request.ef_search or config.num_leaves_to_search
        if leaves is not None:
            settings["scann.num_leaves_to_search"] = str(leaves)
    calls = sql.SQL(", ").join([sql.SQL("set_config(%s, %s, true)")] * len(settings))
    arguments = [item for pair in settings.items() for item in pair]
    with conn.transaction() as tx:
        # One round trip for all the settings.
        conn.execute(sql.SQL("SELECT {}").format(calls), arguments, prepare=False)
        # prepare=False: a cached generic plan would outlive the settings above and
        # could not see the query vector when choosing between index and exact scan.
        rows = conn.execute(query, params, prepare=False).fetchall()
        # Nothing was written, so roll back: that also ends the settings when this block
        # is only a savepoint inside a transaction the caller left open, where a commit
        # would let them outlive the search.
        raise psycopg.Rollback(tx)
    return rows


def _result(row: tuple[Any, ...]) -> Result:
    score = float(row[7])
    return Result(
        chunk_id=row[0],
        document_id=row[1],
        bucket=row[2],
        name=row[3],
        generation=int(row[4]),
        content=row[5],
        metadata=row[6],
        score=score if math.isfinite(score) else 0.0,
        ranks={
            "vector": None if row[8] is None else int(row[8]),
            "keyword": None if row[9] is None else int(row[9]),
        },
    )


def detect_index(conn: psycopg.Connection[Any]) -> IndexKind:
    """``scann`` when ``ragrun.chunks.embedding`` has an AlloyDB ScaNN index, else ``hnsw``."""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i"
        " JOIN pg_class ix ON ix.oid = i.indexrelid"
        " JOIN pg_am am ON am.oid = ix.relam"
        " WHERE i.indrelid = 'ragrun.chunks'::regclass AND am.amname = 'scann')"
    ).fetchone()
    return "scann" if row and row[0] else "hnsw"
