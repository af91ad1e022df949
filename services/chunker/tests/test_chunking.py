"""Chunking as a user sees it: sizes, headings, overlap, order and pathological input."""

import random

import pytest

from ragrun_chunker.chunking import ChunkingConfig, TextChunk, chunk
from ragrun_chunker.extract import ExtractedDocument, Section, extract
from ragrun_common.tokens import count_tokens

_VOCABULARY = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "while",
    "embeddings",
    "retrieve",
    "passages",
    "from",
    "documents",
    "stored",
    "in",
    "postgres",
    "with",
    "vectors",
    "indexed",
    "for",
    "search",
]


def prose(paragraphs: int, seed: int = 7) -> str:
    """Deterministic English-like text: paragraphs of sentences of words."""
    rng = random.Random(seed)
    out = []
    for _ in range(paragraphs):
        sentences = []
        for _ in range(rng.randint(2, 6)):
            words = [rng.choice(_VOCABULARY) for _ in range(rng.randint(4, 18))]
            sentences.append(" ".join(words).capitalize() + ".")
        out.append(" ".join(sentences))
    return "\n\n".join(out)


def document(*sections: Section) -> ExtractedDocument:
    return ExtractedDocument(content_type="text/plain", sections=list(sections))


def body(item: TextChunk) -> str:
    """The chunk's text without its heading-path line."""
    prefix = " > ".join(item.headings) + "\n\n" if item.headings else ""
    assert item.text.startswith(prefix)
    return item.text[len(prefix) :]


def test_chunks_stay_within_max_tokens_and_report_their_size() -> None:
    config = ChunkingConfig(max_tokens=64, overlap_tokens=8)
    chunks = chunk(document(Section(prose(40), headings=("Manual", "Setup"))), config)
    assert len(chunks) > 10
    for item in chunks:
        assert item.tokens == count_tokens(item.text)
        assert item.tokens <= config.max_tokens


def test_indexes_run_in_document_order_across_sections() -> None:
    doc = document(
        Section(prose(5, seed=1), headings=("A",), page=1),
        Section(prose(5, seed=2), headings=("B",), page=2),
    )
    chunks = chunk(doc, ChunkingConfig(max_tokens=48, overlap_tokens=0))
    assert [item.index for item in chunks] == list(range(len(chunks)))
    pages = [item.page or 0 for item in chunks]
    assert pages == sorted(pages) and set(pages) == {1, 2}


def test_every_chunk_starts_with_its_heading_path_and_stays_in_its_section() -> None:
    doc = extract(
        b"# Guide\n\n## Install\n\n" + prose(6, seed=3).encode() + b"\n\n## Use\n\nCall it.\n",
        name="guide.md",
    )
    chunks = chunk(doc, ChunkingConfig(max_tokens=40, overlap_tokens=6))
    sections = {section.headings: section.text for section in doc.sections}
    assert {item.headings for item in chunks} == {("Guide", "Install"), ("Guide", "Use")}
    for item in chunks:
        assert item.text.startswith(" > ".join(item.headings) + "\n\n")
        assert body(item) in sections[item.headings]
    assert chunks[-1].text == "Guide > Use\n\n## Use\n\nCall it."


def test_without_overlap_chunks_cover_the_text_exactly_once() -> None:
    text = prose(30)
    chunks = chunk(document(Section(text)), ChunkingConfig(max_tokens=50, overlap_tokens=0))
    assert " ".join(" ".join(body(item).split()) for item in chunks) == " ".join(text.split())


def test_consecutive_chunks_of_a_section_overlap() -> None:
    text = prose(30)
    config = ChunkingConfig(max_tokens=60, overlap_tokens=12)
    chunks = chunk(document(Section(text, headings=("Doc",))), config)
    for previous, current in zip(chunks, chunks[1:], strict=False):
        shared = _shared_words(body(previous), body(current))
        assert shared, (previous.text, current.text)
        assert count_tokens(" ".join(shared)) <= config.overlap_tokens
    # The overlap repeats text; it never drops any.
    words = text.split()
    assert all(word in words for item in chunks for word in body(item).split())


def _shared_words(previous: str, current: str) -> list[str]:
    """The longest run of words that ends ``previous`` and starts ``current``."""
    before, after = previous.split(), current.split()
    for size in range(min(len(before), len(after)) - 1, 0, -1):
        if before[-size:] == after[:size]:
            return after[:size]
    return []


def test_chunks_end_at_paragraph_breaks_when_paragraphs_fit() -> None:
    paragraphs = [f"Paragraph {n} says something short. It ends here." for n in range(20)]
    chunks = chunk(
        document(Section("\n\n".join(paragraphs))),
        ChunkingConfig(max_tokens=50, overlap_tokens=0),
    )
    for item in chunks:
        assert all(part in paragraphs for part in body(item).split("\n\n"))


def test_a_sentence_longer_than_a_chunk_is_split_between_words() -> None:
    text = " ".join(["word"] * 500)
    chunks = chunk(document(Section(text)), ChunkingConfig(max_tokens=32, overlap_tokens=4))
    assert all(item.tokens <= 32 for item in chunks)
    assert all(set(body(item).split(" ")) == {"word"} for item in chunks)


def test_chunking_is_deterministic() -> None:
    doc = document(Section(prose(20), headings=("X",)), Section(prose(3, seed=9), page=4))
    config = ChunkingConfig(max_tokens=45, overlap_tokens=10)
    assert chunk(doc, config) == chunk(doc, config)


def test_a_huge_line_without_spaces_is_cut_into_pieces() -> None:
    text = ("abcdefghij" * 500_000)[:5_000_000]
    config = ChunkingConfig()
    chunks = chunk(document(Section(text)), config)
    assert all(item.tokens <= config.max_tokens for item in chunks)
    assert "".join(item.text for item in chunks) == text


def test_long_runs_of_whitespace_are_condensed() -> None:
    text = "start" + " " * 10_000 + "middle" + "\n" + " " * 500 + "\n" + "end"
    (only,) = chunk(document(Section(text)), ChunkingConfig())
    assert only.text == "start middle\n\nend"


def test_an_overlong_heading_path_keeps_its_innermost_headings() -> None:
    headings = ("word " * 40, "Install")
    chunks = chunk(document(Section("Body text.", headings=headings)), ChunkingConfig(32, 4))
    assert [item.text for item in chunks] == ["Install\n\nBody text."]


def test_whitespace_only_sections_give_no_chunks() -> None:
    assert chunk(document(Section("  \n "), Section("x")), ChunkingConfig()) == [
        TextChunk(index=0, text="x", tokens=1, headings=(), page=None)
    ]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_config_is_validated(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError):
        ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap)
