"""Shared pieces of the ingestion benchmarks: a private PostgreSQL, synthetic chunks.

Every benchmark starts its own embedded PostgreSQL (``ragrun_cli.components.Postgres``)
with its data folder under /tmp and a free port, and stops it when done.
"""

from __future__ import annotations

import contextlib
import os
import platform
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragrun_cli.components import Postgres
from ragrun_common.contracts import Chunk, DocumentRef, VectorBatch, chunk_id

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BENCH_VENV = REPO / ".venv-bench"

_WORDS = [
    "pubsub",
    "subscription",
    "replay",
    "vector",
    "index",
    "chunk",
    "embedding",
    "writer",
    "bucket",
    "object",
    "generation",
    "document",
    "query",
    "latency",
    "throughput",
    "postgres",
    "copy",
    "staging",
    "upsert",
    "hnsw",
    "cosine",
    "token",
    "model",
    "batch",
    "request",
    "quota",
    "minute",
    "second",
    "flush",
    "commit",
    "transaction",
    "retry",
    "deadline",
    "backoff",
    "message",
    "ack",
    "nack",
    "emulator",
    "storage",
    "notification",
    "schema",
]


@contextlib.contextmanager
def postgres() -> Iterator[Postgres]:
    """A private PostgreSQL 18 + pgvector on a free port, removed afterwards."""
    data = Path(tempfile.mkdtemp(prefix="ragrun-bench-pg-", dir="/tmp"))
    os.chmod(data, 0o755)
    server = Postgres(data_dir=data / "pg", log_dir=data)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@dataclass(frozen=True)
class Corpus:
    """Vector batches as the embedder publishes them: one document's chunks, <= 250 each."""

    batches: list[VectorBatch]

    @property
    def rows(self) -> int:
        return sum(len(b.chunks) for b in self.batches)


def text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        size += len(word) + 1
    return " ".join(words)


def make_corpus(
    n_chunks: int,
    dim: int,
    *,
    chunks_per_doc: int = 100,
    chars: int = 1000,
    seed: int = 7,
    bucket: str = "bench",
    start_doc: int = 0,
) -> Corpus:
    """``n_chunks`` chunks of ~``chars`` characters (256-token chunks are ~1,000) in
    documents of ``chunks_per_doc`` chunks, with clustered unit vectors.

    Real embeddings cluster: a document's chunks lie near each other and
    documents near their topic. Each document draws one of 200 topic centroids
    and an offset, each chunk adds noise. (Independent random vectors are the
    worst case for an HNSW graph: inserting them costs about twice as much.)"""
    rng = random.Random(seed + start_doc)
    nrng = np.random.default_rng(seed + start_doc)
    texts = [text(rng, chars) for _ in range(512)]  # reused: content does not matter here
    topics = np.random.default_rng(seed).standard_normal((200, dim), dtype=np.float32)
    batches: list[VectorBatch] = []
    doc = start_doc
    made = 0
    while made < n_chunks:
        count = min(chunks_per_doc, n_chunks - made)
        ref = DocumentRef(
            bucket=bucket,
            name=f"doc-{doc:07d}.txt",
            generation=1,
            content_type="text/plain",
            size=count * chars,
            chunk_count=count,
        )
        topic = topics[int(nrng.integers(len(topics)))]
        centre = topic + 0.5 * nrng.standard_normal(dim, dtype=np.float32)
        vectors = centre + 0.5 * nrng.standard_normal((count, dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for lo in range(0, count, 250):
            hi = min(lo + 250, count)
            chunks = [
                Chunk(
                    chunk_id=chunk_id(bucket, ref.name, 1, i),
                    index=i,
                    text=texts[(made + i) % len(texts)],
                    tokens=chars // 4,
                    metadata={"offset": i * chars},
                )
                for i in range(lo, hi)
            ]
            batches.append(
                VectorBatch(document=ref, chunks=chunks, model="bench", vectors=vectors[lo:hi])
            )
        made += count
        doc += 1
    return Corpus(batches)


def flushes(batches: list[VectorBatch], max_rows: int) -> Iterator[list[VectorBatch]]:
    """Group batches into flushes of at most ``max_rows`` rows, as the writer's
    subscriber does (a batch never splits)."""
    group: list[VectorBatch] = []
    rows = 0
    for batch in batches:
        if group and rows + len(batch.chunks) > max_rows:
            yield group
            group, rows = [], 0
        group.append(batch)
        rows += len(batch.chunks)
    if group:
        yield group


def machine() -> str:
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // (1024 * 1024)
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB RAM, Python {platform.python_version()}"


def vm_hwm_mib(pid: int | str = "self") -> float:
    """Peak resident memory (VmHWM) of a process, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0
