"""Request validation and SQL building: pure, no database."""

from __future__ import annotations

import pytest

from ragrun_query.search import (
    MAX_QUERY_CHARS,
    Filter,
    QueryRequest,
    RequestError,
    build_query,
    decode_body,
)


def parse(body: object, *, max_k: int = 100) -> QueryRequest:
    return QueryRequest.from_json(body, default_k=10, max_k=max_k)


def test_minimal_request_gets_defaults() -> None:
    assert parse({"query": "vacuum"}) == QueryRequest(query="vacuum", k=10, filter=Filter())


def test_full_request() -> None:
    body = {
        "query": "vacuum",
        "k": 3,
        "filter": {"bucket": "docs", "prefix": "guides/", "content_type": "text/plain"},
    }
    assert parse(body) == QueryRequest(
        query="vacuum",
        k=3,
        filter=Filter(bucket="docs", prefix="guides/", content_type="text/plain"),
    )


def test_nulls_mean_absent() -> None:
    body = {"query": "vacuum", "k": None, "filter": {"bucket": None}}
    assert parse(body) == QueryRequest(query="vacuum", k=10)
    assert parse({"query": "vacuum", "filter": None}).filter == Filter()


def test_k_bounds_are_inclusive() -> None:
    assert parse({"query": "q", "k": 1}).k == 1
    assert parse({"query": "q", "k": 100}).k == 100
    assert parse({"query": "q", "k": 5}, max_k=5).k == 5


def test_longest_query_is_accepted() -> None:
    assert parse({"query": "a" * MAX_QUERY_CHARS}).query == "a" * MAX_QUERY_CHARS


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
        ({"query": "a" * (MAX_QUERY_CHARS + 1)}, "query"),
        ({"query": "q", "k": 0}, "k"),
        ({"query": "q", "k": -1}, "k"),
        ({"query": "q", "k": 101}, "k"),
        ({"query": "q", "k": "5"}, "k"),
        ({"query": "q", "k": 5.0}, "k"),
        ({"query": "q", "k": True}, "k"),
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
    [b"", b"not json", b'{"query": ', b"\xff\xfe\x00", b"[" * 100_000, b"1" * 5000],
)
def test_decode_body_rejects_what_is_not_json(raw: bytes) -> None:
    with pytest.raises(RequestError) as caught:
        decode_body(raw)
    assert caught.value.field == "body"


def test_decode_body() -> None:
    assert decode_body(b'{"query": "q\\u00e9"}') == {"query": "qé"}


def test_sql_carries_filter_values_only_as_parameters() -> None:
    request = QueryRequest(
        query="q",
        k=7,
        filter=Filter(bucket="b'; DROP TABLE x; --", prefix="100%_", content_type="text/plain"),
    )
    query, params = build_query(request)
    text = query.as_string()
    assert "DROP TABLE" not in text
    assert "100%_" not in text
    assert "starts_with(d.name, %(prefix)s)" in text
    assert params == {
        "k": 7,
        "bucket": "b'; DROP TABLE x; --",
        "prefix": "100%_",
        "content_type": "text/plain",
    }


def test_sql_without_filter_has_no_where() -> None:
    query, params = build_query(QueryRequest(query="q", k=3))
    assert "WHERE" not in query.as_string()
    assert params == {"k": 3}
