"""Writer benchmark: ragrun's writer against raw binary COPY and the Python peers.

Run from the repository root (part of ``scripts/bench``)::

    .venv/bin/python bench/writer_bench.py --rows 100000 --dims 384 768

For each dimension, on one private PostgreSQL 18 + pgvector and the same rows
(synthetic ~1,000-character chunks, 100 per document, clustered unit vectors):

- **raw COPY, indexed**: one psycopg binary ``COPY`` of every row straight into
  ``ragrun.chunks`` with all its indexes (HNSW, GIN on the tsvector, btree), one
  transaction, document rows inserted beforehand and untimed; the tuples are
  built before the clock starts. This is the physical limit for this table.
- **ragrun writer**: ``plan_flush`` + ``write_flush`` on flushes of
  ``RAGRUN_WRITER_MAX_ROWS`` rows (whole vector batches, as the subscriber
  gathers them), one transaction each: document rows, staging COPY, upsert,
  completion bookkeeping.
- **ragrun writer, bulk load**: the same flushes after ``ragrun index defer 1``
  (the HNSW index dropped), then ``ragrun index sync 1`` (one
  ``CREATE INDEX CONCURRENTLY``); rows per second over load and build together;
- the raw COPY and the writer without the HNSW and GIN indexes, for context (what
  index maintenance costs, and the writer's own overhead laid bare);
- the peers (bench/_peers.py in .venv-bench), on the first ``--peer-rows`` rows
  of the same data, in 1,000-row calls, into their own default tables.

Ratios are taken within one run; absolute figures on a shared 2-core machine
are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from _ingest import BENCH_VENV, REPO, Corpus, flushes, make_corpus, postgres
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

from ragrun_common.db import migrate
from ragrun_common.versions import build_index, defer_index, get_version
from ragrun_writer.plan import plan_flush
from ragrun_writer.settings import WriterSettings
from ragrun_writer.store import write_flush

PEERS = ("langchain-postgres PGVectorStore", "langchain-postgres PGVector",
         "llama-index PGVectorStore")  # fmt: skip
_COPY = (
    "COPY ragrun.chunks (chunk_id, document_id, generation, chunk_index, content, tokens,"
    " metadata, model, embedding) FROM STDIN WITH (FORMAT BINARY)"
)
_TYPES = ["text", "text", "int8", "int4", "text", "int4", "jsonb", "text", "vector"]


def connect(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    conn.commit()
    return conn


def reset(conn: psycopg.Connection[Any], dim: int, *, indexed: bool = True) -> None:
    conn.autocommit = True
    conn.execute("DROP SCHEMA IF EXISTS ragrun CASCADE")
    migrate(conn, dim)
    if not indexed:
        conn.execute("DROP INDEX ragrun.chunks_embedding_hnsw")
        conn.execute("DROP INDEX ragrun.chunks_content_tsv")
    conn.execute("CHECKPOINT")
    conn.autocommit = False


def raw_copy(conn: psycopg.Connection[Any], corpus: Corpus) -> float:
    """Seconds for one binary COPY of every row (documents inserted first, untimed)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ragrun.documents (document_id, bucket, name, generation, state,"
            " chunks_expected) VALUES (%s, %s, %s, 1, 'chunked', %s) ON CONFLICT DO NOTHING",
            [(b.document.document_id, b.document.bucket, b.document.name,
              b.document.chunk_count) for b in corpus.batches],
        )  # fmt: skip
    tuples = [
        (c.chunk_id, b.document.document_id, 1, c.index, c.text, c.tokens, Jsonb(c.metadata),
         b.model, v)
        for b in corpus.batches
        for c, v in zip(b.chunks, b.vectors, strict=True)
    ]  # fmt: skip
    start = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur, cur.copy(_COPY) as copy:
        copy.set_types(_TYPES)
        for row in tuples:
            copy.write_row(row)
    return time.perf_counter() - start


