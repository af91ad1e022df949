"""The query service's settings: the common ones plus the HTTP and search knobs."""

from __future__ import annotations

from pydantic import AliasChoices, Field, model_validator

from ragrun_common.settings import CommonSettings

# pgvector accepts hnsw.ef_search in 1..1000; k above it could never be honoured.
MAX_EF_SEARCH = 1000


class QuerySettings(CommonSettings):
    """Where to listen, how many results to return and how hard HNSW searches."""

    host: str = Field("0.0.0.0", validation_alias=AliasChoices("RAGRUN_QUERY_HOST"))
    port: int = Field(8080, ge=1, le=65535, validation_alias=AliasChoices("PORT"))
    default_k: int = Field(10, ge=1, validation_alias=AliasChoices("RAGRUN_QUERY_DEFAULT_K"))
    max_k: int = Field(
        100, ge=1, le=MAX_EF_SEARCH, validation_alias=AliasChoices("RAGRUN_QUERY_MAX_K")
    )
    ef_search: int = Field(
        100, ge=1, le=MAX_EF_SEARCH, validation_alias=AliasChoices("RAGRUN_QUERY_EF_SEARCH")
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1, validation_alias=AliasChoices("RAGRUN_QUERY_MAX_BODY_BYTES")
    )
    pool_max_size: int = Field(4, ge=1, validation_alias=AliasChoices("RAGRUN_QUERY_POOL_MAX_SIZE"))

    @model_validator(mode="after")
    def _check_k(self) -> QuerySettings:
        if self.default_k > self.max_k:
            raise ValueError(
                f"RAGRUN_QUERY_DEFAULT_K ({self.default_k}) must not exceed "
                f"RAGRUN_QUERY_MAX_K ({self.max_k})"
            )
        return self
