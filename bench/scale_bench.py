"""Scale benchmark: up to 1,000,000 chunks through the writer core into the real schema.

Run from the repository root (part of ``scripts/bench``; hours on 2 cores with the
HNSW index, so ``--max-minutes`` stops it at a step boundary and the report
gives the largest size reached)::

    .venv/bin/python bench/scale_bench.py --rows 1000000 --dim 384 --max-minutes 45

The writer core (``plan_flush`` + ``write_flush``, flushes of
``RAGRUN_WRITER_MAX_ROWS``) loads ``ragrun.chunks`` with its HNSW and GIN
indexes on a private PostgreSQL, without the emulator: each 100,000-row step is
generated, written and dropped, and the step's rows/s and this process's peak
resident memory (VmHWM) are recorded after it, to ``--progress`` too, so a run
stopped early still says how far it got. ``--bulk`` defers the HNSW index
(``ragrun index defer 1``) and builds it once after the load (``ragrun index
sync 1``), timed separately.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

from _ingest import flushes, make_corpus, postgres, vm_hwm_mib
from writer_bench import connect, reset

from ragrun_common.versions import build_index, defer_index, get_version
from ragrun_writer.plan import plan_flush
from ragrun_writer.settings import WriterSettings
from ragrun_writer.store import write_flush

STEP = 100_000


def table(steps: list[dict[str, Any]]) -> str:
    lines = [
        "| rows loaded | step rows/s | step rows/s vs first step | writer VmHWM (MiB) |",
        "|---:|---:|---:|---:|",
    ]
    first = steps[0]["rows_per_s"] if steps else 1.0
    for s in steps:
        lines.append(
            f"| {s['rows']:,} | {s['rows_per_s']:,.0f} | {s['rows_per_s'] / first:.2f}x "
            f"| {s['vm_hwm_mib']:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--max-minutes", type=float, default=45.0)
    parser.add_argument("--progress", type=Path)
    parser.add_argument("--step", type=int, default=STEP, help="rows per measured step")
    parser.add_argument(
        "--bulk", action="store_true", help="defer the HNSW index, build it after the load"
    )
    args = parser.parse_args()
    max_rows = WriterSettings().max_rows
    deadline = time.monotonic() + args.max_minutes * 60
    steps: list[dict[str, Any]] = []
    with postgres() as server, connect(server.url) as conn:
        reset(conn, args.dim)
        if args.bulk:
            conn.autocommit = True
            defer_index(conn, get_version(conn, 1))
            conn.autocommit = False
        loaded = 0
        while loaded < args.rows and time.monotonic() < deadline:
            n = min(args.step, args.rows - loaded)
            corpus = make_corpus(n, args.dim, start_doc=loaded // 100 + 1, seed=11)
            start = time.perf_counter()
            for group in flushes(corpus.batches, max_rows):
                write_flush(conn, plan_flush(group))
            seconds = time.perf_counter() - start
            del corpus
            gc.collect()
            loaded += n
            steps.append({"rows": loaded, "seconds": round(seconds, 1),
                          "rows_per_s": n / seconds, "vm_hwm_mib": vm_hwm_mib()})  # fmt: skip
            print(f"  scale: {loaded:,} rows, step {n / seconds:,.0f} rows/s, "
                  f"VmHWM {steps[-1]['vm_hwm_mib']:,.0f} MiB", flush=True)  # fmt: skip
            if args.progress:
                args.progress.write_text(json.dumps(
                    {"dim": args.dim, "target": args.rows, "max_rows": max_rows,
                     "steps": steps}, indent=2))  # fmt: skip
        build: dict[str, Any] = {}
        if args.bulk:
            conn.autocommit = True
            start = time.perf_counter()
            build_index(conn, get_version(conn, 1))
            build["build_s"] = round(time.perf_counter() - start, 1)
            load_s = sum(step["seconds"] for step in steps)
            build["rows_per_s_incl_build"] = loaded / (load_s + build["build_s"])
            print(f"  scale: index built in {build['build_s']:,.0f} s; load and build "
                  f"{build['rows_per_s_incl_build']:,.0f} rows/s", flush=True)  # fmt: skip
            if args.progress:
                args.progress.write_text(json.dumps(
                    {"dim": args.dim, "target": args.rows, "max_rows": max_rows, "bulk": True,
                     "steps": steps, **build}, indent=2))  # fmt: skip
    print(table(steps))
    done = steps[-1]["rows"] if steps else 0
    if done < args.rows:
        print(f"stopped at {done:,} of {args.rows:,} rows after {args.max_minutes:.0f} min")


if __name__ == "__main__":
    os.environ.setdefault("RAGRUN_LOG_LEVEL", "WARNING")
    main()
