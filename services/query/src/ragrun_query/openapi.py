"""The OpenAPI 3.1 document served at ``/openapi.json``.

The request schemas are built from the same constants the parsers use (fields,
operators, limits), and a test checks that the service accepts a request body
exactly when the schema does. What JSON Schema cannot say (the body size limit,
how deep filters nest and how many conditions they hold, and that 2024-02-30 is
not a day) is in the descriptions, and the service answers 400.
"""

from __future__ import annotations

from typing import Any

from ragrun_query import filters as f
from ragrun_query.search import MAX_EF_SEARCH, MAX_QUERY_CHARS, MODES
from ragrun_query.settings import QuerySettings

OPENAPI_VERSION = "3.1.0"
_NO_NUL = "^[^\\x00]*$"
_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _text(min_length: int = 0) -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": min_length,
        "maxLength": f.MAX_STRING_CHARS,
        "pattern": _NO_NUL,
    }


_NUMBER: dict[str, Any] = {"type": "number", "minimum": -1e38, "maximum": 1e38}
_INT64: dict[str, Any] = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
_TIME: dict[str, Any] = {
    "type": "string",
    "pattern": f.TIME_PATTERN,
    "description": "RFC 3339 time (UTC if no offset)",
}
_TEXT_FIELDS = [name for name, kind in f.FIELDS.items() if kind == "text"]
_INTEGER_FIELDS = [name for name, kind in f.FIELDS.items() if kind == "integer"]
_TIME_FIELDS = [name for name, kind in f.FIELDS.items() if kind == "time"]
_METADATA_FIELD: dict[str, Any] = {
    "type": "string",
    "pattern": f"^metadata\\.[^\\x00]{{1,{f.MAX_METADATA_KEY_CHARS}}}$",
    "description": "metadata.KEY: the object's custom metadata value under KEY",
}


