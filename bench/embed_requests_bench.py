"""Embedding requests per 1,000 chunks and tokens per minute under a quota (issue #6, bench 3).

Run from the repository root (part of ``scripts/bench``; needs the Pub/Sub emulator)::

    .venv/bin/python bench/embed_requests_bench.py [--quick] [--runs NAME ...]

A deterministic mixed corpus (many small files of a few sentences, a handful of
1-5 MB ones) goes through the whole local stack: fake-gcs-server notifications,
the chunker, the Pub/Sub emulator, the embedder with
``RAGRUN_EMBEDDINGS=vertex:text-embedding-005`` pointed at a local Vertex AI
stand-in (``VertexStub``), the writer and PostgreSQL. The stand-in records every
request; this script adds a tokens-per-minute quota to it (:class:`QuotaStub`).

- **requests**: accepted requests per 1,000 chunks against the minimum the
  limits allow, max(ceil(chunks / 250), ceil(tokens / 20,000)), tokens as
  ``ragrun_common.tokens.count_tokens`` estimates them; goal <= 1.05x.
- **tokens per minute**: with the stand-in answering 429 beyond a quota of Q
  tokens in any 60 s (a sliding window) and the embedder's ``RAGRUN_EMBED_TPM``
  set, tokens accepted per minute from the first to the last accepted request,
  as a share of Q (goal >= 90%), and the 429 answers.

Every run is one fresh stack; the clock starts after a warm-up file is indexed.
The named runs (``RUNS``) differ only in environment variables; the ``tuned``
ones show which settings close the gaps the default ones leave.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import itertools
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from _ingest import REPO, RESULTS, machine
from pipeline_bench import all_settled, upload, wait_indexed

from ragrun_cli.stack import LocalStack, temporary_stack
from ragrun_common.batching import BatchLimits, plan_batches
from ragrun_common.testing.vertex_stub import VertexStub
from ragrun_common.tokens import count_tokens

MODEL = "text-embedding-005"
LIMITS = BatchLimits()  # Vertex AI's published per-request limits: 250 texts, 20,000 tokens
TEXT_BINS = [(1, 1), (2, 9), (10, 49), (50, 99), (100, 149), (150, 199), (200, 249), (250, 250)]


@dataclass(frozen=True)
class RunSpec:
    """Environment for the stack ("{tpm}": the quota, "{tpm_under}": budget_under(quota))
    and whether the stand-in enforces the quota."""

    env: dict[str, str]
    quota: bool


# Gathers that can hold many requests' worth of chunks, and that wait for them.
TUNED = {
    "RAGRUN_EMBEDDER_MAX_MESSAGES": "2000",
    "RAGRUN_EMBEDDER_FLOW_MESSAGES": "4000",
    "RAGRUN_EMBEDDER_GATHER_REQUESTS": "16",
    "RAGRUN_EMBEDDER_MAX_LATENCY_MS": "2000",
}
RUNS: dict[str, RunSpec] = {
    "requests": RunSpec({}, quota=False),
    "quota": RunSpec({"RAGRUN_EMBED_TPM": "{tpm}"}, quota=True),
    "requests-tuned": RunSpec(TUNED, quota=False),
    # The client budget one bucket (see budget_under) under the quota.
    "quota-tuned": RunSpec({**TUNED, "RAGRUN_EMBED_TPM": "{tpm_under}"}, quota=True),
}
DEFAULT_RUNS = ["requests", "quota", "requests-tuned", "quota-tuned"]
QUICK_RUNS = ["requests", "quota"]


# -- corpus ------------------------------------------------------------------


def _vocabulary(rng: random.Random, size: int = 6_000) -> list[str]:
    """Made-up words of 1-5 syllables, so word lengths (and token counts) vary like prose."""
    onsets = ["", "b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v",
              "w", "st", "tr", "pl", "ch", "sh", "gr", "br"]  # fmt: skip
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
    codas = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"]
    words = {"the", "a", "of", "to", "and", "in", "is", "it", "for", "on", "with", "as"}
    while len(words) < size:
        syllables = rng.choices([1, 2, 3, 4, 5], weights=[40, 35, 16, 6, 3])[0]
        words.add("".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                          for _ in range(syllables)))  # fmt: skip
    return sorted(words, key=lambda w: (len(w), w))  # short words are the common ones


class _Prose:
    """Deterministic sentences: Zipf-like word choice, commas, numbers, varied lengths."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = _vocabulary(self.rng)
        weights = [1.0 / (rank + 1) ** 0.9 for rank in range(len(self.words))]
        self.cumulative = list(itertools.accumulate(weights))

    def sentence(self) -> str:
        rng = self.rng
        n = rng.randint(6, 28)
        words = rng.choices(self.words, cum_weights=self.cumulative, k=n)
        for i in range(1, n - 1):
            roll = rng.random()
            if roll < 0.06:
                words[i] += ","
            elif roll < 0.08:
                words[i] = str(rng.randint(2, 99_999))
        return words[0].capitalize() + " " + " ".join(words[1:]) + rng.choice(".....?!")

    def paragraph(self) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(2, 8)))

    def document(self, chars: int, markdown: bool) -> str:
        parts: list[str] = []
        size = 0
        section = 0
        while size < chars:
            if markdown and (section == 0 or self.rng.random() < 0.08):
                section += 1
                parts.append(f"## Section {section}: {self.sentence().rstrip('.?!')}")
            parts.append(self.paragraph())
            size += len(parts[-1]) + 2
        return "\n\n".join(parts)


