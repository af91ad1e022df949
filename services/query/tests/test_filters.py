"""The filter language: parsing errors that name the culprit, and what each operator matches.

The matching tests run through ``POST /v1/query`` against the seeded corpus
(see conftest: three documents with custom metadata and creation times, four
without metadata, one with no servable generation).
"""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from ragrun_query.filters import (
    MAX_CONDITIONS,
    MAX_DEPTH,
    MAX_IN_VALUES,
    And,
    Compare,
    Not,
    Or,
    compile_filter,
    fields_used,
    parse_filter,
)
from ragrun_query.search import RequestError

ALL = {"postgres", "pubsub", "cooking", "literal", "wildcard", "backslash", "no_backslash"}
NO_METADATA = {"literal", "wildcard", "backslash", "no_backslash"}


def cmp(op: str, field: str, value: Any) -> dict[str, Any]:
    key = "values" if op == "in" else "value"
    return {op: {"field": field, key: value}}


def matching(client: FlaskClient, corpus: Any, filter_: object) -> set[str]:
    response = client.post(
        "/v1/query", json={"query": "notes report pasta", "k": 100, "filter": filter_}
    )
    assert response.status_code == 200, response.get_json()
    uris = {r["document"] for r in response.get_json()["results"]}
    return {name for name in ALL if getattr(corpus, name).uri in uris}


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        (cmp("eq", "metadata.team", "db"), {"postgres"}),
        (cmp("in", "metadata.team", ["db", "food"]), {"postgres", "cooking"}),
        # Numeric tests compare numbers, and skip values that are not numbers ("high").
        (cmp("gt", "metadata.priority", 6), {"pubsub"}),
        (cmp("eq", "metadata.priority", 5.0), {"postgres"}),
        (cmp("in", "metadata.priority", [5, 10]), {"postgres", "pubsub"}),
        (cmp("lte", "metadata.priority", 10), {"postgres", "pubsub"}),
        # String tests compare text: "10" < "5" < "high".
        (cmp("gte", "metadata.priority", "5"), {"postgres", "cooking"}),
        (cmp("gt", "metadata.rating", 1), set()),
        (cmp("prefix", "metadata.lang", "e"), {"postgres", "pubsub"}),
        (cmp("eq", "metadata.missing", "x"), set()),
        # A document without the key satisfies "not".
        ({"not": cmp("eq", "metadata.team", "db")}, ALL - {"postgres"}),
        (
            {"or": [cmp("eq", "bucket", "archive"), cmp("eq", "content_type", "text/markdown")]},
            {"cooking", "pubsub"},
        ),
        (cmp("gte", "generation", 2), {"postgres", "pubsub"}),
        (cmp("in", "generation", [5]), {"pubsub"}),
        (cmp("lt", "created_at", "2024-01-01"), {"cooking"}),
        (
            {
                "and": [
                    cmp("gte", "created_at", "2024-03-01T10:00:00Z"),
                    cmp("lt", "created_at", "2024-12-31T00:00:00"),
                ]
            },
            {"postgres", "pubsub"},
        ),
        (cmp("gt", "updated_at", "2024-12-31T23:59:59+01:00"), NO_METADATA),
        (cmp("prefix", "name", "guides/"), {"postgres", "pubsub", "cooking"}),
        (cmp("eq", "name", "guides/pubsub.md"), {"pubsub"}),
        (cmp("gt", "bucket", "b"), ALL - {"cooking"}),
        (cmp("in", "content_type", ["text/markdown"]), {"pubsub"}),
        (
            {
                "and": [
                    {"or": [cmp("eq", "metadata.lang", "en"), cmp("eq", "bucket", "archive")]},
                    {"not": {"prefix": "guides/pub"}},
                ]
            },
            {"postgres", "cooking"},
        ),
        ({"and": [{}, cmp("eq", "bucket", "archive")]}, {"cooking"}),
        ({"not": {}}, set()),
        ({"or": [{}, cmp("eq", "bucket", "archive")]}, ALL),
        ({"prefix": "guides/", "bucket": "docs"}, {"postgres", "pubsub"}),
    ],
)
def test_filter_matches(
    client: FlaskClient, corpus: Any, filter_: object, expected: set[str]
) -> None:
    assert matching(client, corpus, filter_) == expected


@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_filters_apply_to_every_leg(client: FlaskClient, corpus: Any, mode: str) -> None:
    body = {
        "query": "PostgreSQL or dead letter topics",
        "k": 100,
        "mode": mode,
        "filter": cmp("eq", "metadata.team", "infra"),
    }
    response = client.post("/v1/query", json=body)
    assert response.status_code == 200
    assert {r["document"] for r in response.get_json()["results"]} == {corpus.pubsub.uri}


