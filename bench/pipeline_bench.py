"""Pipeline benchmarks through the whole local stack (emulators, PostgreSQL, services).

Run from the repository root (part of ``scripts/bench``; needs the Pub/Sub emulator)::

    .venv/bin/python bench/pipeline_bench.py

- **end to end, hash embedder**: chunks/s from the first upload to the last row
  committed, for a mixed corpus (many small files and a few large ones).
- **end to end, local model** (all-MiniLM-L6-v2): the same, on a smaller corpus,
  as a ratio to the model's own throughput on the same chunk texts (read back
  from the database), embedded in this process in requests of 250 texts as the
  embedder sends them.
- **embedding requests**: the mixed corpus through ``vertex:text-embedding-005``
  pointed at the local Vertex stand-in (``VertexStub``), which counts requests;
  the minimum is max(ceil(texts / 250), ceil(tokens / 20,000)) with tokens as
  ``ragrun_common.tokens.count_tokens`` counts them.
- **tokens per minute under a quota**: the same through a stand-in that enforces a
  tokens-per-minute quota (429 beyond it, over a 10 s sliding window) with
  ``RAGRUN_EMBED_TPM`` set to that quota; tokens accepted per minute between the
  first and the last accepted request, and the number of 429 answers.

Each run first indexes one warm-up file (model loaded, connections open) and
starts the clock after it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from _ingest import text

from ragrun_cli.stack import LocalStack, temporary_stack
from ragrun_common.embeddings.base import Task
from ragrun_common.gcs import storage_client
from ragrun_common.testing.vertex_stub import VertexStub
from ragrun_common.tokens import count_tokens

SERVICES = ("chunker", "embedder", "writer")


@dataclass(frozen=True)
class Corpus:
    files: dict[str, str]


def mixed_corpus(small: int, large: int, large_chars: int, seed: int = 3) -> Corpus:
    """``small`` files of 300-3,000 characters and ``large`` files of ``large_chars``."""
    rng = random.Random(seed)
    files = {f"small/{i:05d}.txt": text(rng, rng.randint(300, 3000)) for i in range(small)}
    for i in range(large):
        paragraphs = [text(rng, 1500) for _ in range(large_chars // 1500)]
        files[f"large/{i:03d}.txt"] = "\n\n".join(paragraphs)
    return Corpus(files)


class QuotaStub(VertexStub):
    """The Vertex stand-in with a tokens-per-minute quota: 429 beyond it (10 s window)."""

    WINDOW_S = 10.0

    def __init__(self, tokens_per_minute: float) -> None:
        super().__init__()
        self.budget = tokens_per_minute * self.WINDOW_S / 60.0
        self.window: collections.deque[tuple[float, int]] = collections.deque()
        self.throttled = 0
        self.accepted: list[tuple[float, int]] = []
        self._quota_lock = threading.Lock()

    def _handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        try:
            instances = json.loads(body).get("instances", [])
            tokens = sum(count_tokens(str(i.get("content", ""))) for i in instances)
        except (ValueError, AttributeError):
            tokens = 0
        now = time.monotonic()
        with self._quota_lock:
            while self.window and self.window[0][0] < now - self.WINDOW_S:
                self.window.popleft()
            if tokens and sum(t for _, t in self.window) + tokens > self.budget:
                self.throttled += 1
                error = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                                   "message": "Quota exceeded for tokens per minute."}}  # fmt: skip
                return 429, json.dumps(error).encode()
            self.window.append((now, tokens))
        status, answer = super()._handle(path, headers, body)
        if status == 200:
            with self._quota_lock:
                self.accepted.append((time.monotonic(), tokens))
        return status, answer


def stack(
    embeddings: str, extra_env: dict[str, str] | None = None
) -> contextlib.AbstractContextManager[LocalStack]:
    return temporary_stack(
        "ragrun-bench-stack-", embeddings=embeddings, bucket="bench", services=SERVICES,
        extra_env=extra_env or {},
    )  # fmt: skip


def upload(local: LocalStack, files: dict[str, str]) -> None:
    env = local.env()
    bucket = storage_client(env["GOOGLE_CLOUD_PROJECT"]).bucket(env["RAGRUN_BUCKET"])
    items = list(files.items())

    def put(part: list[tuple[str, str]]) -> None:
        for name, data in part:
            bucket.blob(name).upload_from_string(data, content_type="text/plain")

    threads = [threading.Thread(target=put, args=(items[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def all_settled(conn: psycopg.Connection[Any], names: list[str]) -> bool:
    """Whether every named document is indexed or failed."""
    row = conn.execute(
        "SELECT count(*) FROM ragrun.documents"
        " WHERE name = ANY(%s) AND state IN ('indexed', 'failed')",
        (names,),
    ).fetchone()
    return row is not None and int(row[0]) == len(names)


def wait_indexed(local: LocalStack, names: list[str], timeout_s: float) -> float:
    """Wait until every named document is indexed (or failed); the time it happened."""
    url = local.env()["DATABASE_URL"]
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            if all_settled(conn, names):
                return time.monotonic()
            time.sleep(0.2)
    for name, code in local.failed_services().items():
        print(f"  service {name} exited with {code}")
    raise TimeoutError(f"{len(names)} documents not indexed within {timeout_s:.0f} s")


def chunk_texts(local: LocalStack, names: list[str]) -> list[str]:
    with psycopg.connect(local.env()["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT c.content FROM ragrun.chunks c JOIN ragrun.documents d USING (document_id)"
            " WHERE d.name = ANY(%s) ORDER BY c.document_id, c.chunk_index",
            (names,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def timed_run(local: LocalStack, corpus: Corpus, timeout_s: float) -> dict[str, Any]:
    upload(local, {"warmup/0.txt": text(random.Random(1), 3000)})
    wait_indexed(local, ["warmup/0.txt"], 300)
    names = list(corpus.files)
    start = time.monotonic()
    upload(local, corpus.files)
    end = wait_indexed(local, names, timeout_s)
    texts = chunk_texts(local, names)
    seconds = end - start
    return {"files": len(names), "chunks": len(texts), "seconds": seconds,
            "chunks_per_s": len(texts) / seconds, "texts": texts}  # fmt: skip


def bench_hash(corpus: Corpus) -> dict[str, Any]:
    with stack("hash") as local:
        result = timed_run(local, corpus, 900)
    result.pop("texts")
    return result


def bench_local(corpus: Corpus) -> dict[str, Any]:
    from ragrun_common.embeddings.local import LocalEmbedder

    with stack("local") as local:
        result = timed_run(local, corpus, 1800)
    texts = result.pop("texts")
    model = LocalEmbedder()
    model.embed(texts[:16], Task.DOCUMENT)  # load the model before the clock starts
    start = time.monotonic()
    for lo in range(0, len(texts), 250):
        model.embed(texts[lo : lo + 250], Task.DOCUMENT)
    own = len(texts) / (time.monotonic() - start)
    return {**result, "model_chunks_per_s": own, "ratio": result["chunks_per_s"] / own}


def bench_vertex(corpus: Corpus, tpm: float) -> dict[str, Any]:
    with QuotaStub(tpm) as stub:
        env = {
            "RAGRUN_VERTEX_BASE_URL": stub.base_url,
            "RAGRUN_VERTEX_ACCESS_TOKEN": "x",
            "RAGRUN_EMBEDDING_DIM": "32",
            "RAGRUN_EMBED_TPM": str(int(tpm)),
        }
        with stack("vertex:text-embedding-005", env) as local:
            upload(local, {"warmup/0.txt": text(random.Random(1), 3000)})
            wait_indexed(local, ["warmup/0.txt"], 300)
            time.sleep(stub.WINDOW_S)  # the warm-up request leaves the quota window
            stub.clear()
            with stub._quota_lock:
                stub.accepted.clear()
                stub.throttled = 0
            names = list(corpus.files)
            start = time.monotonic()
            upload(local, corpus.files)
            end = wait_indexed(local, names, 1800)
            texts = chunk_texts(local, names)
            requests = [r for r in stub.requests if r.status == 200]
            with stub._quota_lock:
                accepted = list(stub.accepted)
                throttled = stub.throttled
    tokens = sum(count_tokens(t) for t in texts)
    minimum = max(math.ceil(len(texts) / 250), math.ceil(tokens / 20_000))
    span = accepted[-1][0] - accepted[0][0] if len(accepted) > 1 else 0.0
    # tokens sent after the first accepted request, over the time they took
    reached = sum(t for _, t in accepted[1:]) / span * 60 if span else 0.0
    return {
        "files": len(names), "chunks": len(texts), "tokens": tokens,
        "requests": len(requests), "minimum": minimum,
        "requests_per_1000": 1000 * len(requests) / len(texts),
        "minimum_per_1000": 1000 * minimum / len(texts),
        "texts_per_request": len(texts) / max(len(requests), 1),
        "tokens_per_request": tokens / max(len(requests), 1),
        "tpm_quota": tpm, "tpm_reached": reached, "throttled_429": throttled,
        "seconds": end - start,
    }  # fmt: skip


def report(hashed: dict[str, Any] | None, local: dict[str, Any] | None,
           vertex: dict[str, Any] | None) -> str:  # fmt: skip
    lines = ["| run | files | chunks | seconds | chunks/s | notes |",
             "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    if hashed:
        lines.append(f"| e2e, hash embedder | {hashed['files']} | {hashed['chunks']:,} "
                     f"| {hashed['seconds']:.1f} | {hashed['chunks_per_s']:,.0f} | |")  # fmt: skip
    if local:
        lines.append(f"| e2e, local model | {local['files']} | {local['chunks']:,} "
                     f"| {local['seconds']:.1f} | {local['chunks_per_s']:,.1f} "
                     f"| model alone {local['model_chunks_per_s']:,.1f} chunks/s: "
                     f"**{local['ratio']:.2f}x** (goal >= 0.9x) |")  # fmt: skip
    if vertex:
        v = vertex
        lines += ["", "| embedding requests (Vertex stand-in) | value |", "|---|---:|",
                  f"| files / chunks / tokens | {v['files']} / {v['chunks']:,} / {v['tokens']:,} |",
                  f"| requests made | {v['requests']} |",
                  f"| minimum the limits allow | {v['minimum']} |",
                  f"| requests per 1,000 chunks (minimum) | {v['requests_per_1000']:.2f} "
                  f"({v['minimum_per_1000']:.2f}) |",
                  f"| ratio to minimum (goal <= 1.05x) | **{v['requests'] / v['minimum']:.3f}x** |",
                  f"| texts / tokens per request | {v['texts_per_request']:.0f} / "
                  f"{v['tokens_per_request']:,.0f} |",
                  f"| TPM quota / reached (goal >= 90%) | {v['tpm_quota']:,.0f} / "
                  f"{v['tpm_reached']:,.0f} (**{v['tpm_reached'] / v['tpm_quota']:.0%}**) |",
                  f"| 429 answers | {v['throttled_429']} |"]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["hash", "local", "vertex"], nargs="+",
                        default=["hash", "local", "vertex"])  # fmt: skip
    parser.add_argument("--tpm", type=float, default=300_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--scale", type=float, default=1.0, help="corpus size factor")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    if "hash" in args.only:
        out["hash"] = bench_hash(mixed_corpus(int(400 * args.scale), 4, int(200_000 * args.scale)))
        print(f"  hash: {out['hash']}", flush=True)
    if "local" in args.only:
        out["local"] = bench_local(
            mixed_corpus(int(100 * args.scale), 3, int(120_000 * args.scale))
        )
        print(f"  local: {out['local']}", flush=True)
    if "vertex" in args.only:
        corpus = mixed_corpus(int(300 * args.scale), 5, int(250_000 * args.scale))
        out["vertex"] = bench_vertex(corpus, args.tpm)
        print(f"  vertex: {out['vertex']}", flush=True)
    print(report(out.get("hash"), out.get("local"), out.get("vertex")))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("RAGRUN_LOG_LEVEL", "WARNING")
    main()
