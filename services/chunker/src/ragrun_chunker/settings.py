"""Chunker settings (every field is in the README's configuration table)."""

from pydantic import Field

from ragrun_common.settings import BatchSettings


class ChunkerSettings(BatchSettings):
    chunk_tokens: int = Field(256, ge=16, validation_alias="RAGRUN_CHUNK_TOKENS")
    chunk_overlap: int = Field(32, ge=0, validation_alias="RAGRUN_CHUNK_OVERLAP")
    max_object_bytes: int = Field(
        64 * 1024 * 1024, ge=1, validation_alias="RAGRUN_MAX_OBJECT_BYTES"
    )
    max_pages: int = Field(2_000, ge=1, validation_alias="RAGRUN_MAX_PAGES")
    max_chunks: int = Field(20_000, ge=1, validation_alias="RAGRUN_MAX_CHUNKS")