def writer(
    conn: psycopg.Connection[Any], corpus: Corpus, max_rows: int
) -> tuple[float, list[float]]:
    """Seconds for the writer core over all flushes, and each flush's seconds."""
    times: list[float] = []
    start = time.perf_counter()
    for group in flushes(corpus.batches, max_rows):
        t = time.perf_counter()
        write_flush(conn, plan_flush(group))
        times.append(time.perf_counter() - t)
    return time.perf_counter() - start, times


def bulk_load(conn: psycopg.Connection[Any], corpus: Corpus, max_rows: int) -> tuple[float, float]:
    """Seconds for the writer with version 1's HNSW index deferred, and for its rebuild."""
    conn.autocommit = True
    version = get_version(conn, 1)
    defer_index(conn, version)
    conn.autocommit = False
    load_s, _ = writer(conn, corpus, max_rows)
    conn.autocommit = True
    start = time.perf_counter()
    build_index(conn, version)
    build_s = time.perf_counter() - start
    conn.autocommit = False
    return load_s, build_s


def check_rows(conn: psycopg.Connection[Any], expected: int) -> None:
    row = conn.execute("SELECT count(*) FROM ragrun.chunks").fetchone()
    conn.commit()
    if row is None or int(row[0]) != expected:
        raise RuntimeError(f"expected {expected} rows, found {row}")


def dump_for_peers(corpus: Corpus, rows: int, folder: Path) -> str:
    meta: list[dict[str, Any]] = []
    vectors: list[np.ndarray[Any, Any]] = []
    for b in corpus.batches:
        for c, v in zip(b.chunks, b.vectors, strict=True):
            meta.append({"id": c.chunk_id, "text": c.text,
                         "metadata": {**c.metadata, "document": b.document.uri}})  # fmt: skip
            vectors.append(v)
        if len(meta) >= rows:
            break
    prefix = str(folder / "rows")
    with open(prefix + ".json", "w") as f:
        json.dump(meta[:rows], f)
    np.save(prefix + ".npy", np.stack(vectors[:rows]))
    return prefix


def peer_python() -> Path | None:
    python = BENCH_VENV / "bin" / "python"
    return python if python.exists() else None


