"""Re-embed without downtime: build a new index version while queries run, then switch.

The whole stack (hash embeddings, 384 dimensions) indexes the samples and a
few dozen generated notes. A thread queries the REST endpoint without pause
while ``ragrun index create --embeddings hash --dim 16`` fills and indexes
version 2 from the stored chunk text and ``ragrun index activate 2`` switches
to it. Every answer must succeed, carry results, and come from exactly one
version: each vector score is the cosine of the query and the passage under
the model of the version the answer names (16 hashed dimensions collide, so
the two models score differently). Then the embedder and writer switch to
the new model and a new upload lands in version 2.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pytest
import requests

from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.hashing import HashEmbedder
from tests.conftest import SAMPLES, Stack, started_stack, wait_for

NEW_DIM = 16
QUERIES = [
    "How do I replay a subscription?",
    "granite harbor lantern",
    "what happens to a poison message",
    "chunk size settings",
]
MODELS = {1: HashEmbedder(384), 2: HashEmbedder(NEW_DIM)}


@pytest.fixture(scope="module")
def stack(pubsub_emulator_available: None) -> Iterator[Stack]:
    small_chunks = {"RAGRUN_CHUNK_TOKENS": "48", "RAGRUN_CHUNK_OVERLAP": "8"}
    with started_stack(
        embeddings="hash", bucket="versions-docs", extra_env=small_chunks
    ) as running:
        yield running


@dataclass
class Answer:
    query: str
    status: int
    body: dict[str, Any]


class QueryLoop(threading.Thread):
    """Queries the service back to back until stopped, keeping every answer."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.answers: list[Answer] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        i = 0
        with requests.Session() as session:
            while not self.stopping.is_set():
                query = QUERIES[i % len(QUERIES)]
                mode = "vector" if i % 2 == 0 else "hybrid"
                i += 1
                try:
                    response = session.post(
                        f"{self.url}/v1/query",
                        json={"query": query, "k": 5, "mode": mode},
                        timeout=30,
                    )
                    self.answers.append(Answer(query, response.status_code, response.json()))
                except (requests.RequestException, ValueError) as e:
                    self.errors.append(f"{query}: {e}")

    def versions(self) -> list[int]:
        return [a.body.get("index_version", 0) for a in self.answers]


def cosine(model: HashEmbedder, query: str, passage: str) -> float:
    q, p = model.embed([query, passage], Task.DOCUMENT)
    return float(np.dot(q, p))


def upload_corpus(stack: Stack) -> list[str]:
    bucket = stack.bucket()
    names = [p.name for p in sorted(SAMPLES.iterdir())]
    for name in names:
        bucket.blob(name).upload_from_filename(str(SAMPLES / name))
    words = ["river", "granite", "lantern", "orbit", "meadow", "cipher", "harbor", "quartz"]
    for i in range(40):
        text = "\n\n".join(
            " ".join(words[(i + j + k) % len(words)] for k in range(12)) + f" note {i} part {j}."
            for j in range(6)
        )
        bucket.blob(f"notes/note-{i:02d}.txt").upload_from_string(text, content_type="text/plain")
        names.append(f"notes/note-{i:02d}.txt")
    return names


def all_indexed(stack: Stack, count: int) -> bool:
    status = stack.status()
    return len(status) == count and all(r["state"] == "indexed" for r in status.values())


def test_reembed_without_downtime(stack: Stack) -> None:
    names = upload_corpus(stack)
    wait_for(lambda: all_indexed(stack, len(names)), 240, "the corpus to be indexed")
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        row = conn.execute("SELECT count(*) FROM ragrun.chunks").fetchone()
    chunks = int(row[0]) if row else 0
    assert chunks > 100

    loop = QueryLoop(stack.query_url)
    loop.start()
    try:
        wait_for(lambda: len(loop.answers) >= 10, 60, "queries before the build")
        created = stack.cli("index", "create", "--embeddings", "hash", "--dim", str(NEW_DIM))
        assert f"version 2 (hash, {NEW_DIM} dimensions) is ready: {chunks}/{chunks}" in (
            created.stdout
        )
        assert f"{chunks}/{chunks} embedded" in created.stderr  # the progress line
        during_build = len(loop.answers)
        listed = json.loads(stack.cli("index", "list", "--json").stdout)
        assert [(v["version"], v["active"], v["vectors"]) for v in listed] == [
            (1, True, chunks),
            (2, False, chunks),
        ]
        assert listed[1]["embeddings"] == "hash" and listed[1]["dim"] == NEW_DIM

        activated = stack.cli("index", "activate", "2")
        assert f"version 2 is active ({chunks}/{chunks} chunks)" in activated.stdout
        switched = len(loop.answers)
        wait_for(lambda: loop.versions()[-10:] == [2] * 10, 60, "queries on version 2")
    finally:
        loop.stopping.set()
        loop.join(timeout=60)

    assert loop.errors == []
    assert during_build > 10 and switched > during_build  # queries ran through the build
    assert [a.status for a in loop.answers] == [200] * len(loop.answers)
    assert all(a.body["results"] for a in loop.answers)
    versions = loop.versions()
    first_new = versions.index(2)
    assert versions == [1] * first_new + [2] * (len(versions) - first_new)
    checked = 0
    for answer in loop.answers:
        if answer.query != QUERIES[0] and answer.query != QUERIES[2]:
            continue  # vector mode ran on even turns: the first and third queries
        model = MODELS[answer.body["index_version"]]
        for result in answer.body["results"]:
            expected = cosine(model, answer.query, result["content"])
            assert result["score"] == pytest.approx(expected, abs=1e-4)
            checked += 1
    assert checked > 50
    # The check has teeth: the two models score the passages differently.
    last = loop.answers[-2] if loop.answers[-1].query not in QUERIES[::2] else loop.answers[-1]
    top = last.body["results"][0]["content"]
    assert cosine(MODELS[1], last.query, top) != pytest.approx(
        cosine(MODELS[2], last.query, top), abs=1e-3
    )

    refused = stack.cli("index", "drop", "2", check=False)
    assert refused.returncode == 2 and "is active" in refused.stderr

    # The pipeline moves to the new model: new documents land in version 2.
    switch = {"RAGRUN_EMBEDDINGS": "hash", "RAGRUN_EMBEDDING_DIM": str(NEW_DIM)}
    for service in ("embedder", "writer"):
        stack.local.start_service(service, switch)
    late = "A zebra crossing the quartz meadow, written after the switch."
    stack.bucket().blob("late.txt").upload_from_string(late, content_type="text/plain")
    wait_for(lambda: all_indexed(stack, len(names) + 1), 120, "the late upload to be indexed")
    found = requests.post(
        f"{stack.query_url}/v1/query",
        json={"query": late, "k": 1, "mode": "vector"},
        timeout=30,
    ).json()
    assert found["index_version"] == 2
    assert found["results"][0]["document"].endswith("/late.txt")
    assert found["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    listed = json.loads(stack.cli("index", "list", "--json").stdout)
    assert [(v["version"], v["vectors"], v["chunks"]) for v in listed] == [
        (1, chunks, chunks + 1),
        (2, chunks + 1, chunks + 1),
    ]
