"""Peer vector stores writing the same rows; runs in .venv-bench (not the project's venv).

Invoked by bench/writer_bench.py as
``.venv-bench/bin/python bench/_peers.py --dsn ... --data PREFIX --peer NAME --rows N``
and prints one JSON line: ``{"peer", "rows", "seconds", "rows_per_s"}`` or
``{"peer", "error"}``. Embeddings are precomputed (the same vectors ragrun
writes), handed over with each library's add-with-embeddings call in calls of
1,000 rows, so no model runs. Each peer creates its own table with its default
schema (none of them creates a vector index by default, which only flatters
them against ragrun's HNSW-indexed table).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

import numpy as np

CALL_ROWS = 1000


class Precomputed:
    """A LangChain ``Embeddings`` stand-in: no model, the vectors are given."""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[0.0] * self.dim for _ in texts]

    def embed_query(self, text: str) -> list[float]:  # noqa: ARG002 - interface
        return [0.0] * self.dim

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return self.embed_query(text)


def _load(prefix: str, rows: int) -> tuple[list[dict[str, Any]], list[list[float]]]:
    with open(prefix + ".json") as f:
        meta = json.load(f)[:rows]
    vectors = np.load(prefix + ".npy")[:rows].tolist()
    return meta, vectors


def _timed(calls: Any, rows: int) -> dict[str, float]:
    start = time.perf_counter()
    calls()
    seconds = time.perf_counter() - start
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1)}


def langchain_pgvectorstore(
    dsn: str, meta: list[dict[str, Any]], vectors: list[list[float]], dim: int
) -> dict[str, float]:
    from langchain_postgres import PGEngine, PGVectorStore

    engine = PGEngine.from_connection_string(dsn.replace("postgresql://", "postgresql+psycopg://"))
    engine.init_vectorstore_table("lc_store", dim, overwrite_existing=True)
    embeddings: Any = Precomputed(dim)
    store = PGVectorStore.create_sync(engine, table_name="lc_store", embedding_service=embeddings)

    def run() -> None:
        for lo in range(0, len(meta), CALL_ROWS):
            part = meta[lo : lo + CALL_ROWS]
            store.add_embeddings(
                [m["text"] for m in part],
                vectors[lo : lo + CALL_ROWS],
                metadatas=[m["metadata"] for m in part],
                ids=[str(uuid.uuid5(uuid.NAMESPACE_URL, m["id"])) for m in part],
            )

    return _timed(run, len(meta))


def langchain_pgvector(
    dsn: str, meta: list[dict[str, Any]], vectors: list[list[float]], dim: int
) -> dict[str, float]:
    from langchain_postgres import PGVector

    store = PGVector(
        embeddings=Precomputed(dim),
        connection=dsn.replace("postgresql://", "postgresql+psycopg://"),
        embedding_length=dim,
        collection_name="bench",
        use_jsonb=True,
        pre_delete_collection=True,
    )

    def run() -> None:
        for lo in range(0, len(meta), CALL_ROWS):
            part = meta[lo : lo + CALL_ROWS]
            store.add_embeddings(
                [m["text"] for m in part],
                vectors[lo : lo + CALL_ROWS],
                metadatas=[m["metadata"] for m in part],
                ids=[m["id"] for m in part],
            )

    return _timed(run, len(meta))


def llamaindex_pgvectorstore(
    dsn: str, meta: list[dict[str, Any]], vectors: list[list[float]], dim: int
) -> dict[str, float]:
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.postgres import PGVectorStore

    store = PGVectorStore.from_params(
        connection_string=dsn.replace("postgresql://", "postgresql+psycopg://"),
        async_connection_string=dsn.replace("postgresql://", "postgresql+asyncpg://"),
        table_name="bench",
        embed_dim=dim,
        use_jsonb=True,
    )
    nodes = [
        TextNode(id_=str(uuid.uuid5(uuid.NAMESPACE_URL, m["id"])), text=m["text"],
                 metadata=m["metadata"], embedding=v)
        for m, v in zip(meta, vectors, strict=True)
    ]  # fmt: skip

    def run() -> None:
        for lo in range(0, len(nodes), CALL_ROWS):
            store.add(nodes[lo : lo + CALL_ROWS])

    return _timed(run, len(meta))


PEERS = {
    "langchain-postgres PGVectorStore": langchain_pgvectorstore,
    "langchain-postgres PGVector": langchain_pgvector,
    "llama-index PGVectorStore": llamaindex_pgvectorstore,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--peer", required=True, choices=sorted(PEERS))
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--dim", type=int, required=True)
    args = parser.parse_args()
    meta, vectors = _load(args.data, args.rows)
    try:
        result: dict[str, Any] = PEERS[args.peer](args.dsn, meta, vectors, args.dim)
    except Exception as e:  # a peer failing is a result to report, not a crash
        result = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    print(json.dumps({"peer": args.peer, **result}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
