"""Reading one object version from Cloud Storage in bounded blocks.

Objects are read with ranged downloads of the pinned generation, so memory
holds one block, not the object. An object stored with ``Content-Encoding:
gzip`` is fetched as stored (raw) and decompressed here, each output block
bounded too, so the caller can stop a decompression bomb after the first
bytes past its limit instead of after the client has inflated all of it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator

from google.api_core import exceptions as gexc
from google.cloud import storage

from ragrun_chunker.extract import ExtractionError
from ragrun_common.errors import RetryableError

_GZIP_WBITS = 31  # zlib: a gzip header and trailer, nothing else
_GZIP_STORED = "the object is stored with Content-Encoding gzip"


class GenerationGoneError(Exception):
    """The object version no longer exists (replaced or deleted); its own event follows."""


def raw_blocks(blob: storage.Blob, block_bytes: int) -> Iterator[bytes]:
    """The stored bytes of ``blob`` (pinned to its generation), ``block_bytes`` at a time."""
    position = 0
    while True:
        try:
            data: bytes = blob.download_as_bytes(
                start=position,
                end=position + block_bytes - 1,
                raw_download=True,
                checksum=None,  # a range has no checksum of its own
            )
        except gexc.RequestRangeNotSatisfiable:
            return  # past the end (or an empty object)
        except gexc.NotFound as e:
            raise GenerationGoneError(f"gs://{blob.bucket.name}/{blob.name}") from e
        except (gexc.GoogleAPICallError, OSError) as e:
            raise RetryableError(f"download of gs://{blob.bucket.name}/{blob.name} failed") from e
        if data:
            yield data
        if len(data) < block_bytes:
            return
        position += len(data)


def gunzip_blocks(blocks: Iterable[bytes], block_bytes: int) -> Iterator[bytes]:
    """The decompressed content of gzip ``blocks``, at most ``block_bytes`` per block.

    Handles multi-member files; invalid or truncated gzip is an ExtractionError.
    """
    decompressor = zlib.decompressobj(_GZIP_WBITS)
    started = False
    try:
        for block in blocks:
            data = block
            while data:
                started = True
                out = decompressor.decompress(data, block_bytes)
                if out:
                    yield out
                data = decompressor.unconsumed_tail
                if decompressor.eof:
                    data = decompressor.unused_data + data
                    decompressor = zlib.decompressobj(_GZIP_WBITS)
                    started = False
        if started:
            while out := decompressor.decompress(b"", block_bytes):
                yield out
            if not decompressor.eof:
                raise ExtractionError(
                    "the object is stored gzip-encoded but its gzip data is cut short"
                )
    except zlib.error as e:
        raise ExtractionError(
            f"the object is stored gzip-encoded but is not valid gzip: {e}"
        ) from e


def capped(blocks: Iterable[bytes], limit: int, reason: Callable[[], str]) -> Iterator[bytes]:
    """``blocks`` as long as they add up to at most ``limit`` bytes; then ExtractionError."""
    total = 0
    for block in blocks:
        total += len(block)
        if total > limit:
            raise ExtractionError(reason())
        yield block
