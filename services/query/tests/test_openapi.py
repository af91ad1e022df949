"""The OpenAPI document is valid, and the service accepts exactly the requests it describes.

Handwritten cases and Hypothesis-generated requests (valid ones built from the
filter grammar, and arbitrary JSON and bytes) go through the real app and a real
database; for every one the service's verdict must match the schema's, and no
request may ever get a 500.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate
from psycopg_pool import ConnectionPool

from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_query import filters as f
from ragrun_query.main import create_app
from ragrun_query.openapi import openapi_document

DIM = 384
FUZZ = settings(
    max_examples=250,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def fuzz_app(pg_server_url: str, seeded_url: str) -> Any:
    """One app (and pool) for the whole module: Hypothesis calls the test many times."""
    from ragrun_common.db import make_pool
    from ragrun_query.settings import QuerySettings

    pool = make_pool(seeded_url, max_size=2, name="query-fuzz")
    app_settings = QuerySettings(database_url=seeded_url, embeddings="hash", max_k=50)
    try:
        yield create_app(app_settings, pool=pool, provider=HashEmbedder(DIM)), app_settings
    finally:
        pool.close()


@pytest.fixture(scope="module")
def document(fuzz_app: Any) -> dict[str, Any]:
    return openapi_document(fuzz_app[1])


def validator(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_document_is_served(fuzz_app: Any, document: dict[str, Any]) -> None:
    app: Flask = fuzz_app[0]
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == json.loads(json.dumps(document))


def test_document_follows_the_settings(make_settings: Any, pool: ConnectionPool) -> None:
    locked = openapi_document(make_settings(api_keys="k", max_k=7, default_k=5, answer_k=5))
    properties = locked["components"]["schemas"]["QueryRequest"]["properties"]
    assert properties["k"]["anyOf"][0]["maximum"] == 7
    assert locked["security"] == [{"bearer": []}, {"apiKey": []}]
    assert openapi_document(make_settings())["security"] == []


def _depth_and_count(node: object, depth: int = 1) -> tuple[int, int]:
    """How deep a filter nests and how many conditions it holds, as the parser counts."""
    if not isinstance(node, dict):
        return depth, 0
    keys = list(node)
    if all(k in f.SHORTHAND_KEYS and (v is None or isinstance(v, str)) for k, v in node.items()):
        return depth, sum(1 for v in node.values() if v)
    if len(keys) != 1 or keys[0] not in f.BOOLEANS:
        return depth, 1
    inner = node[keys[0]]
    children = inner if isinstance(inner, list) else [inner]
    deepest, count = depth, 1
    for child in children:
        d, c = _depth_and_count(child, depth + 1)
        deepest, count = max(deepest, d), count + c
    return deepest, count


def _impossible_dates(node: object) -> bool:
    """Whether a filter holds a date that has the right shape but is not in the calendar
    (2024-02-30): JSON Schema's pattern cannot tell, the service answers 400."""
    if isinstance(node, list):
        return any(_impossible_dates(item) for item in node)
    if not isinstance(node, dict):
        return False
    if node.get("field") in ("created_at", "updated_at"):
        values = node.get("values", [node.get("value")])
        for value in values if isinstance(values, list) else []:
            if isinstance(value, str) and re.match(f.TIME_PATTERN, value):
                try:
                    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
                except ValueError:
                    return True
    return any(_impossible_dates(value) for value in node.values())


def within_limits(body: object) -> bool:
    """Whether the schema alone can judge ``body`` (see the module docstring of openapi)."""
    if not isinstance(body, dict) or not isinstance(body.get("filter"), dict):
        return True
    depth, count = _depth_and_count(body["filter"])
    fits = depth <= f.MAX_DEPTH and count <= f.MAX_CONDITIONS
    return fits and not _impossible_dates(body["filter"])


def check(client: FlaskClient, document: dict[str, Any], body: object) -> int:
    """POST ``body`` and check the service's verdict against the schema's; return the status."""
    response = client.post("/v1/query", data=json.dumps(body), content_type="application/json")
    status = response.status_code
    assert status in (200, 400), (status, body, response.get_data(as_text=True))
    answer = response.get_json()
    if status == 200:
        validator(document, "QueryResponse").validate(answer)
    else:
        validator(document, "Error").validate(answer)
        assert answer["error"]["field"]
    if within_limits(body):
        schema_ok = validator(document, "QueryRequest").is_valid(body)
        assert (status == 200) == schema_ok, (body, answer)
    else:
        assert status == 400
    return status


CASES: list[tuple[object, bool]] = [
    ({"query": "PostgreSQL"}, True),
    ({"query": "q", "k": 5.0, "mode": "keyword", "ef_search": 64, "rerank": None}, True),
    ({"query": "q", "filter": {}}, True),
    ({"query": "q", "filter": {"prefix": None}}, True),
    ({"query": "q", "filter": {"prefix": {"field": "name", "value": ""}}}, True),
    ({"query": "q", "filter": {"not": {"and": [{}]}}}, True),
    ({"query": "q", "filter": {"eq": {"field": "metadata.x", "value": 1e38}}}, True),
    ({"query": "q", "filter": {"eq": {"field": "metadata.x", "value": 10**38}}}, False),
    ({"query": "q", "filter": {"eq": {"field": "generation", "value": 2**63 - 1}}}, True),
    ({"query": "q", "filter": {"eq": {"field": "generation", "value": 2**63}}}, False),
    ({"query": "q", "filter": {"gt": {"field": "created_at", "value": "2024-02-29"}}}, True),
    ({"query": "q", "filter": {"gt": {"field": "created_at", "value": "2024-02-29Z"}}}, False),
    ({"query": "q", "filter": {"in": {"field": "metadata.n", "values": [1, 2.5]}}}, True),
    ({"query": "q", "filter": {"in": {"field": "metadata.n", "values": [1, "2"]}}}, False),
    ({"query": "q", "filter": {"prefix": {"field": "metadata.n", "value": 1}}}, False),
    ({"query": "q", "filter": {"bucket": "b", "prefix": {"field": "name", "value": "x"}}}, False),
    ({"query": "q", "filter": {"bucket": 5}}, False),
    ({"query": "q", "filter": {"prefix": 5}}, False),
    ({"query": " \u2003 "}, False),
    ({"query": "q", "k": 51}, False),
    ({"query": "q", "mode": "VECTOR"}, False),
    ({"query": "q", "stream": True}, False),
]


