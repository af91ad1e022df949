"""Token-aware chunking: extracted sections -> chunks sized for one embedding input.

Chunks never cross a section boundary, and each chunk starts with its section's
heading path ("Guide > Install"), so a chunk read on its own still says what it
is about. Within a section, chunks prefer to end where the text has a natural
break (paragraph, then sentence, then line, then word) and only cut inside a
word when a single "word" is too long for a chunk (minified data, base64, ...).
Consecutive chunks of a section repeat roughly ``overlap_tokens`` tokens of whole
sentences or words, so a passage cut in two is still found by either half.

Sizes use :func:`ragrun_common.tokens.count_tokens`, which the embedder also uses
to plan requests; every chunk's ``tokens`` is at most ``max_tokens``.

The work is linear in the size of the text: words are streamed, and only the
words of the chunk being built are held at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from ragrun_chunker.extract import ExtractedDocument, Section
from ragrun_common.tokens import count_tokens

# A run of non-space characters costs at least one token per this many characters
# (see count_tokens), which lets an oversized word be recognised without counting it.
_MIN_CHARS_PER_TOKEN_BOUND = 4
# Whitespace between words is kept as written (code indentation, line breaks)
# unless it is longer than this; then it is condensed to the break it stands for.
_VERBATIM_GAP = 80
_HEADING_SEPARATOR = " > "
_SENTENCE_ENDS = frozenset(".!?…。！？")
_CLOSERS = frozenset("\"')]}»”’")
_WORD = re.compile(r"\S+")
_WHITESPACE = re.compile(r"\s+")

# Natural text repeats its words; memoising their counts saves about a quarter of the time.
_word_tokens = lru_cache(maxsize=1 << 16)(count_tokens)


@dataclass(frozen=True, slots=True)
class ChunkingConfig:
    """How large chunks may be and how much consecutive chunks share, in tokens."""

    max_tokens: int = 256
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, not {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError(
                f"overlap_tokens must be in [0, max_tokens={self.max_tokens}),"
                f" not {self.overlap_tokens}"
            )


@dataclass(frozen=True, slots=True)
class TextChunk:
    """One chunk: its position in the document, text, size and where it came from."""

    index: int
    text: str
    tokens: int
    headings: tuple[str, ...]
    page: int | None


class _Break(IntEnum):
    """The kind of boundary before a unit of text; chunks prefer to end at strong ones."""

    NONE = 0  # inside a word too long for one chunk
    WORD = 1
    LINE = 2
    SENTENCE = 3
    PARAGRAPH = 4


@dataclass(frozen=True, slots=True)
class _Unit:
    """A word (or a piece of an oversized word) as a span of the section's text."""

    start: int
    end: int
    tokens: int
    before: _Break


def chunk(document: ExtractedDocument, config: ChunkingConfig) -> list[TextChunk]:
    """Split ``document`` into chunks of at most ``config.max_tokens`` tokens, in order.

    The result depends only on the document and the config, so re-chunking the
    same object version gives the same chunks (and the same chunk ids).
    """
    return list(iter_chunks(document.sections, config))


def iter_chunks(sections: Iterable[Section], config: ChunkingConfig) -> Iterator[TextChunk]:
    """The chunks of ``sections`` one by one, for documents streamed section by section."""
    index = 0
    for section in sections:
        for text in _section_chunks(section, config):
            yield TextChunk(
                index=index,
                text=text,
                tokens=count_tokens(text),
                headings=section.headings,
                page=section.page,
            )
            index += 1


