"""Streamed objects: incremental decoding, chunking and batches with the manifest last."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest

from ragrun_chunker.chunking import ChunkingConfig
from ragrun_chunker.core import Limits, stream_batches
from ragrun_chunker.extract import ExtractionError, decode_utf8_stream, stream_sections
from ragrun_chunker.stream import capped, gunzip_blocks
from ragrun_common.batching import BatchLimits
from ragrun_common.contracts import ChunkBatch, DocumentRef

DOC = DocumentRef(bucket="b", name="big.txt", generation=7, chunking="c", revision=1)
CONFIG = ChunkingConfig(max_tokens=64, overlap_tokens=8)
BATCHES = BatchLimits(max_items=20, max_tokens=2000)
LIMITS = Limits()


def text(paragraphs: int) -> str:
    return "\n\n".join(
        f"Paragraph {p}. " + " ".join(f"word{(p * 31 + k) % 997}" for k in range(90))
        for p in range(paragraphs)
    )


def blocks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def run(
    data: bytes, size: int, limits: Limits = LIMITS, kind: str = "text/plain"
) -> list[ChunkBatch]:
    return list(stream_batches(DOC, kind, blocks(data, size), CONFIG, limits, BATCHES))


def test_batches_bound_the_count_and_the_manifest_comes_last() -> None:
    out = run(text(400).encode(), 4096)
    *batches, manifest = out
    chunks = [c for b in batches for c in b.chunks]
    assert len(batches) > 5 and all(b.chunks and not b.document.chunk_count_final for b in batches)
    assert all(b.document.chunk_count == Limits().max_chunks for b in batches)
    assert not manifest.chunks and manifest.document.chunk_count_final
    assert manifest.document.chunk_count == len(chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(len(b.chunks) <= BATCHES.max_items for b in batches)
    assert all(c.tokens <= CONFIG.max_tokens for c in chunks)


def test_same_bytes_give_the_same_chunks_however_they_arrive() -> None:
    data = ("Ünïcödé € " + text(300)).encode()
    first = [c for b in run(data, 1000) for c in b.chunks]
    second = [c for b in run(data, 65_537) for c in b.chunks]
    assert first == second


def test_too_many_chunks_stops_the_stream() -> None:
    with pytest.raises(
        ExtractionError, match=r"more chunks than the limit of 50 \(RAGRUN_MAX_CHUNKS\)"
    ):
        run(text(400).encode(), 4096, Limits(max_chunks=50))


def test_invalid_utf8_late_in_the_stream_names_its_offset() -> None:
    data = b"a" * 10_000 + b" \xff"
    with pytest.raises(ExtractionError, match="offset 10001"):
        list(decode_utf8_stream(blocks(data, 999), "x.txt"))


def test_crlf_split_between_blocks_is_one_newline() -> None:
    assert "".join(decode_utf8_stream([b"a\r", b"\nb\r", b"c"], "x.txt")) == "a\nb\nc"


def test_a_single_huge_line_is_cut_into_bounded_sections() -> None:
    sections = list(stream_sections("text/plain", ["word " * 100_000], max_chars=10_000))
    assert len(sections) > 20 and all(len(s.text) <= 20_000 for s in sections)
    lines = list(stream_sections("text/markdown", ["# T\n", "x" * 100_000], max_chars=10_000))
    assert all(len(s.text) <= 40_000 and s.headings == ("T",) for s in lines)


def test_markdown_stream_keeps_heading_paths() -> None:
    md = "# Guide\n\n## Install\n\n" + text(50) + "\n\n## Use\n\nrun it\n"
    *batches, manifest = run(md.encode(), 333, kind="text/markdown")
    chunks = [c for b in batches for c in b.chunks]
    assert chunks[0].metadata["headings"] == ["Guide", "Install"]
    assert chunks[-1].metadata["headings"] == ["Guide", "Use"]
    assert manifest.document.content_type == "text/markdown"


def test_gunzip_yields_bounded_blocks_and_the_cap_stops_a_bomb() -> None:
    bomb = gzip.compress(b"\0" * (8 * 1024 * 1024))
    out = gunzip_blocks(blocks(bomb, 1024), 64 * 1024)
    sizes = []
    with pytest.raises(ExtractionError, match="bomb"):
        for block in capped(out, 1024 * 1024, lambda: "decompression bomb"):
            sizes.append(len(block))
    assert max(sizes) <= 64 * 1024 and sum(sizes) <= 1024 * 1024


def test_gunzip_multi_member_and_invalid() -> None:
    data = gzip.compress(b"one ") + gzip.compress(b"two")
    assert b"".join(gunzip_blocks(blocks(data, 7), 5)) == b"one two"
    with pytest.raises(ExtractionError, match="not valid gzip"):
        list(gunzip_blocks([b"not gzip at all"], 1024))
    with pytest.raises(ExtractionError, match="cut short"):
        list(gunzip_blocks([gzip.compress(b"x" * 1000)[:20]], 1024))
