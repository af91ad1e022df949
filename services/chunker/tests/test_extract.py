"""Extraction as a user sees it: which text comes out of an upload, or why none does."""

import io

import pytest
from pypdf import PdfReader, PdfWriter

from ragrun_chunker.extract import (
    ExtractedDocument,
    ExtractionError,
    Section,
    detect_content_type,
    extract,
)
from ragrun_common.errors import PermanentError


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF, one page per item, each line drawn in Helvetica."""
    page_ids = [4 + 2 * i for i in range(len(pages))]
    kids = " ".join(f"{page_id} 0 R" for page_id in page_ids)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for page_id, lines in zip(page_ids, pages, strict=True):
        shown = " T* ".join(f"{_pdf_string(line)} Tj" for line in lines)
        content = f"BT /F1 12 Tf 14 TL 72 720 Td {shown} ET".encode()
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
            b" /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password, owner_password="owner-secret")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


# --- content type detection ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "declared", "head", "expected"),
    [
        ("report.txt", "text/plain", b"%PDF-1.7\n...", "application/pdf"),
        ("page", None, b"\n  <!DOCTYPE html>\n<html>", "text/html"),
        ("page.txt", None, b"<html lang='en'><body>", "text/html"),
        ("notes.MD", "application/octet-stream", b"# Title", "text/markdown"),
        ("docs/guide.markdown", None, b"text", "text/markdown"),
        ("index.htm", None, b"hello", "text/html"),
        ("a.text", None, b"hello", "text/plain"),
        ("no-extension", "text/markdown; charset=utf-8", b"# Title", "text/markdown"),
        ("no-extension", "text/plain", b"hello", "text/plain"),
        ("scan.pdf", None, b"garbage", "application/pdf"),
    ],
)
def test_detect_content_type(name: str, declared: str | None, head: bytes, expected: str) -> None:
    assert detect_content_type(name, declared, head) == expected


def test_unsupported_declared_type_is_named_in_the_error() -> None:
    with pytest.raises(ExtractionError, match="unsupported content type 'image/png' for 'x.png'"):
        detect_content_type("x.png", "image/png", b"\x89PNG\r\n")


def test_generic_declared_type_does_not_count() -> None:
    with pytest.raises(ExtractionError, match="cannot tell the content type of 'blob'"):
        detect_content_type("blob", "application/octet-stream", b"hello")


def test_extraction_errors_are_permanent() -> None:
    assert issubclass(ExtractionError, PermanentError)


# --- text/plain ---------------------------------------------------------------------------


def test_plain_text_is_one_section_with_bom_and_crlf_removed() -> None:
    document = extract(b"\xef\xbb\xbfFirst line\r\nsecond\r\n\r\nNext paragraph\r\n", name="a.txt")
    assert document == ExtractedDocument(
        content_type="text/plain",
        sections=[Section(text="First line\nsecond\n\nNext paragraph")],
    )


def test_invalid_utf8_is_refused_not_guessed() -> None:
    with pytest.raises(ExtractionError, match="not valid UTF-8 text"):
        extract("café".encode("latin-1"), name="legacy.txt")


def test_utf16_text_is_refused() -> None:
    with pytest.raises(ExtractionError, match="NUL"):
        extract("hello".encode("utf-16-le"), name="wide.txt")


@pytest.mark.parametrize("data", [b"", b"  \n\t\n"])
def test_empty_file_has_no_text(data: bytes) -> None:
    with pytest.raises(ExtractionError, match="no text found in 'empty.txt'"):
        extract(data, name="empty.txt")


# --- text/markdown ------------------------------------------------------------------------

GUIDE_MD = b"""Preface before any heading.

# Guide

## Install

Run `pip install ragrun`.

```bash
# this is a shell comment, not a heading
pip install ragrun
```

~~~
## still code
~~~

## Use ##

Call `ragrun`.

