"""Bad and hostile input through the real stack: every object ends indexed or failed with a reason.

Each kind of input is built here (only pdf-parse's broken and valid PDFs come
from its npm package), uploaded through fake-gcs-server, and followed to its
document row: either valid chunks, or state ``failed`` with an error that
names the specific reason. A good document uploaded afterwards is indexed, so
no input stalled or crashed the pipeline. Limits are set low for the test
stack (pages, chunks, object size, the streaming threshold) so each limit is
reached quickly while objects are still streamed and bounded.
"""

from __future__ import annotations

import gzip
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from pypdf import PdfWriter

from tests.conftest import Stack, started_stack, wait_for
from tests.support.corpora import PDF_PARSE_BROKEN, pdf_parse_test_pdfs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1024 * 1024
MAX_PAGES = 50
MAX_CHUNKS = 1000
MAX_OBJECT_BYTES = 4 * MiB
STREAM_TEXT_BYTES = 1 * MiB
ENV = {
    "RAGRUN_MAX_PAGES": str(MAX_PAGES),
    "RAGRUN_MAX_CHUNKS": str(MAX_CHUNKS),
    "RAGRUN_MAX_OBJECT_BYTES": str(MAX_OBJECT_BYTES),
    "RAGRUN_STREAM_TEXT_BYTES": str(STREAM_TEXT_BYTES),
    "RAGRUN_DOWNLOAD_BLOCK_BYTES": str(256 * 1024),
    "RAGRUN_CHUNK_TOKENS": "512",
    "RAGRUN_CHUNK_OVERLAP": "32",
}


@dataclass(frozen=True)
class Case:
    """One object to upload and what must become of it."""

    name: str
    data: bytes
    content_type: str | None = None
    content_encoding: str | None = None
    error: tuple[str, ...] = ()  # substrings of the recorded error; empty: must be indexed
    contains: str | None = None  # a string some indexed chunk must contain


def words(n: int, seed: int) -> str:
    rng = random.Random(seed)
    vocabulary = ["river", "granite", "lantern", "orbit", "meadow", "cipher", "harbor", "quartz"]
    return " ".join(f"{rng.choice(vocabulary)}{rng.randrange(1000)}" for _ in range(n))


