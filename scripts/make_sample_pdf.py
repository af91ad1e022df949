#!/usr/bin/env python3
"""Write samples/replay-guide.pdf, a small multi-page sample PDF, from text kept here.

Standard library only. The PDF uses the built-in Helvetica Type1 fonts (no
embedding), wraps paragraphs at ~90 characters, puts up to 45 lines on a page,
and writes an exact cross-reference table, so any reader (pypdf included)
extracts the text with its spaces. The output is byte-for-byte deterministic:
rerunning the script on an unchanged source leaves git with nothing to commit.

Source markup: paragraphs are separated by blank lines; a line starting with
"# " is a heading (bold); a line starting with "- " starts a bullet item; a
line holding only "\\f" starts a new page.

    python3 scripts/make_sample_pdf.py [OUTPUT]   # default: samples/replay-guide.pdf
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

TITLE = "Replaying the ragrun pipeline"

SOURCE = """\
# Replaying the ragrun pipeline

This guide explains how to run documents through ragrun again after they have already
been indexed. A replay is the tool of choice after a bug fix in text extraction, after a
change of chunk size, or when the database has to be rebuilt from nothing. It relies on
two features of Pub/Sub, seeking a subscription to a timestamp and seeking it to a
snapshot, and on one property of ragrun itself: every stage is idempotent.

# Why replay works at all

Pub/Sub delivers every message at least once. A subscriber can receive the same message
twice, for example when an acknowledgement is lost or a worker restarts in the middle of
a batch. ragrun was built so that processing a message a second time has exactly the
same effect as processing it once. That guarantee is what turns a replay from a risky
operation into a routine one: sending a week of messages through the pipeline again is,
to ragrun, nothing more than a very large number of duplicate deliveries.

Three design choices make the stages idempotent:

- Identity comes from content, never from delivery. A document is identified by its
  bucket and object name, a version of it by the Cloud Storage generation number, and a
  chunk by a hash of bucket, object name, generation and chunk index. Pub/Sub message ids
  play no part in identity.

- The writer upserts. Rows are loaded into a staging table with COPY and then merged into
  the chunks table with INSERT ... ON CONFLICT (chunk_id) DO UPDATE, so a repeated batch
  overwrites the rows it wrote before instead of adding new ones.

- Older generations lose. When a newer generation of an object is fully indexed, the rows
  of earlier generations are removed, and a late message about an old generation cannot
  bring them back, because the writer compares generation numbers before it writes.

# Seeking a subscription to a timestamp

Every ragrun subscription retains acknowledged messages for seven days. Retaining
acknowledged messages is what makes a seek useful: without it, a seek back in time would
find nothing to deliver again.

A seek to a timestamp marks every message published after that moment as unacknowledged,
and Pub/Sub starts delivering those messages again. Messages published before the moment
are marked as acknowledged. To reprocess every upload since Monday morning:

    gcloud pubsub subscriptions seek ragrun-chunker --time=2025-03-03T08:00:00Z

Which subscription to seek depends on what changed:

- Seek ragrun-chunker when text extraction or chunking changed. The chunker downloads
  each object generation named in the replayed events, cuts it again and publishes new
  chunk batches, which then flow through the embedder and the writer as usual.

- Seek ragrun-embedder when only the embedding step must run again, for example after a
  quota incident in which batches were dropped. Chunking is skipped.

- Seek ragrun-writer when the database lost data but the vectors are still good, for
  example after restoring an older database backup. Nothing is embedded again, so this
  seek costs no embedding quota at all.

A seek does not delete or reorder anything. While the backlog drains, live uploads keep
flowing through the same subscription, mixed with the replayed messages.

# Seeking a subscription to a snapshot

A timestamp is convenient but imprecise: it replays everything after a moment, including
messages that had already been acknowledged for good reasons. A snapshot captures the
exact acknowledgement state of a subscription at the moment the snapshot is created:
which messages were still outstanding and which were done. Seeking to that snapshot later
restores that state exactly.

