"""Run every ingestion benchmark and write bench/results/ingest.md.

From the repository root (``scripts/bench`` does this after installing)::

    .venv/bin/python bench/run_all.py [--quick]

Runs bench/writer_bench.py, bench/pipeline_bench.py, bench/embed_requests_bench.py
and bench/scale_bench.py one after another (each starts its own PostgreSQL and
stack on free ports), keeps their raw figures in bench/results/*.json and
renders the tables with the command and machine. The peers run in .venv-bench,
created here if missing, so they never enter the project's lock. ``--quick``
uses small sizes (a smoke run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import venv

import pipeline_bench
import scale_bench
import writer_bench
from _ingest import BENCH_VENV, REPO, RESULTS, machine

PEER_PACKAGES = ["langchain-postgres", "llama-index-vector-stores-postgres", "psycopg-binary"]


def ensure_bench_venv() -> str | None:
    """Create .venv-bench with the peers; the reason if that failed (peers then unmeasured)."""
    python = BENCH_VENV / "bin" / "python"
    if python.exists():
        return None
    try:
        venv.create(BENCH_VENV, with_pip=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        return f"could not install the peers into {BENCH_VENV}: {e}"
    return None


def run(script: str, *args: str) -> None:
    print(f"== {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(REPO / "bench" / script), *args], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--writer-rows", type=int, default=100_000)
    parser.add_argument("--peer-rows", type=int, default=20_000)
    parser.add_argument("--scale-rows", type=int, default=1_000_000)
    parser.add_argument("--scale-minutes", type=float, default=120)
    parser.add_argument("--pipeline-scale", type=float, default=1.0)
    parser.add_argument("--tpm", type=float, default=300_000)
    args = parser.parse_args()
    if args.quick:
        args.writer_rows, args.peer_rows, args.scale_rows = 5_000, 2_000, 200_000
        args.scale_minutes, args.pipeline_scale = 5, 0.1
    RESULTS.mkdir(parents=True, exist_ok=True)
    problem = ensure_bench_venv()
    if problem:
        print(problem)
    run("writer_bench.py", "--rows", str(args.writer_rows), "--peer-rows", str(args.peer_rows),
        "--json", str(RESULTS / "writer.json"))  # fmt: skip
    run("pipeline_bench.py", "--scale", str(args.pipeline_scale), "--tpm", str(args.tpm),
        "--json", str(RESULTS / "pipeline.json"))  # fmt: skip
    run("embed_requests_bench.py", *(["--quick"] if args.quick else []),
        "--json", str(RESULTS / "embed-requests.json"),
        "--md", str(RESULTS / "embed-requests.md"))  # fmt: skip
    run("scale_bench.py", "--rows", str(args.scale_rows), "--max-minutes",
        str(args.scale_minutes), "--progress", str(RESULTS / "scale.json"))  # fmt: skip
    write_report(" ".join(["bench/run_all.py", *sys.argv[1:]]))


def write_report(command: str) -> None:
    writer = json.loads((RESULTS / "writer.json").read_text())
    pipeline = json.loads((RESULTS / "pipeline.json").read_text())
    scale = json.loads((RESULTS / "scale.json").read_text())
    # embed_requests_bench writes its own page; repeat its tables here without its title.
    embed = (RESULTS / "embed-requests.md").read_text().split("\n", 2)[2].strip()
    done = scale["steps"][-1]["rows"] if scale["steps"] else 0
    text = "\n".join([
        "# Ingestion benchmarks",
        "",
        f"Command: `{command}` (or `scripts/bench`). Machine: {machine()}; "
        f"{datetime.date.today().isoformat()}. Shared machine: compare ratios within a run.",
        "",
        "## Writer vs raw binary COPY and the peers",
        "",
        writer_bench.table(writer),
        "",
        *writer_bench.summary(writer),
        "",
        "## Pipeline and embedding requests",
        "",
        pipeline_bench.report(pipeline.get("hash"), pipeline.get("local"), pipeline.get("vertex")),
        "",
        "## Embedding requests and tokens per minute (bench/embed_requests_bench.py)",
        "",
        embed,
        "",
        f"## Scale: writer core, {scale['dim']} dims, flushes of {scale['max_rows']:,} rows "
        f"(largest size reached: {done:,} of {scale['target']:,})",
        "",
        scale_bench.table(scale["steps"]),
        "",
    ])  # fmt: skip
    (RESULTS / "ingest.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
