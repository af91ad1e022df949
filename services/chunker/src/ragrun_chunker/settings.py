"""Chunker settings (every field is in the README's configuration table)."""

from pydantic import Field

from ragrun_common.settings import BatchSettings


class ChunkerSettings(BatchSettings):
    chunk_tokens: int = Field(256, ge=16, validation_alias="RAGRUN_CHUNK_TOKENS")
    chunk_overlap: int = Field(32, ge=0, validation_alias="RAGRUN_CHUNK_OVERLAP")
    # PDF and HTML are parsed whole, in memory: this bounds them (after gzip decoding).
    max_object_bytes: int = Field(
        64 * 1024 * 1024, ge=1, validation_alias="RAGRUN_MAX_OBJECT_BYTES"
    )
    # Plain text and Markdown are streamed, so they may be much larger.
    max_text_bytes: int = Field(2 * 1024**3, ge=1, validation_alias="RAGRUN_MAX_TEXT_BYTES")
    # Text objects larger than this are streamed instead of read whole.
    stream_text_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, validation_alias="RAGRUN_STREAM_TEXT_BYTES"
    )
    # Bytes per ranged download while streaming an object.
    download_block_bytes: int = Field(
        4 * 1024 * 1024, ge=64 * 1024, validation_alias="RAGRUN_DOWNLOAD_BLOCK_BYTES"
    )
    max_pages: int = Field(2_000, ge=1, validation_alias="RAGRUN_MAX_PAGES")
    max_chunks: int = Field(20_000, ge=1, validation_alias="RAGRUN_MAX_CHUNKS")