Take a snapshot before any risky change, such as a deployment of a new chunker version:

    gcloud pubsub snapshots create before-chunker-v2 --subscription=ragrun-chunker

If the new version misbehaves, roll the service back and seek the subscription to the
snapshot:

    gcloud pubsub subscriptions seek ragrun-chunker --snapshot=before-chunker-v2

Every message that arrived after the snapshot is delivered again and handled by the old,
known-good version. A snapshot expires seven days after it was created, or earlier if the
oldest unacknowledged message it holds would exceed the retention period; delete it when
the change has proved itself.

# Reindexing everything

A full reindex rebuilds the chunks table from the documents in the bucket. It is needed
when the embedding model changes, because vectors from two different models cannot be
compared, or when the chunk size changes for the whole collection. A reindex does not
depend on message retention: it starts from the objects themselves.

Follow these steps for a full reindex:

- Announce a short period in which answers may be incomplete, or build the new index in a
  second database and switch the query service over at the end.

- Set the new configuration on the chunker, embedder and query service, for example a new
  value of RAGRUN_EMBEDDINGS. The query service refuses to search vectors produced by a
  different model, so it must be switched together with the index.

- Empty the chunks table, or create a fresh database.

- Publish one object event for every object in the bucket. The ragrun CLI lists the bucket
  and publishes an event per object to the objects topic; each event names the current
  generation, exactly like the notification sent at upload time.

- Follow progress with ragrun status until every document reports indexed.

Because chunk ids depend only on bucket, name, generation and index, a reindex that is
interrupted halfway can simply be started again from the top. Documents that were
already written are overwritten with identical rows, and the rest are filled in.

# Planning the cost of a replay

The cost of a replay is the cost of the stages it runs. Seeking the writer subscription
costs only database time. Seeking the embedder or the chunker subscription, or running a
full reindex, embeds every replayed chunk again. Estimate the total with the chunk count
shown by ragrun status multiplied by the average tokens per chunk, and compare it with the
embedding quota: a replay that exceeds the quota is not lost, it is only slow, because
throttled requests are retried.

# Checklist

- Decide what changed: extraction and chunking, embedding, or only the database.

- Pick the stage: seek ragrun-chunker, ragrun-embedder or ragrun-writer accordingly, or
  run a full reindex when the model or chunk size changed.

- Prefer a snapshot taken before the change over a timestamp guessed after it.

- Watch the backlog drain, then compare the number of indexed documents with the number
  of objects in the bucket.

