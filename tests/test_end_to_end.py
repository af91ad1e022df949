"""Drop files into the bucket, query them: the whole pipeline on real local components.

Uploads go through fake-gcs-server, whose notifications reach the chunker via
a Pub/Sub emulator push subscription; the embedder runs the real
all-MiniLM-L6-v2 model; the writer loads PostgreSQL with pgvector.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import requests

from tests.conftest import SAMPLES, Stack, wait_for
from tests.support.corpora import PDF_PARSE_BROKEN, pdf_parse_test_pdfs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# (object name, question a user might ask about it)
QUESTIONS = {
    "architecture.md": "What does each stage of the pipeline do and why is it shaped this way?",
    "operations.html": "Where do messages go after too many failed delivery attempts?",
    "faq.txt": "Which file formats are supported and how large may a file be?",
    "configuration.md": "Which environment variables configure the project and the emulators?",
    "replay-guide.pdf": "How do I seek a subscription back to a snapshot to replay messages?",
    "papers/01-valid.pdf": "trace-based just-in-time type specialization for dynamic languages",
    "papers/02-valid.pdf": "GaInP/GaAs solar cell with an AlGaAs tunnel junction",
}


@pytest.fixture(scope="module")
def indexed(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Upload the samples and two third-party PDFs plus a broken one; wait for all."""
    pdfs = pdf_parse_test_pdfs(tmp_path_factory.mktemp("pdf-parse"))
    bucket = stack.bucket()
    uploads: dict[str, Path] = {p.name: p for p in SAMPLES.iterdir() if p.is_file()}
    uploads["papers/01-valid.pdf"] = pdfs["01-valid.pdf"]
    uploads["papers/02-valid.pdf"] = pdfs["02-valid.pdf"]
    uploads["papers/broken.pdf"] = pdfs[PDF_PARSE_BROKEN]
    for name, path in uploads.items():
        bucket.blob(name).upload_from_filename(str(path))
    uris = {name: f"gs://{bucket.name}/{name}" for name in uploads}

    def settled() -> bool:
        rows = stack.status()
        return all(rows.get(uri, {}).get("state") in ("indexed", "failed") for uri in uris.values())

    wait_for(settled, timeout_s=600, what="every uploaded document to be indexed or failed")
    return uris


def test_every_supported_document_is_indexed_and_status_says_so(
    stack: Stack, indexed: dict[str, str]
) -> None:
    rows = stack.status()
    for name, uri in indexed.items():
        expected = "failed" if name == "papers/broken.pdf" else "indexed"
        assert rows[uri]["state"] == expected, rows[uri]
    broken = rows[indexed["papers/broken.pdf"]]
    assert "not a readable PDF" in broken["error"]
    text = stack.cli("status").stdout
    assert f"{len(indexed)} document(s): {len(indexed) - 1} indexed, 1 failed" in text


def test_every_chunk_is_stored_exactly_once(stack: Stack, indexed: dict[str, str]) -> None:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        docs = conn.execute(
            "SELECT d.name, d.chunks_expected, count(c.chunk_id), count(DISTINCT c.chunk_index),"
            " min(c.chunk_index), max(c.chunk_index)"
            " FROM ragrun.documents d LEFT JOIN ragrun.chunks c"
            "   ON c.document_id = d.document_id AND c.generation = d.generation"
            " WHERE d.state = 'indexed' GROUP BY d.name, d.chunks_expected"
        ).fetchall()
    assert {name for name, *_ in docs} == set(indexed) - {"papers/broken.pdf"}
    for name, expected, count, distinct, low, high in docs:
        assert expected > 0, name
        assert count == distinct == expected, (name, expected, count, distinct)
        assert (low, high) == (0, expected - 1), name
    # The 14-page paper must be split into many chunks spanning its pages.
    assert {n: e for n, e, *_ in docs}["papers/01-valid.pdf"] > 20


@pytest.mark.parametrize("name", sorted(QUESTIONS))
def test_query_ranks_the_right_document_first(
    stack: Stack, indexed: dict[str, str], name: str
) -> None:
    response = requests.post(
        f"{stack.query_url}/v1/query", json={"query": QUESTIONS[name], "k": 5}, timeout=60
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results, "no results"
    assert results[0]["document"] == indexed[name], [r["document"] for r in results]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_duplicate_notification_changes_nothing(stack: Stack, indexed: dict[str, str]) -> None:
    """At-least-once delivery: the same GCS notification twice leaves the index as it was."""
    from google.cloud import pubsub_v1

    def snapshot() -> list[tuple[str, str]]:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            rows = conn.execute(
                "SELECT chunk_id, md5(content || embedding::text) FROM ragrun.chunks ORDER BY 1"
            ).fetchall()
        return [(a, b) for a, b in rows]

    before = snapshot()
    blob = stack.bucket().get_blob("faq.txt")
    assert blob is not None
    publisher = pubsub_v1.PublisherClient()
    topic = publisher.topic_path(stack.env["GOOGLE_CLOUD_PROJECT"], "ragrun-objects")
    import json

    payload = json.dumps(blob._properties).encode()
    attrs = {
        "eventType": "OBJECT_FINALIZE",
        "payloadFormat": "JSON_API_V1",
        "bucketId": blob.bucket.name,
        "objectId": blob.name,
        "objectGeneration": str(blob.generation),
    }
    for _ in range(2):
        publisher.publish(topic, payload, **attrs).result(timeout=30)
    uri = indexed["faq.txt"]

    def reprocessed() -> bool:
        with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
            row = conn.execute(
                "SELECT updated_at > now() - interval '60 seconds' FROM ragrun.documents"
                " WHERE bucket || '/' || name = %s",
                (uri.removeprefix("gs://"),),
            ).fetchone()
        return bool(row and row[0])

    wait_for(reprocessed, timeout_s=120, what="the duplicate notification to be processed")
    wait_for(lambda: stack.status()[uri]["state"] == "indexed", 120, "faq.txt indexed again")
    assert snapshot() == before
