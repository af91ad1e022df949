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
stopped early still says how far it got.
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
    args = parser.parse_args()
    max_rows = WriterSettings().max_rows
    deadline = time.monotonic() + args.max_minutes * 60
    steps: list[dict[str, Any]] = []
    with postgres() as server, connect(server.url) as conn:
        reset(conn, args.dim)
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
    print(table(steps))
    done = steps[-1]["rows"] if steps else 0
    if done < args.rows:
        print(f"stopped at {done:,} of {args.rows:,} rows after {args.max_minutes:.0f} min")


if __name__ == "__main__":
    os.environ.setdefault("RAGRUN_LOG_LEVEL", "WARNING")
    main()