def pdf(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=200, height=200)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def encrypted_pdf() -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt(user_password="secret", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def gzip_of(pattern: bytes, total: int) -> bytes:
    """``total`` bytes of ``pattern`` repeated, gzip-compressed without holding them all."""
    out = io.BytesIO()
    block = pattern * (MiB // len(pattern))
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        for _ in range(total // len(block)):
            gz.write(block)
    return out.getvalue()


def cases(pdfs: dict[str, Path]) -> list[Case]:
    rng = random.Random(2)
    noise = bytes(rng.randrange(256) for _ in range(64 * 1024))
    nested = 100_000
    deep_html = (
        "<html><body>" + "<div>" * nested + "deep nested text" + "</div>" * nested
    ).encode()
    valid_pdf = pdfs["04-valid.pdf"].read_bytes()
    return [
        Case("bad/empty.txt", b"", "text/plain", error=("empty",)),
        Case("bad/whitespace.txt", b" \n\t\r\n   \n" * 1000, "text/plain", error=("empty",)),
        Case("bad/random.txt", noise, "text/plain", error=("not valid UTF-8",)),
        Case("bad/random.md", noise, "text/markdown", error=("not valid UTF-8",)),
        Case("bad/random.pdf", noise, "application/pdf", error=("not a readable PDF",)),
        Case("bad/pdf-parse-broken.pdf", pdfs[PDF_PARSE_BROKEN].read_bytes(), "application/pdf",
             error=("not a readable PDF",)),
        Case("bad/encrypted.pdf", encrypted_pdf(), "application/pdf", error=("encrypted",)),
        Case("bad/zero-pages.pdf", pdf(0), "application/pdf", error=("no pages",)),
        Case("bad/image-only.pdf", pdf(1), "application/pdf", error=("no text found",)),
        Case("bad/3000-pages.pdf", pdf(3000), "application/pdf",
             error=("3000 pages", f"limit of {MAX_PAGES}")),
        Case("bad/invalid-utf8.txt", b"valid start, then \xc3\x28 and \xff", "text/plain",
             error=("not valid UTF-8", "offset 18")),
        Case("bad/nul-bytes.txt", b"some text\x00with NUL\x00bytes", "text/plain",
             error=("NUL",)),
        Case("bad/utf16-no-bom.txt", "UTF-16 without a byte order mark".encode("utf-16-le"),
             "text/plain", error=("NUL", "UTF-16")),
        Case("bad/late-invalid-utf8.txt", (words(300_000, 3) + " \xff").encode("latin-1"),
             "text/plain", error=("not valid UTF-8",)),  # streamed: fails after some batches
        Case("bad/long-line-20MB.txt", ("x" * 20 * MiB).encode(), "text/plain",
             error=(f"limit of {MAX_CHUNKS}", "RAGRUN_MAX_CHUNKS")),
        Case("bad/long-line-1.5MB.txt", words(200_000, 4).encode(), "text/plain",
             contains="river"),  # one streamed line of words: chunks, manifest last
        Case("bad/too-many-chunks.txt", "\n\n".join(words(120, i) for i in range(5000)).encode(),
             "text/plain", error=("RAGRUN_MAX_CHUNKS",)),
        Case("bad/scripts-only.html",
             b"<html><head><style>p{}</style></head><body>"
             + b"<script>var a = 1;</script><style>.x{}</style><noscript>n</noscript>" * 500
             + b"</body></html>", "text/html", error=("no text found",)),
        Case("bad/deeply-nested.html", deep_html, "text/html", contains="deep nested text"),
        Case("bad/pdf-named.txt", valid_pdf, "text/plain", contains="the"),  # the bytes decide
        Case("bad/text-named.pdf", b"Just a line of plain text.\n", "application/pdf",
             error=("not a readable PDF",)),
        Case("bad/image.png", b"\x89PNG\r\n\x1a\n" + noise[:2000], "image/png",
             error=("unsupported content type 'image/png'",)),
        Case("bad/report.docx", b"PK\x03\x04" + noise[:2000],
             "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
             error=("unsupported content type",)),
        Case("bad/archive.zip", b"PK\x03\x04" + noise[:2000], "application/zip",
             error=("unsupported content type 'application/zip'",)),
        Case("bad/no-extension", b"some text", "application/octet-stream",
             error=("cannot tell the content type",)),
        Case("bad/gzip-bomb.html", gzip_of(b"\0", 256 * MiB), "text/html", "gzip",
             error=("decompresses to more than", "decompression bomb")),
        Case("bad/gzip-bomb-spaces.txt", gzip_of(b" ", 256 * MiB), "text/plain", "gzip",
             error=("empty",)),  # streamed through, all 256 MB, in bounded memory
        Case("bad/not-really-gzip.txt", b"plain text claiming to be gzip", "text/plain", "gzip",
             error=("not valid gzip",)),
        Case("bad/gzip-ok.txt", gzip.compress(b"compressed but honest text"), "text/plain",
             "gzip", contains="honest"),
        Case("bad/odd names/ünïcödé 😀 spaces.txt", b"unicode name text", "text/plain",
             contains="unicode name"),
        Case("bad/odd#name?with=query&%41%zz.txt", b"punctuation name text", "text/plain",
             contains="punctuation name"),
        Case("bad/../escape/../../dots.txt", b"dot dot name text", "text/plain",
             contains="dot dot"),
        # ~1,000 bytes (GCS allows 1,024); fake-gcs-server's files allow 255 per component.
        Case("bad/" + "/".join(["long-name-" * 20] * 5) + ".txt", b"very long name text",
             "text/plain", contains="long name"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def bad_stack(pubsub_emulator_available: None) -> Iterator[Stack]:
    with started_stack(embeddings="hash", bucket="bad-input", extra_env=ENV) as running:
        yield running


def upload(stack: Stack, case: Case) -> None:
    blob = stack.bucket().blob(case.name)
    if case.content_encoding:
        blob.content_encoding = case.content_encoding
    blob.upload_from_string(case.data, content_type=case.content_type or "application/octet-stream")


def documents(stack: Stack, names: list[str]) -> dict[str, tuple[str, str | None, int, int]]:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT name, state, error, chunks_expected, chunks_written FROM ragrun.documents"
            " WHERE name = ANY(%s)",
            (names,),
        ).fetchall()
    return {
        name: (state, error, expected, written) for name, state, error, expected, written in rows
    }


def settled(stack: Stack, names: list[str]) -> bool:
    rows = documents(stack, names)
    return len(rows) == len(names) and all(r[0] in ("indexed", "failed") for r in rows.values())


def chunk_texts(stack: Stack, name: str) -> list[str]:
    with psycopg.connect(stack.env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT c.content FROM ragrun.chunks c JOIN ragrun.documents d USING (document_id)"
            " WHERE d.name = %s AND c.generation = d.active_generation ORDER BY c.chunk_index",
            (name,),
        ).fetchall()
    return [content for (content,) in rows]


def test_bad_input_is_indexed_or_fails_with_a_clear_reason(
    bad_stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    corpus = cases(pdf_parse_test_pdfs(tmp_path_factory.mktemp("pdf-parse")))
    assert len({c.name for c in corpus}) == len(corpus) >= 20
    for case in corpus:
        upload(bad_stack, case)
    names = [c.name for c in corpus]
    wait_for(lambda: settled(bad_stack, names), 600, "every bad input indexed or failed")

    rows = documents(bad_stack, names)
    problems = []
    for case in corpus:
        state, error, expected, written = rows[case.name]
        if case.error:
            if state != "failed" or not all(part in (error or "") for part in case.error):
                problems.append(f"{case.name[:80]}: {state} {error!r}, expected {case.error}")
        elif state != "indexed" or expected != written or expected < 1:
            problems.append(f"{case.name[:80]}: {state} {written}/{expected} {error!r}")
        elif case.contains and not any(
            case.contains in t for t in chunk_texts(bad_stack, case.name)
        ):
            problems.append(f"{case.name[:80]}: no chunk contains {case.contains!r}")
    assert not problems, "\n".join(problems)

    # Nothing crashed or got stuck: the chunker is up and a good document goes through.
    assert bad_stack.local.failed_services() == {}
    good = "good/after-the-bad.md"
    bad_stack.bucket().blob(good).upload_from_string(
        "# After\n\nA good document uploaded after the hostile corpus.",
        content_type="text/markdown",
    )
    wait_for(lambda: settled(bad_stack, [good]), 120, "the good document indexed")
    assert documents(bad_stack, [good])[good][0] == "indexed"
    assert any("hostile corpus" in t for t in chunk_texts(bad_stack, good))
