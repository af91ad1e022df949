"""Text extraction: the bytes of an uploaded object -> sections of plain text.

Each supported content type has one extractor in a small registry. Extractors
keep the document's structure that matters for retrieval: Markdown and HTML
are cut into sections at their headings (each section knows its heading path),
PDFs into one section per page (each section knows its page number). Anything
that cannot yield text (unsupported type, broken or encrypted PDF, text that is
not UTF-8, no text at all) raises :class:`ExtractionError`, a permanent error:
retrying the same bytes cannot help, so the adapter acks and records the reason.
"""

from __future__ import annotations

import codecs
import html as html_entities
import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag
from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from ragrun_common.errors import PermanentError

PLAIN = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"

_SNIFF_BYTES = 1024
_UTF8_BOM = b"\xef\xbb\xbf"

_EXTENSIONS = {
    ".txt": PLAIN,
    ".text": PLAIN,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".pdf": PDF,
}
_DECLARED_TYPES = {
    "text/plain": PLAIN,
    "text/markdown": MARKDOWN,
    "text/x-markdown": MARKDOWN,
    "text/html": HTML,
    "application/xhtml+xml": HTML,
    "application/pdf": PDF,
    "application/x-pdf": PDF,
}
# Types that say "some bytes" rather than what the bytes are: they never decide.
_GENERIC_TYPES = frozenset(
    {"application/octet-stream", "binary/octet-stream", "application/binary", "application/unknown"}
)
_HTML_START = re.compile(rb"\s*<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE)


class ExtractionError(PermanentError):
    """The object's bytes cannot be turned into text; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text under one heading path (or on one PDF page).

    ``headings`` is the path of enclosing headings, outermost first, e.g.
    ``("Guide", "Install")``; chunks never span two sections, so every chunk can
    carry the headings it belongs to.
    """

    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass(frozen=True, slots=True)
class ExtractedDocument:
    """The text of one object, in document order, with the type it was read as."""

    content_type: str
    sections: list[Section]
    pages: int | None = None

    @property
    def text(self) -> str:
        """All sections' text, separated by blank lines."""
        return "\n\n".join(section.text for section in self.sections)


@dataclass(frozen=True, slots=True)
class _Request:
    name: str
    max_pages: int


_Extractor = Callable[[bytes, _Request], ExtractedDocument]


def detect_content_type(name: str, declared: str | None, head: bytes) -> str:
    """The supported content type of an object, from its first bytes, name and declared type.

    The bytes are trusted first (a PDF uploaded as ``report.txt`` is still a PDF),
    then the file extension, then the declared type, because uploaders often
    leave the declared type at a generic default such as
    ``application/octet-stream``, which therefore never counts.
    """
    start = head[:_SNIFF_BYTES].removeprefix(_UTF8_BOM)
    if start.lstrip().startswith(b"%PDF-"):
        return PDF
    if _HTML_START.match(start):
        return HTML
    by_extension = _EXTENSIONS.get(PurePosixPath(name).suffix.lower())
    if by_extension is not None:
        return by_extension
    media_type = (declared or "").split(";", 1)[0].strip().lower()
    by_declared = _DECLARED_TYPES.get(media_type)
    if by_declared is not None:
        return by_declared
    supported = ", ".join(sorted(_EXTRACTORS))
    if not media_type or media_type in _GENERIC_TYPES:
        raise ExtractionError(
            f"cannot tell the content type of {name!r} (declared {media_type or 'nothing'!r});"
            f" name it .txt, .md, .html or .pdf (supported: {supported})"
        )
    raise ExtractionError(
        f"unsupported content type {media_type!r} for {name!r} (supported: {supported})"
    )


def extract(
    data: bytes, *, name: str, content_type: str | None = None, max_pages: int = 2000
) -> ExtractedDocument:
    """The text of the object ``name`` holding ``data``, split into sections.

    ``content_type`` is the type the uploader declared (it is only a hint, see
    :func:`detect_content_type`). PDFs with more than ``max_pages`` pages are
    refused, which bounds the work one object can cause.
    """
    if max_pages < 1:
        raise ValueError("max_pages must be positive")
    if not data or data.isspace():
        raise ExtractionError(f"no text found in {name!r}: the file is empty")
    kind = detect_content_type(name, content_type, data[:_SNIFF_BYTES])
    document = _EXTRACTORS[kind](data, _Request(name=name, max_pages=max_pages))
    if not any(section.text.strip() for section in document.sections):
        raise ExtractionError(f"no text found in {name!r} (read as {kind})")
    return document


# --- text/plain ---------------------------------------------------------------------------


def _decode_utf8(data: bytes, name: str) -> str:
    # No guessing of legacy encodings: a wrong guess silently indexes mojibake.
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ExtractionError(
            f"{name!r} is not valid UTF-8 text (invalid byte at offset {e.start});"
            " save it as UTF-8 and upload it again"
        ) from e
    if "\x00" in text:
        raise ExtractionError(
            f"{name!r} is not UTF-8 text: it contains NUL characters (binary or UTF-16?)"
        )
    return _normalise_newlines(text)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _extract_plain(data: bytes, request: _Request) -> ExtractedDocument:
    text = _decode_utf8(data, request.name).strip()
    # Paragraphs stay together in one section: splitting them is chunking's job.
    return ExtractedDocument(content_type=PLAIN, sections=[Section(text)] if text else [])


# --- streamed text (plain and Markdown objects too large to hold) -------------------------

STREAMABLE = frozenset({PLAIN, MARKDOWN})


def decode_utf8_stream(blocks: Iterable[bytes], name: str) -> Iterator[str]:
    """The text of a UTF-8 byte stream, piece by piece, with newlines normalised.

    Fails like :func:`extract` does (invalid UTF-8, NUL characters) as soon as
    the offending bytes arrive, and when the stream holds no text at all.
    """
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset = 0  # bytes consumed before the current block
    pending_cr = False  # a "\r" at the end of a piece may start a "\r\n"
    seen_text = False
    final = False
    iterator = iter(blocks)
    while not final:
        block = next(iterator, None)
        final = block is None
        try:
            text = decoder.decode(block or b"", final=final)
        except UnicodeDecodeError as e:
            raise ExtractionError(
                f"{name!r} is not valid UTF-8 text (invalid byte at offset {offset + e.start});"
                " save it as UTF-8 and upload it again"
            ) from e
        offset += len(block or b"")
        if "\x00" in text:
            raise ExtractionError(
                f"{name!r} is not UTF-8 text: it contains NUL characters (binary or UTF-16?)"
            )
        if pending_cr:
            text = "\r" + text
        pending_cr = text.endswith("\r") and not final
        if pending_cr:
            text = text[:-1]
        text = _normalise_newlines(text)
        seen_text = seen_text or not text.isspace() and bool(text)
        if text:
            yield text
    if not seen_text:
        raise ExtractionError(f"no text found in {name!r}: the file is empty")


def _segment_end(buffer: str, limit: int) -> int:
    """Where to end the segment starting ``buffer``: the last strong break before ``limit``.

    Depends only on ``buffer[:limit]``, so the segments of a text are the same
    however it arrived in pieces.
    """
    for separator in ("\n\n", "\n", " ", "\t"):
        at = buffer.rfind(separator, limit // 2, limit)
        if at >= 0:
            return at + len(separator)
    return limit


def _plain_sections(pieces: Iterable[str], max_chars: int) -> Iterator[Section]:
    buffer = ""
    for piece in pieces:
        buffer += piece
        while len(buffer) >= 2 * max_chars:
            end = _segment_end(buffer, max_chars)
            if text := buffer[:end].strip():
                yield Section(text)
            buffer = buffer[end:]
    while buffer:
        end = _segment_end(buffer, max_chars) if len(buffer) > max_chars else len(buffer)
        if text := buffer[:end].strip():
            yield Section(text)
        buffer = buffer[end:]


def _lines(pieces: Iterable[str], max_chars: int) -> Iterator[str]:
    """The lines of a text arriving in pieces; a line longer than ``max_chars`` comes in parts."""
    partial = ""
    for piece in pieces:
        partial += piece
        start = 0
        while (end := partial.find("\n", start)) >= 0:
            yield partial[start:end]
            start = end + 1
        partial = partial[start:]
        while len(partial) >= 2 * max_chars:
            end = _segment_end(partial, max_chars)
            yield partial[:end]
            partial = partial[end:]
    yield partial


def stream_sections(
    kind: str, pieces: Iterable[str], max_chars: int = 1 << 20
) -> Iterator[Section]:
    """The sections of a streamed plain or Markdown text, each at most about ``2 * max_chars``.

    Sections are cut where the whole-object extractors would not cut (at a
    paragraph break near ``max_chars``), so a streamed text's chunks may differ
    slightly from those of the same text read whole; they are still the same
    every time for the same bytes.
    """
    if kind == PLAIN:
        return _plain_sections(pieces, max_chars)
    if kind == MARKDOWN:
        return _markdown_sections(_lines(pieces, max_chars), max_chars)
    raise ValueError(f"{kind} is not streamed")


# --- sections under headings (shared by Markdown and HTML) --------------------------------


class _SectionBuilder:
    """Collects lines into sections, tracking the heading path.

    A section holding nothing but its heading is dropped when a deeper heading
    follows at once: its title lives on in the deeper sections' heading paths.
    """

    def __init__(self, max_chars: int | None = None) -> None:
        self._sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._lines: list[str] = []
        self._chars = 0
        self._bare_heading = False
        # When set, a section is cut into parts of about this size (at a blank
        # line if there is one soon), so a streamed document never holds a whole
        # long section; the parts keep the section's heading path.
        self._max_chars = max_chars

    def heading(self, level: int, title: str, line: str) -> None:
        """Start a new section under the heading ``title`` of ``level`` (1 = outermost)."""
        deeper = bool(self._path) and level > self._path[-1][0]
        self._flush(drop_bare=deeper)
        while self._path and self._path[-1][0] >= level:
            self._path.pop()
        self._path.append((level, title))
        self._lines = [line]
        self._chars = len(line) + 1
        self._bare_heading = True

    def line(self, text: str) -> None:
        """Add one line (an empty one is a paragraph break) to the current section."""
        text = text.rstrip()
        if not text and (not self._lines or not self._lines[-1]):
            return  # one blank line is enough to mark a paragraph
        if text:
            self._bare_heading = False
        limit = self._max_chars
        if limit is not None and (self._chars >= 2 * limit or (self._chars >= limit and not text)):
            self._flush(drop_bare=False)
        self._lines.append(text)
        self._chars += len(text) + 1

    def ready(self) -> list[Section]:
        """The sections completed so far, handed over once (for streaming)."""
        done, self._sections = self._sections, []
        return done

    def finish(self) -> list[Section]:
        """The sections collected so far, in document order."""
        self._flush(drop_bare=False)
        return self._sections

    def _flush(self, *, drop_bare: bool) -> None:
        text = "\n".join(self._lines).strip("\n")
        if text.strip() and not (drop_bare and self._bare_heading):
            headings = tuple(title for _, title in self._path)
            self._sections.append(Section(text=text, headings=headings))
        self._lines = []
        self._chars = 0
        self._bare_heading = False


# --- text/markdown ------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t]*$")
_ATX_CLOSING = re.compile(r"(?:^|[ \t]+)#+$")


def _markdown_sections(lines: Iterable[str], max_chars: int | None = None) -> Iterator[Section]:
    """The sections of the Markdown ``lines``, as soon as each is complete."""
    builder = _SectionBuilder(max_chars)
    fence: str | None = None  # the opening fence while inside a fenced code block
    for line in lines:
        if fence is not None:
            stripped = line.strip()
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = None
            builder.line(line)
        elif (opening := _FENCE_OPEN.match(line)) is not None:
            fence = opening.group(1)
            builder.line(line)
        else:
            heading = _ATX_HEADING.match(line)
            title = _ATX_CLOSING.sub("", heading.group(2) or "").strip() if heading else ""
            if heading is not None and title:
                # The heading line stays in the text too, so its words are searchable.
                builder.heading(len(heading.group(1)), title, line.strip())
            else:
                builder.line(line)
        yield from builder.ready()
    yield from builder.finish()


def _extract_markdown(data: bytes, request: _Request) -> ExtractedDocument:
    lines = _decode_utf8(data, request.name).split("\n")
    return ExtractedDocument(content_type=MARKDOWN, sections=list(_markdown_sections(lines)))


# --- text/html ----------------------------------------------------------------------------

# Elements whose content is never document text.
_HTML_DROPPED = frozenset(
    {
        "script",
        "style",
        "noscript",
        "template",
        "head",
        "title",
        "meta",
        "link",
        "base",
        "svg",
        "canvas",
        "iframe",
        "object",
        "embed",
    }
)
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
# Elements that end a paragraph (blank line) or a line around them.
_HTML_PARAGRAPHS = frozenset(
    {
        "p",
        "div",
        "pre",
        "blockquote",
        "section",
        "article",
        "main",
        "header",
        "footer",
        "nav",
        "aside",
        "ul",
        "ol",
        "dl",
        "table",
        "figure",
        "figcaption",
        "form",
        "fieldset",
        "address",
        "hr",
        "details",
        "summary",
    }
)
_HTML_LINES = frozenset({"br", "li", "tr", "td", "th", "dt", "dd", "caption", "option"})
_WHITESPACE = re.compile(r"\s+")


class _HtmlText:
    """Turns a stream of enter/leave/text events into lines and sections."""

    def __init__(self) -> None:
        self.builder = _SectionBuilder()
        self._parts: list[str] = []
        self._verbatim = False  # the current line came from <pre> and keeps its indentation
        self._pre_depth = 0
        self._heading: tuple[Tag, int, list[str]] | None = None

    def enter(self, tag: Tag) -> None:
        name = tag.name
        level = _HTML_HEADINGS.get(name)
        if level is not None and self._heading is None:
            self._break(paragraph=True)
            self._heading = (tag, level, [])
        elif name in _HTML_PARAGRAPHS:
            self._break(paragraph=True)
        elif name in _HTML_LINES:
            self._break(paragraph=False)
        if name == "pre":
            self._pre_depth += 1

    def leave(self, tag: Tag) -> None:
        name = tag.name
        if self._heading is not None and self._heading[0] is tag:
            _, level, parts = self._heading
            self._heading = None
            title = _WHITESPACE.sub(" ", "".join(parts)).strip()
            if title:
                self.builder.heading(level, title, title)
                self.builder.line("")
        elif name in _HTML_PARAGRAPHS:
            self._break(paragraph=True)
        elif name in _HTML_LINES and name != "br":
            self._break(paragraph=False)
        if name == "pre":
            self._pre_depth -= 1

    def text(self, text: str) -> None:
        text = text.replace("\x00", "")
        if self._heading is not None:
            self._heading[2].append(text)
        elif self._pre_depth > 0:
            first, *rest = _normalise_newlines(text).split("\n")
            self._parts.append(first)
            for line in rest:
                self._verbatim = True
                self._flush_line(keep_empty=True)
                self._parts.append(line)
                self._verbatim = True
        else:
            self._parts.append(_WHITESPACE.sub(" ", text))

    def finish(self) -> list[Section]:
        self._break(paragraph=True)
        return self.builder.finish()

    def _break(self, *, paragraph: bool) -> None:
        self._flush_line(keep_empty=False)
        if paragraph:
            self.builder.line("")

    def _flush_line(self, *, keep_empty: bool) -> None:
        line = "".join(self._parts)
        line = line.rstrip() if self._verbatim else _WHITESPACE.sub(" ", line).strip()
        if line or keep_empty:
            self.builder.line(line)
        self._parts = []
        self._verbatim = False


# Beyond this many tags a parse tree would take far more memory than the markup
# (hundreds of bytes per element); such pages get the linear extractor instead.
_HTML_MAX_TAGS = 200_000
_HTML_BLOCK_START = re.compile(
    r"<(script|style|noscript|template|head|title|svg|iframe|object)\b|<!--", re.IGNORECASE
)
_HTML_TAG = re.compile(r"<[^<>]*>")  # never scans past the next "<": linear on any input


def _without_blocks(markup: str) -> str:
    """``markup`` without comments and the content of non-text elements, in one pass."""
    parts: list[str] = []
    position = 0
    while (start := _HTML_BLOCK_START.search(markup, position)) is not None:
        parts.append(markup[position : start.start()])
        element = start.group(1)
        closer = "-->" if element is None else rf"</{element}\s*>"
        end = re.compile(closer, re.IGNORECASE).search(markup, start.end())
        if end is None:
            return " ".join(parts)  # unclosed: the rest is not text
        position = end.end()
    parts.append(markup[position:])
    return " ".join(parts)


def _extract_html_linear(markup: str) -> ExtractedDocument:
    """Text of huge or absurdly nested markup: drop non-text elements and tags, one section.

    Headings and paragraphs are not recognised here; the text is kept whole.
    """
    text = _HTML_TAG.sub(" ", _without_blocks(markup))
    text = _WHITESPACE.sub(" ", html_entities.unescape(text).replace("\x00", "")).strip()
    return ExtractedDocument(content_type=HTML, sections=[Section(text)] if text else [])


def _extract_html(data: bytes, _request: _Request) -> ExtractedDocument:
    try:
        markup: str | bytes = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        markup = data  # let Beautiful Soup honour the page's declared charset
    if data.count(b"<") > _HTML_MAX_TAGS:
        text = markup if isinstance(markup, str) else data.decode("utf-8", errors="replace")
        return _extract_html_linear(text)
    soup = BeautifulSoup(markup, "html.parser")
    out = _HtmlText()
    # An explicit stack instead of recursion: deeply nested markup must not
    # exhaust the interpreter's recursion limit.
    stack: list[tuple[PageElement, bool]] = [(soup, False)]
    while stack:
        node, leaving = stack.pop()
        if isinstance(node, Tag):
            if leaving:
                out.leave(node)
            elif node.name not in _HTML_DROPPED:
                out.enter(node)
                stack.append((node, True))
                stack.extend((child, False) for child in reversed(node.contents))
        elif isinstance(node, NavigableString) and not isinstance(node, PreformattedString):
            out.text(str(node))  # comments, doctypes and CDATA are PreformattedStrings
    return ExtractedDocument(content_type=HTML, sections=out.finish())


# --- application/pdf ----------------------------------------------------------------------


def _extract_pdf(data: bytes, request: _Request) -> ExtractedDocument:
    name = request.name
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            raise ExtractionError(f"PDF is encrypted: {name!r} needs a password to open")
        pages = len(reader.pages)
        if pages == 0:
            raise ExtractionError(f"no text found in {name!r}: the PDF has no pages")
        if pages > request.max_pages:
            raise ExtractionError(
                f"{name!r} has {pages} pages, more than the limit of {request.max_pages}"
            )
        sections: list[Section] = []
        for number, page in enumerate(reader.pages, start=1):
            lines = _normalise_newlines(page.extract_text()).replace("\x00", "").split("\n")
            text = "\n".join(line.rstrip() for line in lines).strip()
            if text:
                sections.append(Section(text=text, page=number))
    except ExtractionError:
        raise
    except DependencyError as e:
        raise ExtractionError(f"PDF is encrypted and cannot be decrypted here: {e}") from e
    except MemoryError:
        raise
    except Exception as e:
        # pypdf raises its own errors and many built-in ones (KeyError, ValueError,
        # RecursionError, ...) on malformed files; all of them mean this file is broken.
        reason = str(e) or type(e).__name__
        raise ExtractionError(f"{name!r} is not a readable PDF: {reason}") from e
    return ExtractedDocument(content_type=PDF, sections=sections, pages=pages)


_EXTRACTORS: dict[str, _Extractor] = {
    PLAIN: _extract_plain,
    MARKDOWN: _extract_markdown,
    HTML: _extract_html,
    PDF: _extract_pdf,
}