# Reference
All the flags.
"""


def test_markdown_sections_keep_their_heading_path() -> None:
    document = extract(GUIDE_MD, name="guide.md")
    assert document.content_type == "text/markdown"
    assert [section.headings for section in document.sections] == [
        (),
        ("Guide", "Install"),
        ("Guide", "Use"),
        ("Reference",),
    ]
    assert document.sections[0].text == "Preface before any heading."
    assert document.sections[3].text == "# Reference\nAll the flags."


def test_markdown_heading_line_stays_searchable() -> None:
    install = extract(GUIDE_MD, name="guide.md").sections[1]
    assert install.text.startswith("## Install\n\nRun `pip install ragrun`.")


def test_hash_lines_in_fenced_code_are_not_headings() -> None:
    install = extract(GUIDE_MD, name="guide.md").sections[1]
    assert "# this is a shell comment, not a heading" in install.text
    assert "## still code" in install.text


def test_markdown_without_headings_is_one_section() -> None:
    document = extract(b"just text\n#hashtag is not a heading\n", name="n.md")
    assert document.sections == [Section(text="just text\n#hashtag is not a heading")]


# --- text/html ----------------------------------------------------------------------------

PAGE_HTML = b"""<!DOCTYPE html>
<html><head><title>Site title</title><meta charset="utf-8">
<style>body { color: red }</style></head>
<body>
<nav>Home</nav>
<script>var secret = "tracking";</script>
<h1>Guide</h1>
<p>Welcome to   the <b>guide</b>.</p>
<noscript>Enable JavaScript</noscript>
<h2>Install</h2>
<ul><li>Download</li><li>Run</li></ul>
<pre>  indented
    code</pre>
<!-- a comment -->
<h2>Use</h2>
<table><tr><td>flag</td><td>meaning</td></tr></table>
</body></html>
"""


def test_html_drops_scripts_styles_and_head() -> None:
    text = extract(PAGE_HTML, name="page.html").text
    for hidden in ("secret", "color: red", "Site title", "Enable JavaScript", "a comment"):
        assert hidden not in text


def test_html_sections_keep_their_heading_path() -> None:
    document = extract(PAGE_HTML, name="page.html")
    assert document.content_type == "text/html"
    assert [(section.headings, section.text) for section in document.sections] == [
        ((), "Home"),
        (("Guide",), "Guide\n\nWelcome to the guide."),
        (("Guide", "Install"), "Install\n\nDownload\nRun\n\n  indented\n    code"),
        (("Guide", "Use"), "Use\n\nflag\nmeaning"),
    ]


def test_deeply_nested_html_does_not_hit_the_recursion_limit() -> None:
    depth = 5000
    data = b"<html><body>" + b"<div>" * depth + b"deep text" + b"</div>" * depth + b"</body></html>"
    assert extract(data, name="deep.html").text == "deep text"


def test_html_in_a_declared_legacy_charset() -> None:
    data = '<html><head><meta charset="iso-8859-1"></head><body><p>café</p></body></html>'
    assert extract(data.encode("latin-1"), name="old.html").text == "café"


def test_html_without_text() -> None:
    with pytest.raises(ExtractionError, match="no text found in 'blank.html'"):
        extract(b"<html><body><script>x()</script></body></html>", name="blank.html")


# --- application/pdf ----------------------------------------------------------------------


def test_pdf_pages_become_numbered_sections() -> None:
    pdf = make_pdf([["Hello from page one.", "Second line."], ["Page two (final)."]])
    document = extract(pdf, name="doc.pdf")
    assert document.content_type == "application/pdf"
    assert document.pages == 2
    assert [(section.page, section.text) for section in document.sections] == [
        (1, "Hello from page one.\nSecond line."),
        (2, "Page two (final)."),
    ]


def test_pdf_is_sniffed_whatever_its_name() -> None:
    document = extract(make_pdf([["Sniffed."]]), name="upload.bin", content_type=None)
    assert document.text == "Sniffed."


def test_encrypted_pdf_is_refused() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("pw")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(ExtractionError, match="PDF is encrypted"):
        extract(buffer.getvalue(), name="secret.pdf")


def test_pdf_encrypted_with_an_empty_password_is_read() -> None:
    pdf = encrypted(make_pdf([["Readable by anyone."]]), user_password="")
    assert extract(pdf, name="open.pdf").text == "Readable by anyone."


def test_random_bytes_named_pdf_give_a_clear_error() -> None:
    noise = bytes((i * 7919 + 13) % 256 for i in range(4096))
    with pytest.raises(ExtractionError, match="'noise.pdf' is not a readable PDF: "):
        extract(noise, name="noise.pdf")


def test_truncated_pdf_gives_a_clear_error() -> None:
    with pytest.raises(ExtractionError, match="not a readable PDF"):
        extract(make_pdf([["cut short"]])[:60], name="cut.pdf")


def test_pdf_with_too_many_pages_is_refused() -> None:
    pdf = make_pdf([[f"page {n}"] for n in range(1, 5)])
    with pytest.raises(ExtractionError, match="4 pages, more than the limit of 3"):
        extract(pdf, name="long.pdf", max_pages=3)


def test_pdf_without_text() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(ExtractionError, match="no text found in 'scan.pdf'"):
        extract(buffer.getvalue(), name="scan.pdf")
