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

The work is linear in the size of the text, and memory holds one slice of a
section's words at a time. Large objects (a 1 GiB text) go through here word by
word, so the per-word work is kept to C-level loops: a slice of text is split
into words with one regex, words are described by parallel arrays (start, end,
running token total, kind of break before them) instead of an object each, the
rarer sentence and line breaks are found by regexes, and a chunk's end is found
by binary search on the running token totals rather than by adding words one by
one. Chunks and their order are exactly those of adding words one by one.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from itertools import accumulate
from operator import add, itemgetter
from typing import NamedTuple

from ragrun_chunker.extract import ExtractedDocument, Section
from ragrun_common.tokens import count_tokens

# A run of non-space characters costs at least one token per this many characters
# (see count_tokens), which lets an oversized word be recognised without counting it.
_MIN_CHARS_PER_TOKEN_BOUND = 4
# Whitespace between words is kept as written (code indentation, line breaks)
# unless it is longer than this; then it is condensed to the break it stands for.
_VERBATIM_GAP = 80
_HEADING_SEPARATOR = " > "
_SENTENCE_ENDS = ".!?…。！？"
_CLOSERS = "\"')]}»”’"
_WORD = re.compile(r"\S+")
_WORD_AND_GAP = re.compile(r"(\S+)(\s*)")  # a word and the whitespace after it
_WHITESPACE = re.compile(r"\s+")
_LONG_GAP = re.compile(rf"\s{{{_VERBATIM_GAP + 1},}}")
# A word that ends a sentence: its last character, closers aside, ends sentences.
_SENTENCE_END = re.compile(f"[{re.escape(_SENTENCE_ENDS)}][{re.escape(_CLOSERS)}]*(?!\\S)")
# A line break between words, and whether the same gap holds a second one (a paragraph).
_LINE_BREAK = re.compile(r"\n[^\S\n]*(\n)?")
# Characters of a section scanned into words at a time (then up to the next word).
_SLICE_CHARS = 1 << 15
# Natural text repeats its words: their counts are memoised, the short words only
# (they are the repeated ones), up to this many before the memo starts over.
_MEMO_WORD_CHARS = 32
_MEMO_WORDS = 1 << 16


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


_LINE_OR_STRONGER = re.compile(b"[%c-%c]" % (_Break.LINE, _Break.PARAGRAPH))
_WORD_OR_STRONGER = re.compile(b"[%c-%c]" % (_Break.WORD, _Break.PARAGRAPH))


class _TokenMemo(dict[str, int]):
    """Token counts of words, looked up with ``memo[word]`` (a C-level lookup when known)."""

    def __missing__(self, word: str) -> int:
        tokens = count_tokens(word)
        if len(word) <= _MEMO_WORD_CHARS:
            if len(self) >= _MEMO_WORDS:
                self.clear()
            self[word] = tokens
        return tokens


_word_tokens = _TokenMemo()
_first, _second = itemgetter(0), itemgetter(1)


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
        for text, tokens in _section_chunks(section, config):
            yield TextChunk(
                index=index,
                text=text,
                tokens=tokens,
                headings=section.headings,
                page=section.page,
            )
            index += 1


