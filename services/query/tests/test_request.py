"""Request validation and SQL building: pure, no database."""

from __future__ import annotations

import pytest

from ragrun_query.filters import And, Compare
from ragrun_query.search import (
    MAX_QUERY_CHARS,
    QueryRequest,
    RequestError,
    build_query,
    decode_body,
    keyword_match_for,
)


def parse(body: object, *, max_k: int = 100) -> QueryRequest:
    return QueryRequest.from_json(body, default_k=10, max_k=max_k)


def test_minimal_request_gets_defaults() -> None:
    assert parse({"query": "vacuum"}) == QueryRequest(query="vacuum", k=10, mode="hybrid")


def test_full_request() -> None:
    body = {
        "query": "vacuum",
        "k": 3,
        "filter": {"bucket": "docs", "prefix": "guides/", "content_type": "text/plain"},
        "mode": "keyword",
        "ef_search": 200,
        "rerank": False,
    }
    assert parse(body) == QueryRequest(
        query="vacuum",
        k=3,
        filter=And(
            (
                Compare("eq", "bucket", "docs"),
                Compare("prefix", "name", "guides/"),
                Compare("eq", "content_type", "text/plain"),
            )
        ),
        mode="keyword",
        ef_search=200,
        rerank=False,
    )


def test_nulls_mean_absent() -> None:
    body = {
        "query": "vacuum",
        "k": None,
        "filter": {"bucket": None},
        "mode": None,
        "ef_search": None,
        "rerank": None,
    }
    assert parse(body) == QueryRequest(query="vacuum", k=10)
    assert parse({"query": "vacuum", "filter": None}).filter is None
    assert parse({"query": "vacuum", "filter": {}}).filter is None


def test_k_bounds_are_inclusive() -> None:
    assert parse({"query": "q", "k": 1}).k == 1
    assert parse({"query": "q", "k": 100}).k == 100
    assert parse({"query": "q", "k": 5}, max_k=5).k == 5


def test_integral_numbers_are_integers() -> None:
    # JSON has one number type: 5.0 and 5 are the same value, as JSON Schema says too.
    assert parse({"query": "q", "k": 5.0}).k == 5
    assert parse({"query": "q", "ef_search": 64.0}).ef_search == 64


def test_longest_query_is_accepted() -> None:
    assert parse({"query": "a" * MAX_QUERY_CHARS}).query == "a" * MAX_QUERY_CHARS


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_modes(mode: str) -> None:
    assert parse({"query": "q", "mode": mode}).mode == mode


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ("vacuum", "body"),
        (None, "body"),
        ({}, "query"),
        ({"query": None}, "query"),
        ({"query": 42}, "query"),
        ({"query": ""}, "query"),
        ({"query": "  \n\t"}, "query"),
        ({"query": "a\0b"}, "query"),
        ({"query": "a" * (MAX_QUERY_CHARS + 1)}, "query"),
        ({"query": "q", "k": 0}, "k"),
        ({"query": "q", "k": -1}, "k"),
        ({"query": "q", "k": 101}, "k"),
        ({"query": "q", "k": "5"}, "k"),
        ({"query": "q", "k": 5.5}, "k"),
        ({"query": "q", "k": True}, "k"),
        ({"query": "q", "k": 10**400}, "k"),
        ({"query": "q", "mode": "semantic"}, "mode"),
        ({"query": "q", "mode": ["vector"]}, "mode"),
        ({"query": "q", "ef_search": 0}, "ef_search"),
        ({"query": "q", "ef_search": 1001}, "ef_search"),
        ({"query": "q", "rerank": "yes"}, "rerank"),
        ({"query": "q", "rerank": 1}, "rerank"),
        ({"query": "q", "filter": "docs"}, "filter"),
        ({"query": "q", "filter": ["docs"]}, "filter"),
        ({"query": "q", "filter": {"bucket": 1}}, "filter.bucket"),
        ({"query": "q", "filter": {"bucket": ""}}, "filter.bucket"),
        ({"query": "q", "filter": {"prefix": ["a"]}}, "filter.prefix"),
        ({"query": "q", "filter": {"prefix": "a\0b"}}, "filter.prefix"),
        ({"query": "q", "filter": {"prefix": "a" * 1025}}, "filter.prefix"),
        ({"query": "q", "filter": {"content_type": {}}}, "filter.content_type"),
        ({"query": "q", "filter": {"name": "x"}}, "filter.name"),
        ({"query": "q", "top_k": 3}, "top_k"),
    ],
)
def test_bad_requests_name_the_field(body: object, field: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse(body)
    assert caught.value.field == field
    assert caught.value.message


def test_unknown_field_is_reported_before_other_problems() -> None:
    with pytest.raises(RequestError) as caught:
        parse({"k": 0, "extra": 1})
    assert caught.value.field == "extra"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b'{"query": ',
        b"\xff\xfe\x00",
        b"[" * 100_000,
        b"1" * 5000,
        b'{"query": "q", "k": NaN}',
        b'{"query": "q", "filter": {"eq": {"field": "metadata.x", "value": Infinity}}}',
        # Half a surrogate pair: JSON allows the escape, UTF-8 (and PostgreSQL) do not.
        b'{"query": "\\ud800"}',
        b'{"query": "q", "filter": {"prefix": "a\\udfff"}}',
        b'{"query": "q", "filter": {"eq": {"field": "metadata.\\udc00", "value": 1}}}',
    ],
)
def test_decode_body_rejects_what_is_not_json(raw: bytes) -> None:
    with pytest.raises(RequestError) as caught:
        decode_body(raw)
    assert caught.value.field == "body"


