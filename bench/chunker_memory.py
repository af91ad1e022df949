"""Peak memory of the chunker (functions-framework process tree) on large and many objects.

Starts the real local stack (hash embeddings), uploads one large text object
through fake-gcs-server and waits until the chunker has published all of its
batches, then uploads many small text objects and waits until all are
chunked. After each scenario it reads the high-water mark of resident memory
(``VmHWM`` in ``/proc/<pid>/status``) of every process of the chunker's tree
(the gunicorn arbiter and its worker) and prints a table, which it also writes
to ``bench/results/chunker-memory.md`` with the command that produced it.

    .venv/bin/python bench/chunker_memory.py --text-mb 1024 --files 10000

Not a test: it takes minutes. ``--in-process-mb N`` instead times the chunker's
pure path (streamed sections, chunks, batches encoded as published) on N MiB of
the same text in this process, without the stack, and prints MB/s.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402

from tests.conftest import Stack, started_stack, wait_for  # noqa: E402

RESULTS = REPO / "bench" / "results" / "chunker-memory.md"
VOCABULARY = ["river", "granite", "lantern", "orbit", "meadow", "cipher", "harbor", "quartz"]


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            out.extend(tree(int(child)))
    return out


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_mib(stack: Stack, service: str = "chunker") -> float:
    """Largest VmHWM among a service's processes, MiB (for the chunker: its worker)."""
    pid = stack.local.procs[service].pid
    return max(status_kib(p, "VmHWM") for p in tree(pid)) / 1024


WORKERS = ("chunker", "embedder", "writer")


def peaks(stack: Stack) -> tuple[str, ...]:
    return tuple(f"{peak_mib(stack, name):.0f}" for name in WORKERS)


def documents(stack: Stack) -> tuple[int, int]:
    """(indexed, all) documents in the database."""
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'indexed'), count(*) FROM ragrun.documents"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def chunked_count(stack: Stack) -> int:
    log = stack.local.log_dir / "chunker.log"
    if not log.exists():
        return 0
    with log.open("rb") as f:
        return sum(line.count(b'"chunker.chunked"') for line in f)


def failures(stack: Stack) -> list[str]:
    log = stack.local.log_dir / "chunker.log"
    with log.open("rb") as f:
        return [line.decode()[:300] for line in f if b'"chunker.failed"' in line]