def _section_chunks(section: Section, config: ChunkingConfig) -> Iterator[tuple[str, int]]:
    """The texts of a section's chunks and their token counts."""
    # The heading path may take at most half a chunk; the body gets the rest.
    prefix = _heading_prefix(section.headings, config.max_tokens // 2)
    prefix_tokens = count_tokens(prefix)
    budget = config.max_tokens - prefix_tokens
    text = section.text
    for span in _pack(_Units(text, budget), budget, config.overlap_tokens):
        body = text[span.start : span.end]
        if span.long_gaps:
            body = _LONG_GAP.sub(_condensed_gap, body)
        chunk_text = prefix + body
        # Tokens never span whitespace, so a chunk of whole words (the prefix ends
        # with a blank line) has the sum of their counts; pieces of a cut word
        # joined again may count differently.
        tokens = prefix_tokens + span.tokens if span.whole_words else count_tokens(chunk_text)
        yield chunk_text, tokens


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


class _Span(NamedTuple):
    """A chunk of a section as :func:`_pack` finds it."""

    start: int  # in the section's text
    end: int
    tokens: int
    whole_words: bool  # no word is cut inside it (its pieces would count differently)
    long_gaps: bool  # whitespace in it to condense


class _Units:
    """The units of a section's text (its words, or pieces of an oversized word), in order.

    Held as parallel arrays over a sliding range of the text: unit ``i`` spans
    ``text[starts[i]:ends[i]]``, has ``totals[i + 1] - totals[i]`` tokens (each
    within ``budget``) and ``breaks[i]`` (a :class:`_Break`) before it.
    :meth:`scan` appends the units of the next slice of text, :meth:`drop`
    forgets units no longer needed. ``long_gaps`` are where the gaps between
    words longer than ``_VERBATIM_GAP`` start.
    """

    def __init__(self, text: str, budget: int) -> None:
        self.text = text
        self.budget = budget
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.totals: list[int] = [0]  # running token total before each unit, and after all
        self.breaks = bytearray()
        self.long_gaps: list[int] = []
        first = _WORD.search(text)
        self._position = first.start() if first else len(text)  # where the next slice starts
        self._last_word: tuple[int, int] | None = None  # span of the last word scanned

    def __len__(self) -> int:
        return len(self.starts)

    def drop(self, count: int) -> None:
        """Forget the first ``count`` units; indexes shift down by ``count``."""
        del self.starts[:count], self.ends[:count], self.totals[:count], self.breaks[:count]
        kept = self.starts[0] if self.starts else self._position
        del self.long_gaps[: bisect_left(self.long_gaps, kept)]

    def scan(self) -> bool:
        """Append the units of the next slice of the text; False when the text is done."""
        text, position = self.text, self._position
        if position >= len(text):
            return False
        end = len(text)
        if end - position > _SLICE_CHARS:
            gap = _WHITESPACE.search(text, position + _SLICE_CHARS)
            if gap is not None:
                end = gap.end()  # the next slice starts with a whole word
        self._position = end
        pairs = _WORD_AND_GAP.findall(text, position, end)
        words = list(map(_first, pairs))
        lengths = list(map(len, words))
        gaps = list(map(len, map(_second, pairs)))
        starts = list(accumulate(map(add, lengths, gaps), initial=position))
        starts.pop()  # where the next slice starts
        ends = list(map(add, starts, lengths))
        if max(gaps) > _VERBATIM_GAP:
            self.long_gaps += [e for e, n in zip(ends, gaps, strict=True) if n > _VERBATIM_GAP]
        breaks = self._breaks(position, end, starts, ends)
        self._last_word = starts[-1], ends[-1]
        longest = _MIN_CHARS_PER_TOKEN_BOUND * self.budget
        if max(lengths) <= longest:
            tokens = list(map(_word_tokens.__getitem__, words))
        else:  # an oversized word is not counted whole (it may be megabytes)
            tokens = [
                _word_tokens[w] if n <= longest else self.budget + 1
                for w, n in zip(words, lengths, strict=True)
            ]
        if max(tokens) > self.budget:
            starts, ends, tokens, breaks = self._cut_oversized(starts, ends, tokens, breaks)
        self.starts += starts
        self.ends += ends
        self.breaks += breaks
        # Continue the running total from its last value (popped: accumulate repeats it).
        self.totals += accumulate(tokens, initial=self.totals.pop())
        return True

    def _breaks(self, position: int, end: int, starts: list[int], ends: list[int]) -> bytearray:
        """The break before each word of ``text[position:end]`` (words at ``starts``/``ends``).

        Every break is the strongest that applies: most are between words on
        one line; line and paragraph breaks are found by the newlines in the
        gaps, sentence ends by the words' last characters.
        """
        text, count = self.text, len(starts)
        breaks = bytearray([_Break.WORD]) * count
        last = self._last_word
        breaks[0] = _Break.PARAGRAPH if last is None else _break_between(text, *last, position)
        for match in _SENTENCE_END.finditer(text, position, end):
            after = bisect_left(ends, match.end()) + 1  # the word after the sentence's last
            if after < count:
                breaks[after] = _Break.SENTENCE
        for match in _LINE_BREAK.finditer(text, position, end):
            after = bisect_right(starts, match.start())  # the word after the newline
            if match.group(1) and after < count:
                breaks[after] = _Break.PARAGRAPH
            elif after < count and breaks[after] == _Break.WORD:
                breaks[after] = _Break.LINE  # a sentence end on a line's end stays one
        # The break before the next slice's first word is decided when it is scanned.
        return breaks

    def _cut_oversized(
        self, starts: list[int], ends: list[int], tokens: list[int], breaks: bytearray
    ) -> tuple[list[int], list[int], list[int], bytearray]:
        """The same units with each word over the budget replaced by its pieces."""
        out_starts: list[int] = []
        out_ends: list[int] = []
        out_tokens: list[int] = []
        out_breaks = bytearray()
        for start, end, count, before in zip(starts, ends, tokens, breaks, strict=True):
            if count <= self.budget:
                pieces: Iterable[tuple[int, int, int]] = [(start, end, count)]
            else:
                pieces = _hard_split(self.text, start, end, self.budget)
            for piece_start, piece_end, piece_tokens in pieces:
                out_starts.append(piece_start)
                out_ends.append(piece_end)
                out_tokens.append(piece_tokens)
                out_breaks.append(before)
                before = _Break.NONE
        return out_starts, out_ends, out_tokens, out_breaks


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


def _hard_split(text: str, start: int, end: int, budget: int) -> Iterator[tuple[int, int, int]]:
    """Cut the oversized word ``text[start:end]`` into pieces within ``budget``.

    Yields (start, end, tokens) of each piece in turn.

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
        yield position, position + length, tokens
        position += length


def _pack(units: _Units, budget: int, overlap: int) -> Iterator[_Span]:
    """Group ``units`` into chunks of at most ``budget`` tokens, consecutive ones overlapping.

    The chunk being built is the units ``first:`` up to
    the first unit that does not fit, found by binary search on the running
    totals; ``carried`` of them were repeated from the previous chunk. Every
    chunk holds at least one unit that the previous chunk did not, so the loop
    always advances.
    """
    totals = units.totals
    first = carried = 0
    while True:
        # ``full``: the first unit that does not fit after the units from ``first``.
        full = bisect_right(totals, totals[first] + budget) - 1
        if full >= len(units):
            units.drop(first)
            first = 0
            if units.scan():
                continue
            break
        cut = _choose_cut(units, first, carried, full, budget)
        yield _span(units, first, cut)
        rest_tokens = totals[full] - totals[cut]
        room = budget - rest_tokens - (totals[full + 1] - totals[full])
        if room < 0:  # unit ``full`` needs another cut anyway; overlap into that chunk
            room = budget - rest_tokens
        first = _overlap_start(units, first, cut, carried, min(overlap, room))
        carried = cut - first
    if len(units) - first > carried:
        yield _span(units, first, len(units))


def _span(units: _Units, first: int, end: int) -> _Span:
    """The chunk of units ``first:end``."""
    start, stop = units.starts[first], units.ends[end - 1]
    gap = bisect_left(units.long_gaps, start)
    return _Span(
        start=start,
        end=stop,
        tokens=units.totals[end] - units.totals[first],
        whole_words=units.breaks.find(_Break.NONE, first + 1, end) < 0,
        long_gaps=gap < len(units.long_gaps) and units.long_gaps[gap] < stop,
    )


def _choose_cut(units: _Units, first: int, carried: int, following: int, budget: int) -> int:
    """Where the chunk of units ``first:following`` ends (after at least one new unit).

    Among the cut points that fill at least half a chunk, take the strongest
    boundary, the latest of equally strong ones; ``following`` is the unit that
    did not fit, so cutting before it is the boundary it starts with.
    """
    totals, breaks = units.totals, units.breaks
    # Cutting before unit ``lowest`` or later leaves at least half a chunk in it.
    lowest = max(first + carried + 1, bisect_left(totals, totals[first] + (budget + 1) // 2))
    for kind in range(_Break.PARAGRAPH, breaks[following], -1):
        at = breaks.rfind(kind, lowest, following)
        if at >= 0:
            return at
    return following


def _overlap_start(units: _Units, first: int, cut: int, carried: int, limit: int) -> int:
    """Where the next chunk starts: the end of chunk ``first:cut`` it repeats, within ``limit``.

    Whole sentences (or lines) are preferred when they give at least half the
    allowance; otherwise as many whole words as fit. Only units new in the
    chunk are repeated, and never all of them; ``cut`` when none is.
    """
    if limit <= 0:
        return cut
    totals, breaks = units.totals, units.breaks
    lowest = max(first + max(carried, 1), bisect_left(totals, totals[cut] - limit))
    sentence = _LINE_OR_STRONGER.search(breaks, lowest, cut)
    if sentence is not None and 2 * (totals[cut] - totals[sentence.start()]) >= limit:
        return sentence.start()
    word = _WORD_OR_STRONGER.search(breaks, lowest, cut)
    return word.start() if word is not None else cut


def _condensed_gap(match: re.Match[str]) -> str:
    newlines = match.group().count("\n")
    return "\n\n" if newlines >= 2 else "\n" if newlines else " "