def run_peer(name: str, dsn: str, prefix: str, rows: int, dim: int) -> dict[str, Any]:
    python = peer_python()
    if python is None:
        return {"peer": name, "error": f"not measured: {BENCH_VENV} is missing (scripts/bench)"}
    done = subprocess.run(
        [str(python), str(REPO / "bench" / "_peers.py"), "--dsn", dsn, "--data", prefix,
         "--peer", name, "--rows", str(rows), "--dim", str(dim)],
        capture_output=True, text=True, check=False, timeout=3600,
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"peer": name, "error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def bench_dim(url: str, dim: int, rows: int, peer_rows: int, max_rows: int) -> dict[str, Any]:
    corpus = make_corpus(rows, dim)
    out: dict[str, Any] = {"dim": dim, "rows": rows, "max_rows": max_rows}
    with connect(url) as conn:
        for indexed in (True, False):
            tag = "indexed" if indexed else "noindex"
            reset(conn, dim, indexed=indexed)
            out[f"raw_{tag}_s"] = raw_copy(conn, corpus)
            check_rows(conn, rows)
            reset(conn, dim, indexed=indexed)
            total, times = writer(conn, corpus, max_rows)
            check_rows(conn, rows)
            out[f"writer_{tag}_s"] = total
            if indexed:
                out["flush_p50_s"] = float(np.median(times))
                out["flush_max_s"] = max(times)
            print(f"  dim {dim} {tag}: raw COPY {rows / out[f'raw_{tag}_s']:,.0f} rows/s, "
                  f"writer {rows / total:,.0f} rows/s", flush=True)  # fmt: skip
        reset(conn, dim)
        load_s, build_s = bulk_load(conn, corpus, max_rows)
        check_rows(conn, rows)
        out["bulk_load_s"], out["bulk_build_s"] = load_s, build_s
        print(f"  dim {dim} bulk: load {load_s:.1f} s + index build {build_s:.1f} s = "
              f"{rows / (load_s + build_s):,.0f} rows/s", flush=True)  # fmt: skip
        reset(conn, dim)
    with psycopg.connect(url, autocommit=True) as conn:
        # The peers reuse their tables if present, which would keep the last dimension.
        conn.execute("DROP TABLE IF EXISTS lc_store, langchain_pg_embedding,"
                     " langchain_pg_collection, data_bench CASCADE")  # fmt: skip
    peers: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ragrun-bench-peers-") as tmp:
        prefix = dump_for_peers(corpus, peer_rows, Path(tmp))
        for name in PEERS:
            result = run_peer(name, url, prefix, peer_rows, dim)
            print(f"  dim {dim} peer {json.dumps(result)}", flush=True)
            peers.append(result)
    out["peers"] = peers
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| dim | what | rows | rows/s | vs raw COPY (indexed) |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in results:
        n, raw = r["rows"], r["rows"] / r["raw_indexed_s"]

        def line(what: str, rows: int, rate: float, dim: int = r["dim"], raw: float = raw) -> str:
            return f"| {dim} | {what} | {rows:,} | {rate:,.0f} | {rate / raw:.3f}x |"

        lines.append(line("raw binary COPY, HNSW+GIN indexed table", n, raw))
        lines.append(line(f"**ragrun writer** (flushes of {r['max_rows']:,} rows)", n,
                          n / r["writer_indexed_s"]))  # fmt: skip
        if "bulk_load_s" in r:
            bulk = n / (r["bulk_load_s"] + r["bulk_build_s"])
            what = (f"**ragrun writer, bulk load** (index deferred, then built: "
                    f"{r['bulk_load_s']:.0f} s + {r['bulk_build_s']:.0f} s)")  # fmt: skip
            lines.append(line(what, n, bulk))
        lines.append(line("raw binary COPY, no HNSW/GIN (context)", n, n / r["raw_noindex_s"]))
        lines.append(line("ragrun writer, no HNSW/GIN (context)", n, n / r["writer_noindex_s"]))
        for p in r["peers"]:
            if "error" in p:
                lines.append(f"| {r['dim']} | {p['peer']} | - | not measured: {p['error']} | - |")
            else:
                lines.append(line(p["peer"] + " (1,000-row calls, no vector index)",
                                  int(p["rows"]), float(p["rows_per_s"])))  # fmt: skip
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> list[str]:
    out = []
    for r in results:
        n = r["rows"]
        ours = n / r["writer_indexed_s"]
        ratio = ours / (n / r["raw_indexed_s"])
        rates = [float(p["rows_per_s"]) for p in r["peers"] if "rows_per_s" in p]
        peer = f"{ours / max(rates):.1f}x the fastest peer" if rates else "no peer measured"
        if "bulk_load_s" in r and rates:
            bulk = n / (r["bulk_load_s"] + r["bulk_build_s"])
            peer += f" (bulk load: {bulk / max(rates):.1f}x)"
        out.append(f"- {r['dim']} dims: writer {ratio:.2f}x raw COPY (goal >= 0.9x), {peer} "
                   f"(goal >= 10x); flush p50 {r['flush_p50_s'] * 1000:.0f} ms, "
                   f"max {r['flush_max_s'] * 1000:.0f} ms")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--peer-rows", type=int, default=20_000)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args()
    max_rows = WriterSettings().max_rows
    results = []
    with postgres() as server:
        for dim in args.dims:
            results.append(bench_dim(server.url, dim, args.rows, args.peer_rows, max_rows))
    print(table(results))
    print("\n".join(summary(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("RAGRUN_LOG_LEVEL", "WARNING")
    main()