@dataclass(frozen=True)
class Corpus:
    files: dict[str, str]  # in upload order

    @property
    def megabytes(self) -> float:
        return sum(len(t.encode()) for t in self.files.values()) / 1e6


def mixed_corpus(small: int, large_mb: list[float], seed: int = 6) -> Corpus:
    """``small`` files of 1-8 sentences, one file per ``large_mb`` size (every other one
    Markdown with headings); the large ones spread evenly through the upload order."""
    prose = _Prose(seed)
    smalls = [
        (f"small/{i:05d}.txt", " ".join(prose.sentence() for _ in range(prose.rng.randint(1, 8))))
        for i in range(small)
    ]
    larges = [
        (f"large/{i:02d}.{'md' if i % 2 else 'txt'}",
         prose.document(int(mb * 1_000_000), markdown=bool(i % 2)))
        for i, mb in enumerate(large_mb)
    ]  # fmt: skip
    order = list(smalls)
    step = max(1, len(smalls) // max(1, len(larges)))
    for k, item in reversed(list(enumerate(larges))):
        order.insert(k * step, item)
    return Corpus(dict(order))


# -- the stand-in with a quota ---------------------------------------------


@dataclass(frozen=True)
class Answered:
    """One request as the stand-in answered it, with when it was admitted or refused."""

    at: float
    status: int
    texts: int
    tokens: int


class QuotaStub(VertexStub):
    """The Vertex stand-in, timing every answer and optionally enforcing a TPM quota.

    With ``tokens_per_minute`` set, a request is refused with 429
    RESOURCE_EXHAUSTED when the tokens accepted in the last ``window_s`` seconds
    plus its own would exceed the quota's share of that window: the strictest
    reading of "per minute" with the default 60 s. Refused requests use none of it.
    """

    def __init__(self, tokens_per_minute: float | None, window_s: float = 60.0) -> None:
        super().__init__()
        self.tokens_per_minute = tokens_per_minute
        self.window_s = window_s
        self._window: collections.deque[tuple[float, int]] = collections.deque()
        self._in_window = 0
        self._answered: list[Answered] = []
        self._quota_lock = threading.Lock()

    @property
    def answered(self) -> list[Answered]:
        with self._quota_lock:
            return list(self._answered)

    def reset(self) -> None:
        """Forget recorded requests and the quota window (after the warm-up)."""
        self.clear()
        with self._quota_lock:
            self._answered.clear()
            self._window.clear()
            self._in_window = 0

    def _embed(
        self, method: str, parsed: Any, native_dim: int, malformed: Any
    ) -> tuple[int, bytes]:
        tokens = sum(count_tokens(text) for text in parsed.texts)
        now = time.monotonic()
        with self._quota_lock:
            refused = False
            if self.tokens_per_minute is not None:
                while self._window and self._window[0][0] <= now - self.window_s:
                    self._in_window -= self._window.popleft()[1]
                budget = self.tokens_per_minute * self.window_s / 60.0
                refused = self._in_window + tokens > budget
                if not refused:
                    self._window.append((now, tokens))
                    self._in_window += tokens
            self._answered.append(Answered(now, 429 if refused else 200, len(parsed.texts), tokens))
        if refused:
            message = "Quota exceeded for online_prediction_input_tokens_per_minute."
            error = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": message}}
            return 429, json.dumps(error).encode()
        return super()._embed(method, parsed, native_dim, malformed)


# -- one run -----------------------------------------------------------------


def corpus_chunks(url: str, names: list[str]) -> tuple[int, int, int]:
    """(documents indexed, chunks, estimated tokens) of ``names`` in the database."""
    with psycopg.connect(url) as conn:
        indexed = conn.execute(
            "SELECT count(*) FROM ragrun.documents WHERE name = ANY(%s) AND state = 'indexed'",
            (names,),
        ).fetchone()
        tokens = chunks = 0
        with conn.cursor(name="chunks") as cur:
            cur.execute(
                "SELECT c.content FROM ragrun.chunks c JOIN ragrun.documents d USING (document_id)"
                " WHERE d.name = ANY(%s) AND c.generation = d.active_generation",
                (names,),
            )
            for (content,) in cur:
                chunks += 1
                tokens += count_tokens(str(content))
    return int(indexed[0] if indexed else 0), chunks, tokens


def gathers(log: Path, since: float) -> list[int]:
    """Chunks per handler call of the embedder (its ``embedder.published`` lines)."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") != "embedder.published":
            continue
        if datetime.datetime.fromisoformat(entry["time"]).timestamp() >= since:
            out.append(int(entry["chunks"]))
    return out


class BenchStack(LocalStack):
    """The local stack with the embedder logging at INFO."""

    def start_service(self, name: str, extra_env: dict[str, str] | None = None) -> None:
        if name == "embedder":  # one INFO line per handler call (a gather): read afterwards
            extra_env = {**(extra_env or {}), "RAGRUN_LOG_LEVEL": "INFO"}
        super().start_service(name, extra_env)


def bench_stack(env: dict[str, str]) -> contextlib.AbstractContextManager[LocalStack]:
    return temporary_stack(
        "ragrun-bench-embed-", BenchStack, embeddings=f"vertex:{MODEL}", bucket="bench",
        services=("chunker", "embedder", "writer"), extra_env=env,
    )  # fmt: skip


def wait_done(
    local: LocalStack, names: list[str], stub: QuotaStub, timeout_s: float, stall_s: float
) -> float | None:
    """When every document was indexed or failed; None if the stand-in heard nothing
    for ``stall_s`` while some were not (the pipeline stalled)."""
    deadline = time.monotonic() + timeout_s
    heard, last_change = 0, time.monotonic()
    with psycopg.connect(local.env()["DATABASE_URL"], autocommit=True) as conn:
        while time.monotonic() < deadline:
            if all_settled(conn, names):
                return time.monotonic()
            if (count := len(stub.answered)) != heard:
                heard, last_change = count, time.monotonic()
            elif time.monotonic() - last_change > stall_s:
                return None
            if failed := local.failed_services():
                raise RuntimeError(f"services exited: {failed}")
            time.sleep(0.5)
    raise TimeoutError(f"{len(names)} documents not indexed within {timeout_s:.0f} s")


def budget_under(quota: float) -> int:
    """A client budget that never overflows ``quota`` over any 60 s.

    The limiter's token bucket holds up to max(2 s of budget, one request of up
    to 20,000 tokens) and refills at the budget, so over any 60 s it sends at
    most budget + one bucket; 1% more is left for jitter between the limiter
    and the server's clock.
    """
    return int(0.99 * quota - max(quota * 2 / 60, LIMITS.max_tokens))


def run(name: str, corpus: Corpus, tpm: float, timeout_s: float) -> dict[str, Any]:
    spec = RUNS[name]
    env = {k: v.format(tpm=int(tpm), tpm_under=budget_under(tpm)) for k, v in spec.env.items()}
    with QuotaStub(tpm if spec.quota else None) as stub:
        stack_env = {
            "RAGRUN_VERTEX_BASE_URL": stub.base_url,
            "RAGRUN_VERTEX_ACCESS_TOKEN": "bench",
            "RAGRUN_EMBEDDING_DIM": "32",  # small answers; request counts do not depend on it
            **env,
        }
        with bench_stack(stack_env) as local:
            upload(local, {"warmup/0.txt": _Prose(1).document(3_000, markdown=False)})
            wait_indexed(local, ["warmup/0.txt"], 300)
            stub.reset()
            names = list(corpus.files)
            wall_start, start = time.time(), time.monotonic()
            upload(local, corpus.files)
            uploaded = time.monotonic() - start
            end = wait_done(local, names, stub, timeout_s, stall_s=180)
            answered = stub.answered
            indexed, chunks, tokens = corpus_chunks(local.env()["DATABASE_URL"], names)
            log = local.log_dir / "embedder.log"
            per_gather = gathers(log, wall_start)
            pull_failures = log.read_text(errors="replace").count("subscriber.pull_failed")
    result = summarise(name, env, spec.quota, tpm, corpus, answered, per_gather,
                       indexed=indexed, chunks=chunks, tokens=tokens,
                       seconds=(end or time.monotonic()) - start, upload_s=uploaded,
                       start=start)  # fmt: skip
    return result | {"stalled": end is None, "pull_failures": pull_failures}


def summarise(
    name: str,
    env: Mapping[str, str],
    enforce: bool,
    tpm: float,
    corpus: Corpus,
    answered: list[Answered],
    per_gather: list[int],
    *,
    indexed: int,
    chunks: int,
    tokens: int,
    seconds: float,
    upload_s: float,
    start: float,
) -> dict[str, Any]:
    ok = [a for a in answered if a.status == 200]
    refused = [a for a in answered if a.status == 429]
    minimum = max(math.ceil(chunks / LIMITS.max_items), math.ceil(tokens / LIMITS.max_tokens))
    texts = [a.texts for a in ok]
    # The fewest requests greedy packing (plan_batches) makes of the same chunks as one
    # stream, in the order they reached the stand-in: the floor for ragrun's packing.
    stream = [t for a in ok for t in _split_evenly(a.tokens, a.texts)]
    greedy = len(plan_batches(stream, lambda t: t, LIMITS))
    fills = [max(a.texts / LIMITS.max_items, a.tokens / LIMITS.max_tokens) for a in ok]
    result: dict[str, Any] = {
        "run": name, "env": dict(env), "quota_enforced": enforce,
        "files": len(corpus.files), "megabytes": round(corpus.megabytes, 2),
        "indexed": indexed, "chunks": chunks, "tokens": tokens,
        "seconds": seconds, "upload_s": upload_s,
        "requests": len(ok), "minimum": minimum, "greedy_one_stream": greedy,
        "texts_at_stub": sum(texts), "tokens_at_stub": sum(a.tokens for a in ok),
        "requests_per_1000": 1000 * len(ok) / max(chunks, 1),
        "minimum_per_1000": 1000 * minimum / max(chunks, 1),
        "ratio": len(ok) / max(minimum, 1),
        "texts_per_request": {f"{lo}-{hi}" if lo != hi else str(lo):
                              sum(lo <= n <= hi for n in texts) for lo, hi in TEXT_BINS},
        "texts_per_request_mean": sum(texts) / max(len(ok), 1),
        "tokens_per_request_mean": sum(a.tokens for a in ok) / max(len(ok), 1),
        "full_requests": sum(f >= 0.95 for f in fills),
        "gathers": len(per_gather),
        "chunks_per_gather_mean": sum(per_gather) / max(len(per_gather), 1),
        "gathers_under_250_chunks": sum(n < LIMITS.max_items for n in per_gather),
        "throttled_429": len(refused),
    }  # fmt: skip
    if ok:
        result.update(tpm_figures(ok, refused, tpm if enforce else None, start))
    return result


def _split_evenly(total: int, parts: int) -> list[int]:
    """Per-text token counts of a request, spread evenly (the stand-in keeps only the sum)."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def tpm_figures(
    ok: list[Answered], refused: list[Answered], quota: float | None, start: float
) -> dict[str, Any]:
    """Tokens accepted per minute: over the whole run and minute by minute."""
    first, last = ok[0].at, ok[-1].at
    span = last - first
    # The first request's tokens were admitted at ``first``; what follows took ``span``.
    reached = sum(a.tokens for a in ok[1:]) / span * 60 if span > 0 else 0.0
    minutes: list[int] = []
    for a in ok:
        index = int((a.at - first) // 60)
        minutes.extend([0] * (index + 1 - len(minutes)))
        minutes[index] += a.tokens
    storm = 0
    for i, a in enumerate(refused):  # the most 429s within any 10 s
        storm = max(storm, sum(1 for b in refused[i:] if b.at - a.at < 10))
    out: dict[str, Any] = {
        "first_accept_s": first - start, "accept_span_s": span, "tpm_reached": reached,
        "tokens_per_minute": minutes, "max_429_in_10s": storm,
        "refused_at_s": [round(a.at - start, 1) for a in refused],
    }  # fmt: skip
    if quota:
        full = minutes[:-1] if span >= 120 else minutes  # the last minute is partial
        out |= {"tpm_quota": quota, "tpm_fraction": reached / quota,
                "full_minutes_fraction": [round(m / quota, 3) for m in full]}  # fmt: skip
    return out


# -- report ------------------------------------------------------------------

FINDINGS = """
## What limits the figures, and what changed

**Requests above the minimum are the tails of gathers.** The embedder plans requests
within one handler call (a gather: up to `RAGRUN_EMBEDDER_MAX_MESSAGES` messages,
`RAGRUN_EMBEDDER_GATHER_REQUESTS` x 250 texts, or what arrived within
`RAGRUN_EMBEDDER_MAX_LATENCY_MS` of the first message), so each gather can end with
a part-filled request. With the earlier defaults (200 messages, 4 x 250 texts,
100 ms) this corpus took 1.13x-1.20x the minimum unthrottled and 1.07x-1.12x under
the quota: many short gathers; a 200-message cap that holds only 100 small files
(each is a manifest and a chunk batch); and request-sized batches of big
documents shifted across two requests by small ones ahead of them. Three changes
bring the defaults to 1.03x and 1.01x:

- request-sized chunk batches go first in a gather, small ones share the rest;
- the batches that fall entirely in a gather's light last request are deferred,
  once each, to the next gather (`Outcome.DEFER`: the message stays leased);
- gathers of up to 1 s, 1,000 messages and 8 requests' worth of chunks (flow
  control 1,500 messages, at most ~150 MB of chunk batches held).

**Tokens per minute.** The limiter's token bucket let its own size through on top
of `RAGRUN_EMBED_TPM` in any minute, so with the budget equal to a quota counted
over a sliding minute it met a 429 about once a minute, and each 429 halved the
rate (88% and 68% of the quota in two runs). A sliding window of 61 s now caps
what the bucket lets through (the extra second covers the time a request takes to
reach the server): 98% of the quota, no 429.

**Before commit f6b7aac the local stack stalled on this corpus.** With
`PUBSUB_EMULATOR_HOST` set, google-cloud-pubsub opens a plain
`grpc.insecure_channel(host)` with gRPC's default 4 MiB receive limit (against
Pub/Sub itself it sets none). A pull of up to 200 chunk batches of ~100 kB each
failed with RESOURCE_EXHAUSTED ("Received message larger than max") and the
embedder retried the same pull for ever: in a first attempt of this benchmark the
stand-in heard nothing for 16 minutes, until the run was stopped.
`ragrun_common.pubsub.make_subscriber` now lifts the limit; the bench reports a
run as *stalled* (and counts failed pulls) if the stand-in hears nothing for 3
minutes before every document is indexed.
"""


def report(results: list[dict[str, Any]], command: str, measured: str) -> str:
    lines = [
        "# Embedding requests and tokens per minute (issue #6, benchmark 3)",
        "",
        f"Command: `{command}`. Machine: {machine()}, shared: other work ran at the same "
        f"time; {measured}.",
        "",
        "Whole local stack (fake-gcs-server -> chunker -> Pub/Sub emulator -> embedder -> "
        f"writer -> PostgreSQL), `RAGRUN_EMBEDDINGS=vertex:{MODEL}` against the local Vertex "
        "stand-in, which counts requests. Minimum = max(ceil(chunks / 250), "
        "ceil(tokens / 20,000)), tokens by `count_tokens`. *Greedy, one stream*: requests "
        "`plan_batches` makes of the same chunks in one sequence (what perfect gathering "
        "would give). Quota: 429 beyond Q tokens in any sliding 60 s at the stand-in.",
        "",
        "| run | settings | files / MB | chunks / tokens | seconds | requests (200) | minimum "
        "| greedy, one stream | req / 1,000 chunks (min) | ratio (goal <= 1.05x) "
        "| TPM reached / quota (goal >= 90%) | 429s | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        settings = ", ".join(f"`{k}={v}`" for k, v in r["env"].items()) or "defaults"
        tpm = (f"{r['tpm_reached']:,.0f} / {r['tpm_quota']:,.0f} (**{r['tpm_fraction']:.0%}**)"
               if r.get("tpm_quota") else f"{r.get('tpm_reached', 0):,.0f} (no quota)")  # fmt: skip
        lines.append(
            f"| {r['run']} | {settings} | {r['files']:,} / {r['megabytes']:.1f} "
            f"| {r['chunks']:,} / {r['tokens']:,} | {r['seconds']:.0f} | {r['requests']:,} "
            f"| {r['minimum']:,} | {r['greedy_one_stream']:,} "
            f"| {r['requests_per_1000']:.2f} ({r['minimum_per_1000']:.2f}) "
            f"| **{r['ratio']:.3f}x** | {tpm} | {r['throttled_429']} | {notes(r)} |"
        )
    lines += ["", "Texts per request (accepted requests):", "",
              "| run | " + " | ".join(results[0]["texts_per_request"]) + " | mean texts "
              "| mean tokens | >= 95% full | gathers (mean chunks; < 250 chunks) |",
              "|---|" + "---:|" * (len(results[0]["texts_per_request"]) + 4)]  # fmt: skip
    for r in results:
        bins = " | ".join(str(v) for v in r["texts_per_request"].values())
        lines.append(
            f"| {r['run']} | {bins} | {r['texts_per_request_mean']:.0f} "
            f"| {r['tokens_per_request_mean']:,.0f} | {r['full_requests']} "
            f"| {r['gathers']} ({r['chunks_per_gather_mean']:.0f}; "
            f"{r['gathers_under_250_chunks']}) |"
        )
    quota_runs = [r for r in results if r.get("tpm_quota")]
    if quota_runs:
        lines += ["", "Tokens accepted per full minute, as a share of the quota "
                  "(from the first accepted request); 429s at seconds after the upload began:",
                  ""]  # fmt: skip
        for r in quota_runs:
            shares = ", ".join(f"{m:.0%}" for m in r["full_minutes_fraction"])
            refused = ", ".join(str(s) for s in r["refused_at_s"][:40]) or "none"
            lines.append(f"- {r['run']}: {shares}; 429s ({r['throttled_429']}, at most "
                         f"{r['max_429_in_10s']} in 10 s): {refused}")  # fmt: skip
    return "\n".join([*lines, "", FINDINGS.strip(), ""])


def revision() -> str:
    """The commit measured, and whether the working tree differed from it."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip()  # fmt: skip
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return f"commit {head or '?'}" + (" with uncommitted changes" if dirty else "")


def notes(r: dict[str, Any]) -> str:
    out = []
    if r["stalled"]:
        out.append(f"**stalled**: {r['indexed']:,} of {r['files']:,} files indexed")
    if r["pull_failures"]:
        out.append(f"{r['pull_failures']} failed pulls")
    return "; ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small corpus (a smoke run)")
    parser.add_argument("--runs", nargs="+", choices=list(RUNS))
    parser.add_argument("--small", type=int, default=2_000, help="small files")
    parser.add_argument("--large-mb", type=float, nargs="+", default=[1.0, 1.5, 2.5, 3.5, 5.0])
    parser.add_argument("--tpm", type=float, default=1_000_000, help="the quota, tokens/minute")
    parser.add_argument("--json", type=Path, default=RESULTS / "embed-requests.json")
    parser.add_argument("--md", type=Path, default=RESULTS / "embed-requests.md")
    parser.add_argument("--report-only", action="store_true", help="re-render --md from --json")
    args = parser.parse_args()
    if args.report_only:
        saved = json.loads(args.json.read_text())
        args.md.write_text(report(saved["runs"], saved["command"], saved["measured"]))
        return
    if args.quick:
        args.small, args.large_mb, args.tpm = 150, [0.2, 0.3], 150_000
    runs = args.runs or (QUICK_RUNS if args.quick else DEFAULT_RUNS)
    corpus = mixed_corpus(args.small, args.large_mb)
    print(f"corpus: {len(corpus.files)} files, {corpus.megabytes:.1f} MB", flush=True)
    results = []
    for name in runs:
        results.append(run(name, corpus, args.tpm, timeout_s=3600))
        print(json.dumps(results[-1]), flush=True)
    command = " ".join([".venv/bin/python bench/embed_requests_bench.py", *sys.argv[1:]])
    measured = f"{datetime.date.today().isoformat()}, {revision()}"
    text = report(results, command, measured)
    args.md.parent.mkdir(parents=True, exist_ok=True)
    args.md.write_text(text)
    saved = {"command": command, "measured": measured, "runs": results}
    args.json.write_text(json.dumps(saved, indent=2))
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("RAGRUN_LOG_LEVEL", "WARNING")
    main()