def write_text(path: Path, megabytes: int) -> None:
    """A text file of paragraphs of words, written without holding it."""
    paragraph = (" ".join(f"{VOCABULARY[k % 8]}{k % 997}" for k in range(150)) + ".\n\n").encode()
    block = paragraph * (1024 * 1024 // len(paragraph) + 1)
    block = block[: 1024 * 1024]
    with path.open("wb") as f:
        for _ in range(megabytes):
            f.write(block)


def in_process(megabytes: int, chunk_tokens: int) -> None:
    """Print how fast the chunker's pure path cuts ``megabytes`` MiB of generated text."""
    from ragrun_chunker.chunking import ChunkingConfig
    from ragrun_chunker.core import Limits, stream_batches
    from ragrun_common.batching import BatchLimits
    from ragrun_common.contracts import DocumentRef

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.txt"
        write_text(path, megabytes)
        document = DocumentRef(bucket="b", name="large.txt", generation=1, chunking="bench")
        config = ChunkingConfig(max_tokens=chunk_tokens)
        started = time.perf_counter()
        with path.open("rb") as f:
            blocks = iter(lambda: f.read(4 * 1024 * 1024), b"")
            limits = Limits(max_chunks=10_000_000)
            stream = stream_batches(document, "text/plain", blocks, config, limits, BatchLimits())
            chunks = sum(len(batch.chunks) for batch in stream if batch.encode())
        seconds = time.perf_counter() - started
    rate = megabytes * 1.048576 / seconds
    print(f"{megabytes} MiB, {chunks} chunks in {seconds:.1f} s: {rate:.1f} MB/s")  # noqa: T201


def drain(stack: Stack, args: argparse.Namespace, started: float) -> str:
    """Seconds from ``started`` until every document is indexed, if ``--drain``."""
    if not args.drain:
        return "-"

    def done() -> bool:
        indexed, total = documents(stack)
        return indexed == total

    wait_for(done, args.timeout, "every document indexed")
    return f"{time.monotonic() - started:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text-mb", type=int, default=1024, help="size of the large text object")
    parser.add_argument("--files", type=int, default=10_000, help="number of small text objects")
    parser.add_argument("--chunk-tokens", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--in-process-mb", type=int, default=0, help="time the pure path only")
    parser.add_argument(
        "--drain", action="store_true", help="also wait until every document is indexed"
    )
    parser.add_argument(
        "--defer-index",
        action="store_true",
        help="`ragrun index defer 1` before the uploads, `ragrun index sync 1` at the end",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.in_process_mb:
        in_process(args.in_process_mb, args.chunk_tokens)
        return

    env = {
        "RAGRUN_MAX_CHUNKS": str(10_000_000),
        "RAGRUN_CHUNK_TOKENS": str(args.chunk_tokens),
        "RAGRUN_LOG_LEVEL": "INFO",
    }
    rows: list[tuple[str, ...]] = []
    with started_stack(embeddings="hash", bucket="bench-memory", extra_env=env) as stack:
        bucket = stack.bucket()
        rows.append(("idle", "-", "-", "-", *peaks(stack)))
        if args.defer_index:
            stack.cli("index", "defer", "1")

        if args.text_mb:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "large.txt"
                write_text(path, args.text_mb)
                blob = bucket.blob("bench/large.txt")
                blob.chunk_size = 32 * 1024 * 1024
                blob.upload_from_filename(str(path), content_type="text/plain")
            started = time.monotonic()
            before = chunked_count(stack)
            wait_for(
                lambda: chunked_count(stack) > before or bool(failures(stack)),
                args.timeout,
                "the large object chunked",
            )
            assert not failures(stack), failures(stack)
            seconds = time.monotonic() - started
            indexed = drain(stack, args, started)
            rows.append(
                (f"one {args.text_mb} MiB text object", "1", f"{seconds:.0f}", indexed,
                 *peaks(stack))
            )  # fmt: skip

        if args.files:
            before = chunked_count(stack)
            started = time.monotonic()

            def put(i: int) -> None:
                text = f"Small file {i}. " + " ".join(VOCABULARY[(i + k) % 8] for k in range(200))
                bucket.blob(f"bench/small/{i:05}.txt").upload_from_string(text)

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(put, range(args.files)))
            wait_for(
                lambda: chunked_count(stack) - before >= args.files,
                args.timeout,
                f"{args.files} small objects chunked",
            )
            seconds = time.monotonic() - started
            indexed = drain(stack, args, started)
            rows.append(
                (f"{args.files} small text objects", str(args.files), f"{seconds:.0f}", indexed,
                 *peaks(stack))
            )  # fmt: skip
        if args.defer_index:
            started = time.monotonic()
            stack.cli("index", "sync", "1", timeout=args.timeout)
            rows.append(("HNSW index built (`ragrun index sync 1`)", "-", "-",
                         f"{time.monotonic() - started:.0f}", *peaks(stack)))  # fmt: skip

    command = ".venv/bin/python bench/chunker_memory.py " + shlex.join(sys.argv[1:])
    table = [
        "| scenario | objects | seconds to chunked | seconds to indexed "
        "| chunker | embedder | writer |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    text = "\n".join(table)
    print(text)  # noqa: T201 - a benchmark's output
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Chunker peak memory\n\n"
        f"Command: `{command}`\n\n"
        f"Machine: {os.cpu_count()} cores, shared; hash embeddings; chunk tokens "
        f"{args.chunk_tokens}; gunicorn gthread worker (THREADS default).\n"
        "Worker columns: peak RSS (VmHWM of the service's process tree, MiB), a high-water "
        "mark: each row includes the rows above it.\n\n"
        f"{text}\n"
    )


if __name__ == "__main__":
    main()