def _section_chunks(section: Section, config: ChunkingConfig) -> Iterator[str]:
    # The heading path may take at most half a chunk; the body gets the rest.
    prefix = _heading_prefix(section.headings, config.max_tokens // 2)
    budget = config.max_tokens - count_tokens(prefix)
    text = section.text
    for units in _pack(_units(text, budget), budget, config.overlap_tokens):
        yield prefix + _render(text, units)


def _heading_prefix(headings: tuple[str, ...], limit: int) -> str:
    """The heading path line that starts each chunk, within ``limit`` tokens.

    Outer headings are dropped first when the path is too long: the innermost
    ones say the most about the text below them.
    """
    titles = [title for title in (_WHITESPACE.sub(" ", h).strip() for h in headings) if title]
    while titles:
        prefix = _HEADING_SEPARATOR.join(titles) + "\n\n"
        if count_tokens(prefix) <= limit:
            return prefix
        titles.pop(0)
    return ""


def _units(text: str, budget: int) -> Iterator[_Unit]:
    """The words of ``text`` in order, each within ``budget`` tokens."""
    previous: tuple[int, int] | None = None  # span of the previous word
    for match in _WORD.finditer(text):
        start, end = match.span()
        before = _Break.PARAGRAPH if previous is None else _break_between(text, *previous, start)
        previous = (start, end)
        if end - start > _MIN_CHARS_PER_TOKEN_BOUND * budget:
            yield from _hard_split(text, start, end, budget, before)
            continue
        tokens = _word_tokens(match.group())
        if tokens <= budget:
            yield _Unit(start, end, tokens, before)
        else:
            yield from _hard_split(text, start, end, budget, before)


def _break_between(text: str, word_start: int, word_end: int, next_start: int) -> _Break:
    """The boundary between the word at ``word_start:word_end`` and the next word."""
    newlines = text.count("\n", word_end, next_start)
    if newlines >= 2:
        return _Break.PARAGRAPH
    end = word_end
    while end > word_start and text[end - 1] in _CLOSERS:
        end -= 1
    if end > word_start and text[end - 1] in _SENTENCE_ENDS:
        return _Break.SENTENCE
    return _Break.LINE if newlines else _Break.WORD


def _hard_split(text: str, start: int, end: int, budget: int, before: _Break) -> Iterator[_Unit]:
    """Cut the oversized word ``text[start:end]`` into consecutive pieces within ``budget``.

    Each piece is counted once or a few times, so the work stays linear in the
    word's length however long it is.
    """
    position = start
    while position < end:
        length = min(end - position, _MIN_CHARS_PER_TOKEN_BOUND * budget)
        tokens = count_tokens(text[position : position + length])
        while tokens > budget:
            # Shrink in proportion to the excess; a single character is one token.
            length = max(1, min(length - 1, length * budget // tokens))
            tokens = count_tokens(text[position : position + length])
        yield _Unit(position, position + length, tokens, before)
        before = _Break.NONE
        position += length


def _pack(units: Iterable[_Unit], budget: int, overlap: int) -> Iterator[list[_Unit]]:
    """Group ``units`` into chunks of at most ``budget`` tokens, consecutive ones overlapping.

    Every chunk holds at least one unit that the previous chunk did not, so the
    loop always advances.
    """
    window: list[_Unit] = []
    total = 0
    carried = 0  # leading units of ``window`` repeated from the previous chunk
    for unit in units:
        while total + unit.tokens > budget:
            cut = _choose_cut(window, carried, unit, budget)
            emitted, rest = window[:cut], window[cut:]
            yield emitted
            rest_tokens = sum(u.tokens for u in rest)
            room = budget - rest_tokens - unit.tokens
            if room < 0:  # ``unit`` needs another cut anyway; overlap into that chunk
                room = budget - rest_tokens
            tail = _overlap_tail(emitted, carried, min(overlap, room))
            window = tail + rest
            carried = len(tail)
            total = sum(u.tokens for u in window)
        window.append(unit)
        total += unit.tokens
    if len(window) > carried:
        yield window


def _choose_cut(window: list[_Unit], carried: int, following: _Unit, budget: int) -> int:
    """How many units of ``window`` the next chunk takes (at least one new one).

    Among the cut points that fill at least half a chunk, take the strongest
    boundary, the latest of equally strong ones; ``following`` is the unit that
    did not fit, so cutting after the whole window is the boundary before it.
    """
    best, best_break = len(window), following.before
    filled = sum(u.tokens for u in window)
    for cut in range(len(window) - 1, carried, -1):
        filled -= window[cut].tokens
        if 2 * filled < budget:
            break
        if window[cut].before > best_break:
            best, best_break = cut, window[cut].before
    return best


def _overlap_tail(emitted: list[_Unit], carried: int, limit: int) -> list[_Unit]:
    """The end of ``emitted`` that the next chunk repeats: at most ``limit`` tokens.

    Whole sentences (or lines) are preferred when they give at least half the
    allowance; otherwise as many whole words as fit. Only units new in
    ``emitted`` are repeated, and never all of them.
    """
    if limit <= 0:
        return []
    tokens = 0
    sentence_start: int | None = None
    sentence_tokens = 0
    word_start: int | None = None
    for index in range(len(emitted) - 1, max(carried, 1) - 1, -1):
        unit = emitted[index]
        tokens += unit.tokens
        if tokens > limit:
            break
        if unit.before >= _Break.LINE:
            sentence_start, sentence_tokens = index, tokens
        if unit.before >= _Break.WORD:
            word_start = index
    if sentence_start is not None and 2 * sentence_tokens >= limit:
        return emitted[sentence_start:]
    return emitted[word_start:] if word_start is not None else []


def _render(text: str, units: list[_Unit]) -> str:
    """The text spanned by ``units``, with overly long whitespace runs condensed."""
    parts: list[str] = []
    run_start = units[0].start
    previous_end = units[0].end
    for unit in units[1:]:
        if unit.start - previous_end > _VERBATIM_GAP:
            parts.append(text[run_start:previous_end])
            parts.append(_condensed_gap(text, previous_end, unit.start))
            run_start = unit.start
        previous_end = unit.end
    parts.append(text[run_start:previous_end])
    return "".join(parts)


def _condensed_gap(text: str, start: int, end: int) -> str:
    newlines = text.count("\n", start, end)
    return "\n\n" if newlines >= 2 else "\n" if newlines else " "