@pytest.mark.parametrize(("body", "valid"), CASES)
def test_service_and_schema_agree(
    fuzz_app: Any, document: dict[str, Any], body: object, valid: bool
) -> None:
    status = check(fuzz_app[0].test_client(), document, body)
    assert (status == 200) == valid


# -- Hypothesis strategies ----------------------------------------------------------------

texts = st.text(max_size=12) | st.sampled_from(["docs", "guides/", "text/plain", "a\x00b", ""])
numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, 5, 10, 2**63 - 1, 2**63, 1e38, -1e38, 5.0])
)
times = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.isoformat().replace("+00:00", "Z")) | st.sampled_from(
    ["2024-01-01", "2024-01-01T10:00", "2024-13-01", "2024-02-30", "24:00", "yesterday"]
)
scalars = texts | numbers | times | st.booleans() | st.none()
field_names = st.sampled_from(
    [*f.FIELDS, "metadata.team", "metadata.priority", "metadata.lang", "metadata.", "author"]
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def comparisons(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from([*f.COMPARISONS, "regex"]))
    field = draw(field_names)
    kind = f.FIELDS.get(field)
    good = {"text": texts, "integer": numbers, "time": times}.get(kind or "", texts | numbers)
    value = draw(good | scalars) if draw(st.booleans()) else draw(good)
    if op == "in":
        return {op: {"field": field, "values": draw(st.lists(good, max_size=4) | scalars)}}
    inner: dict[str, Any] = {"field": field, "value": value}
    if draw(st.integers(0, 20)) == 0:
        inner["extra"] = 1
    return {op: inner}


shorthand = st.fixed_dictionaries(
    {}, optional={key: texts | st.none() | numbers for key in f.SHORTHAND_KEYS}
)
filters = st.recursive(
    comparisons() | shorthand,
    lambda children: (
        st.builds(lambda items: {"and": items}, st.lists(children, max_size=3))
        | st.builds(lambda items: {"or": items}, st.lists(children, max_size=3))
        | st.builds(lambda item: {"not": item}, children)
    ),
    max_leaves=8,
)
bodies = (
    st.fixed_dictionaries(
        {"query": st.text(max_size=40) | st.sampled_from(["PostgreSQL vacuum", '"dead letter"'])},
        optional={
            "k": st.integers(-2, 60) | st.sampled_from([1.0, 2.5, True, "3"]),
            "filter": filters | json_values,
            "mode": st.sampled_from(["vector", "keyword", "hybrid", "other", None]),
            "ef_search": st.integers(-1, 1200) | st.none(),
            "rerank": st.booleans() | st.none() | st.just("yes"),
        },
    )
    | json_values
)


@FUZZ
@given(body=bodies)
def test_fuzzed_requests_never_500_and_agree_with_the_schema(
    fuzz_app: Any, document: dict[str, Any], body: object
) -> None:
    client = fuzz_app[0].test_client()
    if isinstance(body, dict) and body.get("rerank") is True:
        body = {**body, "rerank": None}  # no reranker here: 501 is tested elsewhere
    check(client, document, body)


@FUZZ
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_fuzzed_bytes_never_500(fuzz_app: Any, raw: bytes) -> None:
    client = fuzz_app[0].test_client()
    for path in ("/v1/query", "/v1/answer"):
        response = client.post(path, data=raw, content_type="application/json")
        assert response.status_code in (200, 400, 413, 501), response.get_data(as_text=True)


@FUZZ
@given(body=bodies)
def test_fuzzed_answer_requests_agree_with_the_schema(
    fuzz_app: Any, document: dict[str, Any], body: object
) -> None:
    """No model is configured here: valid requests get 501, invalid ones 400, never 500."""
    response = fuzz_app[0].test_client().post("/v1/answer", json=body)
    assert response.status_code in (400, 501)
    if within_limits(body):
        schema_ok = validator(document, "AnswerRequest").is_valid(body)
        assert (response.status_code == 501) == schema_ok, (body, response.get_json())


@FUZZ
@given(segment=st.text(min_size=1, max_size=40), uri=st.text(max_size=40))
def test_fuzzed_document_lookups_never_500(fuzz_app: Any, segment: str, uri: str) -> None:
    client = fuzz_app[0].test_client()
    response = client.get("/v1/documents/" + quote(segment, safe=""))
    assert response.status_code in (400, 404), response.get_data(as_text=True)
    response = client.get("/v1/documents", query_string={"uri": "gs://" + uri})
    assert response.status_code in (200, 400, 404), response.get_data(as_text=True)
