"""POST /v1/answer with the real google-genai client against a local Gemini endpoint."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from psycopg_pool import ConnectionPool

from ragrun_common.embeddings.hashing import HashEmbedder
from ragrun_common.testing.gemini_stub import GeminiStub, GenerateRequest
from ragrun_query.answer import NO_SOURCES_ANSWER, SYSTEM_INSTRUCTION, citations
from ragrun_query.main import create_app
from ragrun_query.search import Result

DIM = 384
MODEL = "gemini-2.5-flash"


def cite_first_two(request: GenerateRequest) -> str:
    """Answers from the first source's text, citing sources 1 and 2 and a made-up 9."""
    first = re.search(r"^\[1\] \S+ \(chunk \w+\)\n(.+)$", request.prompt, re.MULTILINE)
    assert first is not None
    return f"From the documents: {first.group(1)} [1]. See also [2, 9]."


@pytest.fixture(scope="module")
def gemini() -> Iterator[GeminiStub]:
    with GeminiStub(reply=cite_first_two, stream_pieces=4) as stub:
        yield stub


@pytest.fixture
def answering(make_settings: Any, pool: ConnectionPool, gemini: GeminiStub) -> FlaskClient:
    gemini.clear()
    settings = make_settings(
        answer_model=MODEL,
        vertex_base_url=gemini.base_url,
        vertex_access_token="test-token",
        answer_k=3,
        answer_temperature=0.1,
        answer_max_output_tokens=256,
    )
    return create_app(settings, pool=pool, provider=HashEmbedder(DIM)).test_client()


def events(body: str) -> list[tuple[str, dict[str, Any]]]:
    parsed = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        parsed.append((lines["event"], json.loads(lines["data"])))
    return parsed


def test_without_a_model_answer_is_501(client: FlaskClient) -> None:
    response = client.post("/v1/answer", json={"query": "How do I reduce bloat?"})
    assert response.status_code == 501
    assert "RAGRUN_ANSWER_MODEL" in response.get_json()["error"]["message"]
    # The request is still validated first.
    assert client.post("/v1/answer", json={"k": 1}).status_code == 400


def test_answer_cites_chunks_and_uris(
    answering: FlaskClient, gemini: GeminiStub, corpus: Any
) -> None:
    response = answering.post("/v1/answer", json={"query": "autovacuum table bloat"})
    assert response.status_code == 200
    body = response.get_json()
    sources = body["sources"]
    assert len(sources) == 3  # answer_k
    assert sources[0]["document"] == corpus.postgres.uri
    assert body["answer"].startswith("From the documents: PostgreSQL vacuum and autovacuum")
    assert body["model"] == MODEL
    # [9] names no source and is dropped.
    assert body["citations"] == [
        {
            "source": n,
            "chunk_id": sources[n - 1]["chunk_id"],
            "document_id": sources[n - 1]["document_id"],
            "document": sources[n - 1]["document"],
            "generation": sources[n - 1]["generation"],
        }
        for n in (1, 2)
    ]
    (sent,) = gemini.requests
    assert sent.method == "generateContent"
    assert sent.model == MODEL
    assert sent.system == SYSTEM_INSTRUCTION
    assert "Question: autovacuum table bloat" in sent.prompt
    for source in sources:
        assert source["content"] in sent.prompt
        assert source["document"] in sent.prompt
    assert sent.generation_config["temperature"] == pytest.approx(0.1)
    assert sent.generation_config["maxOutputTokens"] == 256