@pytest.mark.parametrize(
    ("filter_", "field", "words"),
    [
        (
            {"regex": {"field": "name", "value": ".*"}},
            "filter.regex",
            ["unknown operator", "regex"],
        ),
        (cmp("eq", "author", "x"), "filter.eq.field", ["unknown field", "'author'"]),
        ({"and": [cmp("eq", "bucket", 1)]}, "filter.and[0].eq.value", ["string"]),
        ({"or": [{}, {"not": {"like": 1}}]}, "filter.or[1].not.like", ["unknown operator"]),
        (cmp("prefix", "generation", "1"), "filter.prefix", ["text fields"]),
        (cmp("eq", "generation", "5"), "filter.eq.value", ["integer"]),
        (cmp("eq", "generation", 2**63), "filter.eq.value", ["64 bits"]),
        (cmp("eq", "created_at", "yesterday"), "filter.eq.value", ["RFC 3339"]),
        (cmp("eq", "created_at", "2024-02-30"), "filter.eq.value", ["valid time"]),
        (cmp("eq", "created_at", "2024-13-01"), "filter.eq.value", ["RFC 3339"]),
        (cmp("in", "bucket", []), "filter.in.values", ["non-empty"]),
        (cmp("in", "bucket", "docs"), "filter.in.values", ["array"]),
        (cmp("in", "metadata.x", ["a", 1]), "filter.in.values", ["one type"]),
        (cmp("in", "bucket", ["b"] * (MAX_IN_VALUES + 1)), "filter.in.values", ["at most"]),
        ({"eq": {"field": "bucket"}}, "filter.eq.value", ["required"]),
        ({"eq": {"value": "x"}}, "filter.eq.field", ["required"]),
        ({"eq": {"field": "bucket", "value": "x", "op": 1}}, "filter.eq.op", ["unknown field"]),
        ({"in": {"field": "bucket", "value": ["x"]}}, "filter.in.value", ["unknown field"]),
        ({"eq": "bucket"}, "filter.eq", ["object"]),
        ({**cmp("eq", "bucket", "a"), **cmp("lt", "bucket", "b")}, "filter", ["exactly one"]),
        ({"bucket": "docs", **cmp("eq", "name", "a")}, "filter", ["exactly one"]),
        ({"not": [cmp("eq", "bucket", "a")]}, "filter.not", ["object"]),
        ({"and": []}, "filter.and", ["non-empty"]),
        ({"or": {}}, "filter.or", ["array"]),
        (cmp("eq", "metadata.", "x"), "filter.eq.field", ["metadata key"]),
        (cmp("eq", "metadata." + "k" * 257, "x"), "filter.eq.field", ["metadata key"]),
        (cmp("eq", "metadata.x", True), "filter.eq.value", ["string or a number"]),
        (cmp("eq", "metadata.x", None), "filter.eq.value", ["string or a number"]),
        (cmp("eq", "metadata.x", 1e39), "filter.eq.value", ["1e38"]),
        (cmp("eq", "metadata.x", -(10**39)), "filter.eq.value", ["1e38"]),
        (cmp("prefix", "metadata.x", 1), "filter.prefix.value", ["string"]),
        (cmp("eq", "metadata.x", "a\0"), "filter.eq.value", ["NUL"]),
        (cmp("eq", "name", "n" * 1025), "filter.eq.value", ["at most"]),
    ],
)
def test_bad_filters_name_the_culprit(
    client: FlaskClient, filter_: object, field: str, words: list[str]
) -> None:
    response = client.post("/v1/query", json={"query": "q", "filter": filter_})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["field"] == field
    for word in words:
        assert word in error["message"]


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = cmp("eq", "bucket", "docs")
    for _ in range(depth - 1):
        node = {"not": node}
    return node


def test_depth_limit() -> None:
    assert parse_filter(_nested(MAX_DEPTH)) is not None
    with pytest.raises(RequestError, match="levels deep"):
        parse_filter(_nested(MAX_DEPTH + 1))


def test_condition_limit() -> None:
    fits = {"or": [cmp("eq", "bucket", str(i)) for i in range(MAX_CONDITIONS - 1)]}
    assert isinstance(parse_filter(fits), Or)
    too_many = {"or": [cmp("eq", "bucket", str(i)) for i in range(MAX_CONDITIONS)]}
    with pytest.raises(RequestError, match="at most"):
        parse_filter(too_many)


def test_parse_tree_and_fields_used() -> None:
    node = parse_filter(
        {
            "and": [
                {"not": cmp("in", "metadata.team", ["a", "b"])},
                cmp("gte", "created_at", "2024-01-01"),
                {"prefix": "x/"},
            ]
        }
    )
    assert isinstance(node, And)
    first = node.items[0]
    assert isinstance(first, Not)
    assert first.item == Compare("in", "metadata.team", ("a", "b"))
    assert node.items[2] == Compare("prefix", "name", "x/")
    assert fields_used(node) == ["created_at", "metadata.team", "name"]


def test_compiled_filter_binds_every_value_and_key() -> None:
    hostile = "x'); DROP TABLE ragrun.chunks; --"
    node = parse_filter(
        {
            "or": [
                cmp("eq", f"metadata.{hostile}", hostile),
                cmp("gt", f"metadata.{hostile}", 3),
                cmp("prefix", "name", hostile),
                cmp("in", "bucket", [hostile]),
            ]
        }
    )
    where, params = compile_filter(node)
    text = where.as_string()
    assert "DROP" not in text
    assert hostile in {value for value in params.values() if isinstance(value, str)}
    assert all(name.startswith("f") for name in params)