def _field_value_pairs(op: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(field schema, value schema) for each type of field ``op`` applies to."""
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"enum": _TEXT_FIELDS}, _text()),
        (_METADATA_FIELD, _text()),
    ]
    if op != "prefix":
        pairs += [
            ({"enum": _INTEGER_FIELDS}, _INT64),
            ({"enum": _TIME_FIELDS}, _TIME),
            (_METADATA_FIELD, _NUMBER),
        ]
    return pairs


def _comparison(op: str) -> dict[str, Any]:
    key = "values" if op == "in" else "value"
    variants = []
    for field, value in _field_value_pairs(op):
        if op == "in":
            value = {"type": "array", "minItems": 1, "maxItems": f.MAX_IN_VALUES, "items": value}
        variants.append(
            {
                "type": "object",
                "required": ["field", key],
                "additionalProperties": False,
                "properties": {"field": field, key: value},
            }
        )
    return {
        "type": "object",
        "required": [op],
        "additionalProperties": False,
        "properties": {op: {"anyOf": variants}},
    }


def _boolean(op: str) -> dict[str, Any]:
    inner: dict[str, Any] = (
        _ref("Filter") if op == "not" else {"type": "array", "minItems": 1, "items": _ref("Filter")}
    )
    return {
        "type": "object",
        "required": [op],
        "additionalProperties": False,
        "properties": {op: inner},
    }


def _filter_schemas() -> dict[str, Any]:
    shorthand = {
        "type": "object",
        "additionalProperties": False,
        "description": "The original shorthand: every given key must hold; {} matches all.",
        "properties": {key: _nullable(_text(min_length=1)) for key in f.SHORTHAND_KEYS},
    }
    conditions = {f"Filter_{op}": _boolean(op) for op in f.BOOLEANS}
    conditions |= {f"Filter_{op}": _comparison(op) for op in f.COMPARISONS}
    return {
        "Filter": {
            "description": (
                "A condition on documents: and/or/not over comparisons of a field "
                f"({', '.join(f.FIELDS)}, metadata.KEY) with a value, or the shorthand "
                f"object. At most {f.MAX_DEPTH} levels deep and {f.MAX_CONDITIONS} "
                "conditions. Unknown operators and fields are answered with 400."
            ),
            "anyOf": [_ref("FilterShorthand"), *(_ref(name) for name in conditions)],
        },
        "FilterShorthand": shorthand,
        **conditions,
    }


def _search_properties(settings: QuerySettings, default_k: int) -> dict[str, Any]:
    return {
        "query": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_QUERY_CHARS,
            "allOf": [{"pattern": "\\S"}, {"pattern": _NO_NUL}],
            "description": "The question or search text (not only whitespace).",
        },
        "k": _nullable(
            {"type": "integer", "minimum": 1, "maximum": settings.max_k, "default": default_k}
        ),
        "filter": _nullable(_ref("Filter")),
        "mode": _nullable({"enum": list(MODES), "default": "hybrid"}),
        "ef_search": _nullable(
            {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_EF_SEARCH,
                "description": (
                    "HNSW candidate list size for this request (ScaNN: leaves to "
                    f"search); default {settings.ef_search}."
                ),
            }
        ),
        "rerank": _nullable(
            {
                "type": "boolean",
                "description": "Rerank the candidates with the configured reranker "
                "(default: whenever one is configured; 501 when asked and none is).",
            }
        ),
    }


def _response_schemas() -> dict[str, Any]:
    rank = _nullable({"type": "integer", "minimum": 1})
    result = {
        "type": "object",
        "required": [
            "chunk_id",
            "document_id",
            "document",
            "generation",
            "content",
            "score",
            "ranks",
            "metadata",
        ],
        "properties": {
            "chunk_id": {"type": "string"},
            "document_id": {"type": "string"},
            "document": {"type": "string", "description": "gs://bucket/name"},
            "generation": {"type": "integer"},
            "content": {"type": "string"},
            "score": {
                "type": "number",
                "description": "vector: cosine similarity; keyword: ts_rank; "
                "hybrid: Reciprocal Rank Fusion; reranked: the reranker's score",
            },
            "ranks": {
                "type": "object",
                "description": "1-based rank in each leg (null where that leg missed it)",
                "properties": {"vector": rank, "keyword": rank, "rerank": rank},
            },
            "metadata": {"type": "object"},
        },
    }
    citation = {
        "type": "object",
        "required": ["source", "chunk_id", "document_id", "document", "generation"],
        "properties": {
            "source": {"type": "integer", "minimum": 1},
            "chunk_id": {"type": "string"},
            "document_id": {"type": "string"},
            "document": {"type": "string"},
            "generation": {"type": "integer"},
        },
    }
    time = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}
    return {
        "Result": result,
        "QueryResponse": {
            "type": "object",
            "required": ["results", "index_version"],
            "properties": {
                "results": {"type": "array", "items": _ref("Result")},
                "index_version": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "The index version searched (`ragrun index list`).",
                },
            },
        },
        "Citation": citation,
        "AnswerResponse": {
            "type": "object",
            "required": ["answer", "citations", "sources", "model"],
            "properties": {
                "answer": {"type": "string"},
                "citations": {"type": "array", "items": _ref("Citation")},
                "sources": {"type": "array", "items": _ref("Result")},
                "model": {"type": "string"},
            },
        },
        "Document": {
            "type": "object",
            "required": ["document_id", "uri", "bucket", "name", "state", "chunks", "error"],
            "properties": {
                "document_id": {"type": "string"},
                "uri": {"type": "string"},
                "bucket": {"type": "string"},
                "name": {"type": "string"},
                "generation": {"type": "integer", "description": "newest generation seen"},
                "active_generation": _nullable({"type": "integer"}),
                "state": {"enum": ["chunked", "embedding", "indexed", "failed", "deleted"]},
                "content_type": _nullable({"type": "string"}),
                "size_bytes": _nullable({"type": "integer"}),
                "metadata": {"type": "object"},
                "chunks": {
                    "type": "object",
                    "required": ["expected", "written", "served"],
                    "properties": {
                        "expected": {"type": "integer"},
                        "written": {"type": "integer"},
                        "served": {"type": "integer"},
                    },
                },
                "error": _nullable({"type": "string"}),
                "created_at": time,
                "updated_at": time,
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {
                        "message": {"type": "string"},
                        "field": {
                            "type": "string",
                            "description": "where in the request the problem is",
                        },
                        "request_id": {"type": "string"},
                    },
                }
            },
        },
    }


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "The request is malformed; error.field names the culprit.",
        401: "Missing or wrong API key.",
        404: "Not found.",
        413: "The body is larger than the limit.",
        501: "The feature is not configured on this deployment.",
        502: "The model refused the request.",
        503: "A dependency (database, embedding or answer model) is unavailable; retry.",
        504: "The search took longer than the statement timeout.",
    }
    error = {"application/json": {"schema": _ref("Error")}}
    return {str(code): {"description": text[code], "content": error} for code in codes}


def openapi_document(settings: QuerySettings) -> dict[str, Any]:
    """The OpenAPI document for a service running with ``settings``."""
    query_request = {
        "type": "object",
        "required": ["query"],
        "additionalProperties": False,
        "properties": _search_properties(settings, settings.default_k),
    }
    answer_request = {
        "type": "object",
        "required": ["query"],
        "additionalProperties": False,
        "properties": {
            **_search_properties(settings, settings.answer_k),
            "stream": _nullable(
                {
                    "type": "boolean",
                    "description": "Answer as server-sent events (also chosen by "
                    "Accept: text/event-stream).",
                }
            ),
        },
    }
    schemas = {
        "QueryRequest": query_request,
        "AnswerRequest": answer_request,
        **_filter_schemas(),
        **_response_schemas(),
    }
    secured = bool(settings.api_key_list)
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}] if secured else []
    limit = f"Bodies are at most {settings.max_body_bytes} bytes (413 beyond)."
    json_body = {"application/json": {"schema": _ref("QueryRequest")}}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "ragrun query API",
            "version": "1",
            "description": "Retrieval (vector, keyword, hybrid) over documents indexed from "
            "Cloud Storage, answers with citations, and document status. Every response "
            "carries X-Request-Id.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": security,
        "paths": {
            "/v1/query": {
                "post": {
                    "operationId": "query",
                    "summary": "Search the indexed chunks.",
                    "description": limit,
                    "requestBody": {"required": True, "content": json_body},
                    "responses": {
                        "200": {
                            "description": "The best k chunks, best first.",
                            "content": {"application/json": {"schema": _ref("QueryResponse")}},
                        },
                        **_errors(400, 401, 413, 501, 503, 504),
                    },
                }
            },
            "/v1/answer": {
                "post": {
                    "operationId": "answer",
                    "summary": "Answer a question from the retrieved chunks, with citations.",
                    "description": limit + " Streams events sources, delta, done (or "
                    "error) when asked to.",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("AnswerRequest")}},
                    },
                    "responses": {
                        "200": {
                            "description": "The answer, its citations and the sources.",
                            "content": {
                                "application/json": {"schema": _ref("AnswerResponse")},
                                "text/event-stream": {"schema": {"type": "string"}},
                            },
                        },
                        **_errors(400, 401, 413, 501, 502, 503, 504),
                    },
                }
            },
            "/v1/documents/{document_id}": {
                "get": {
                    "operationId": "getDocument",
                    "summary": "A document's state, chunk counts and last error.",
                    "parameters": [
                        {
                            "name": "document_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The document.",
                            "content": {"application/json": {"schema": _ref("Document")}},
                        },
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            "/v1/documents": {
                "get": {
                    "operationId": "findDocument",
                    "summary": "The same, looked up by gs:// URI.",
                    "parameters": [
                        {
                            "name": "uri",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^gs://[^/]+/.+"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The document.",
                            "content": {"application/json": {"schema": _ref("Document")}},
                        },
                        **_errors(400, 401, 404, 503),
                    },
                }
            },
            "/healthz": _open_get("healthz", "The process is up."),
            "/readyz": _open_get("readyz", "The database answers (503 when it does not)."),
            "/openapi.json": _open_get("openapi", "This document."),
        },
    }


def _open_get(operation_id: str, summary: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "security": [],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {}}}}
            },
        }
    }