- Delete snapshots you no longer need.
"""

PAGE_WIDTH = 612  # US Letter, in points
PAGE_HEIGHT = 792
MARGIN_LEFT = 72
MARGIN_TOP = 72
FONT_SIZE = 10
LEADING = 14
WRAP_CHARS = 90
LINES_PER_PAGE = 45
PAGE_BREAK = "\f"

Line = tuple[str, bool]  # (text, bold)


def layout(source: str) -> list[list[Line]]:
    """Wrap the marked-up source into pages of at most LINES_PER_PAGE lines."""
    blocks: list[str] = []
    current: list[str] = []
    for raw in source.splitlines() + [""]:
        if raw.strip() in ("", "\\f"):
            if current:
                blocks.append("\n".join(current))
                current = []
            if raw.strip() == "\\f":
                blocks.append(PAGE_BREAK)
        else:
            current.append(raw.rstrip())

    lines: list[Line | str] = []
    for text in blocks:
        if text == PAGE_BREAK:
            lines.append(PAGE_BREAK)
            continue
        if lines and lines[-1] != PAGE_BREAK:
            lines.append(("", False))
        if text.startswith("# "):
            lines.append((text[2:].strip(), True))
        elif text.startswith("    "):  # preformatted (a command): keep as is
            lines.extend((line.rstrip(), False) for line in text.splitlines())
        elif text.startswith("- "):
            body = " ".join(part.strip() for part in text[2:].splitlines())
            wrapped = textwrap.wrap(body, WRAP_CHARS, initial_indent="- ", subsequent_indent="  ")
            lines.extend((line, False) for line in wrapped)
        else:
            body = " ".join(part.strip() for part in text.splitlines())
            lines.extend((line, False) for line in textwrap.wrap(body, WRAP_CHARS))

    pages: list[list[Line]] = [[]]
    for line in lines:
        # A heading needs room for itself, a blank line and two lines of its section.
        room = 4 if line != PAGE_BREAK and line[1] else 1
        if line == PAGE_BREAK or len(pages[-1]) + room > LINES_PER_PAGE:
            if pages[-1]:
                pages.append([])
            if line == PAGE_BREAK:
                continue
        assert isinstance(line, tuple)
        if not pages[-1] and not line[0]:
            continue  # no blank line at the top of a page
        pages[-1].append(line)
    for page in pages:
        while page and not page[-1][0]:
            page.pop()  # no blank line at the bottom of a page either
    while pages and not pages[-1]:
        pages.pop()
    return pages


def pdf_string(text: str) -> bytes:
    """A PDF literal string: ASCII only, with backslashes and parentheses escaped."""
    if not text.isascii():
        raise ValueError(f"non-ASCII text cannot use the standard encoding: {text!r}")
    escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    return b"(" + escaped.encode("ascii") + b")"


def content_stream(page: list[Line]) -> bytes:
    y = PAGE_HEIGHT - MARGIN_TOP - FONT_SIZE
    ops = [b"BT", f"{LEADING} TL".encode(), f"{MARGIN_LEFT} {y} Td".encode()]
    font = None
    for text, bold in page:
        wanted = b"/F2" if bold else b"/F1"
        if wanted != font:
            ops.append(wanted + f" {FONT_SIZE} Tf".encode())
            font = wanted
        ops.append(pdf_string(text) + b" Tj T*")
    ops.append(b"ET")
    return b"\n".join(ops) + b"\n"


def build_pdf(pages: list[list[Line]], title: str) -> bytes:
    """Serialise the pages as a PDF 1.4 file with a correct xref table."""
    n = len(pages)
    # Object numbers: 1 catalog, 2 page tree, 3 Helvetica, 4 Helvetica-Bold, 5 info,
    # then a (page, content) pair per page.
    page_ids = [6 + 2 * i for i in range(n)]
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids ["
        + b" ".join(f"{p} 0 R".encode() for p in page_ids)
        + f"] /Count {n} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        4: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold"
        b" /Encoding /WinAnsiEncoding >>",
        5: b"<< /Title " + pdf_string(title) + b" /Producer (ragrun make_sample_pdf.py) >>",
    }
    for page_id, page in zip(page_ids, pages, strict=True):
        stream = content_stream(page)
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}]"
            f" /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >>"
            f" /Contents {page_id + 1} 0 R >>"
        ).encode()
        objects[page_id + 1] = (
            f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"endstream"
        )

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += f"{number} 0 obj\n".encode() + objects[number] + b"\nendobj\n"
    xref_at = len(out)
    size = max(objects) + 1
    out += f"xref\n0 {size}\n".encode()
    out += b"0000000000 65535 f \n"
    for number in range(1, size):
        out += f"{offsets[number]:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {size} /Root 1 0 R /Info 5 0 R >>\n".encode()
    out += f"startxref\n{xref_at}\n%%EOF\n".encode()
    return bytes(out)


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    output = Path(argv[1]) if len(argv) > 1 else root / "samples" / "replay-guide.pdf"
    pages = layout(SOURCE)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(build_pdf(pages, TITLE))
    words = len(SOURCE.split())
    sys.stdout.write(f"wrote {output} ({len(pages)} pages, ~{words} words)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