@pytest.mark.parametrize("how", ["body", "accept"])
def test_answer_streams_server_sent_events(
    answering: FlaskClient, gemini: GeminiStub, how: str
) -> None:
    request: dict[str, Any] = {"query": "dead letter topics", "k": 2}
    headers = {}
    if how == "body":
        request["stream"] = True
    else:
        headers["Accept"] = "text/event-stream"
    response = answering.post("/v1/answer", json=request, headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    stream = events(response.get_data(as_text=True))
    kinds = [kind for kind, _ in stream]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert kinds.count("delta") >= 2  # the stub splits the answer into pieces
    sources = stream[0][1]["sources"]
    assert len(sources) == 2
    text = "".join(data["text"] for kind, data in stream if kind == "delta")
    done = stream[-1][1]
    assert done["answer"] == text
    assert text.startswith("From the documents:")
    assert [c["chunk_id"] for c in done["citations"]] == [s["chunk_id"] for s in sources]
    assert [r.method for r in gemini.requests] == ["streamGenerateContent"]
    assert gemini.requests[0].query == "alt=sse"


def test_explicit_stream_false_wins_over_accept(answering: FlaskClient) -> None:
    response = answering.post(
        "/v1/answer",
        json={"query": "pasta", "stream": False},
        headers={"Accept": "text/event-stream"},
    )
    assert response.mimetype == "application/json"


@pytest.mark.parametrize(
    ("fault", "status"),
    [("429", 503), ("500", 503), ("400", 502), ("403", 502), ("blocked", 502)],
)
@pytest.mark.parametrize("stream", [False, True])
def test_model_failures_map_to_status(
    answering: FlaskClient, gemini: GeminiStub, fault: str, status: int, stream: bool
) -> None:
    if fault == "blocked":
        gemini.block_next()
    else:
        gemini.fail_next(status=int(fault))
    response = answering.post("/v1/answer", json={"query": "pasta", "stream": stream})
    # Also when streaming: the first piece is awaited before the answer starts.
    assert response.status_code == status
    assert response.get_json()["error"]["message"]
    assert "request_id" in response.get_json()["error"]


@pytest.mark.parametrize("stream", [False, True])
def test_an_empty_answer_is_502_streamed_or_not(
    answering: FlaskClient, gemini: GeminiStub, stream: bool
) -> None:
    gemini.reply = lambda _request: ""
    try:
        response = answering.post("/v1/answer", json={"query": "pasta", "stream": stream})
    finally:
        gemini.reply = cite_first_two
    assert response.status_code == 502
    assert "no answer" in response.get_json()["error"]["message"]


def test_stream_that_breaks_off_ends_with_an_error_event(
    answering: FlaskClient, gemini: GeminiStub
) -> None:
    gemini.break_next_stream()
    response = answering.post("/v1/answer", json={"query": "pasta", "stream": True})
    assert response.status_code == 200
    stream = events(response.get_data(as_text=True))
    assert stream[0][0] == "sources"
    assert stream[-1][0] == "error"
    assert "done" not in [kind for kind, _ in stream]


@pytest.mark.parametrize("stream", [False, True])
def test_no_sources_no_model_call(answering: FlaskClient, gemini: GeminiStub, stream: bool) -> None:
    body = {"query": "anything", "filter": {"bucket": "nope"}, "stream": stream}
    response = answering.post("/v1/answer", json=body)
    assert response.status_code == 200
    if stream:
        done = events(response.get_data(as_text=True))[-1][1]
    else:
        done = response.get_json()
        assert done["sources"] == []
    assert done["answer"] == NO_SOURCES_ANSWER
    assert done["citations"] == []
    assert gemini.requests == []


def test_model_down_is_503(make_settings: Any, pool: ConnectionPool) -> None:
    settings = make_settings(
        answer_model=MODEL, vertex_base_url="http://127.0.0.1:1", vertex_access_token="t"
    )
    client = create_app(settings, pool=pool, provider=HashEmbedder(DIM)).test_client()
    response = client.post("/v1/answer", json={"query": "pasta"})
    assert response.status_code == 503


def _result(n: int) -> Result:
    return Result(f"c{n}", f"d{n}", "b", f"n{n}", 1, "text", 0.5, {})


@pytest.mark.parametrize(
    ("answer", "cited"),
    [
        ("No citations.", []),
        ("A [2]. B [1][2]. C [3, 1].", [2, 1, 3]),
        ("Out of range [0] [4] [12345].", []),
        ("Spaced [ 1 ] is not a citation; [1,2] is.", [1, 2]),
        ("Other digits [\uff11] [\u0662] are not sources 1 and 2; [3] is.", [3]),
    ],
)
def test_citation_parsing(answer: str, cited: list[int]) -> None:
    sources = [_result(n) for n in (1, 2, 3)]
    assert [c["source"] for c in citations(answer, sources)] == cited