def test_decode_body() -> None:
    assert decode_body(b'{"query": "q\\u00e9"}') == {"query": "qé"}
    assert decode_body(b'{"query": "\\ud83d\\ude00"}') == {"query": "\U0001f600"}


def test_sql_carries_filter_values_only_as_parameters() -> None:
    request = parse(
        {
            "query": "q",
            "k": 7,
            "filter": {
                "bucket": "b'; DROP TABLE x; --",
                "prefix": "100%_",
                "content_type": "text/plain",
            },
        }
    )
    query, params = build_query(request, limit=7, candidates=50)
    text = query.as_string()
    assert "DROP TABLE" not in text
    assert "100%_" not in text
    assert "starts_with(d.name, %(f1)s)" in text
    assert params == {
        "k": 7,
        "n": 50,
        "q": "q",
        "f0": "b'; DROP TABLE x; --",
        "f1": "100%_",
        "f2": "text/plain",
    }


def test_sql_without_filter_filters_nothing() -> None:
    query, params = build_query(QueryRequest(query="q", k=3, mode="vector"), limit=3, candidates=3)
    assert "WHERE c.embedding IS NOT NULL AND TRUE" in query.as_string()
    assert params == {"k": 3, "n": 3}


@pytest.mark.parametrize(
    ("mode", "legs"),
    [
        ("vector", ["vector_leg"]),
        ("keyword", ["keyword_leg"]),
        ("hybrid", ["vector_leg", "keyword_leg"]),
    ],
)
def test_each_mode_runs_its_legs_in_one_statement(mode: str, legs: list[str]) -> None:
    request = QueryRequest(query="q", k=3, mode=mode)  # type: ignore[arg-type]
    text = build_query(request, limit=3, candidates=20)[0].as_string()
    for leg in ("vector_leg", "keyword_leg"):
        assert (f"{leg} AS MATERIALIZED" in text) == (leg in legs)
    assert ("plainto_tsquery('english', %(q)s)" in text) == ("keyword_leg" in legs)


@pytest.mark.parametrize(
    ("query", "setting", "expected"),
    [
        ("how do I reduce table bloat", "any", "any"),
        ("sale or purchase", "any", "all"),
        ("OR gate", "any", "all"),
        ('"dead letter" topics', "any", "all"),
        ("report -drafted", "any", "all"),
        ("well-known co-op", "any", "any"),  # hyphens inside words are not exclusions
        ("orange order", "any", "any"),
        ("how do I reduce table bloat", "all", "all"),
    ],
)
def test_keyword_match(query: str, setting: str, expected: str) -> None:
    assert keyword_match_for(query, setting) == expected  # type: ignore[arg-type]
    text = build_query(
        QueryRequest(query=query, k=3, mode="keyword"),
        limit=3,
        candidates=3,
        keyword_match=setting,  # type: ignore[arg-type]
    )[0].as_string()
    function = "websearch_to_tsquery" if expected == "all" else "plainto_tsquery"
    assert f"{function}('english', %(q)s)" in text


def test_exact_scan_hides_the_distance_from_the_index() -> None:
    request = QueryRequest(query="q", k=3, mode="vector")
    approximate = build_query(request, limit=3, candidates=3)[0].as_string()
    exact = build_query(request, limit=3, candidates=3, exact=True)[0].as_string()
    assert "ORDER BY c.embedding <=> %(v)s LIMIT" in approximate
    assert "ORDER BY (c.embedding <=> %(v)s) + 0 LIMIT" in exact
