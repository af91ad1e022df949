"""The query service's settings: the common ones plus the HTTP, search and answer knobs."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, model_validator

from ragrun_common.settings import CommonSettings
from ragrun_query.search import MAX_EF_SEARCH, KeywordMatch, SearchConfig


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


#: hnsw.ef_search when neither the request nor RAGRUN_QUERY_EF_SEARCH says otherwise: the
#: smallest value that reached recall@10 >= 0.95 against exact search in bench/query_bench.py.
DEFAULT_EF_SEARCH = 32


class QuerySettings(CommonSettings):
    """Where to listen, who may ask, how searches run and which model answers."""

    # One thread per query embedding: a short text gains little from a second one, which
    # then waits on a core the database and the other requests are using.
    local_model_threads: int = Field(1, ge=0, validation_alias=_env("RAGRUN_LOCAL_MODEL_THREADS"))
    host: str = Field("0.0.0.0", validation_alias=_env("RAGRUN_QUERY_HOST"))
    port: int = Field(8080, ge=1, le=65535, validation_alias=_env("PORT"))
    default_k: int = Field(10, ge=1, validation_alias=_env("RAGRUN_QUERY_DEFAULT_K"))
    max_k: int = Field(100, ge=1, le=MAX_EF_SEARCH, validation_alias=_env("RAGRUN_QUERY_MAX_K"))
    ef_search: int = Field(
        DEFAULT_EF_SEARCH, ge=1, le=MAX_EF_SEARCH, validation_alias=_env("RAGRUN_QUERY_EF_SEARCH")
    )
    max_scan_tuples: int = Field(
        20_000, ge=1, validation_alias=_env("RAGRUN_QUERY_MAX_SCAN_TUPLES")
    )
    candidates: int = Field(
        50, ge=1, le=MAX_EF_SEARCH, validation_alias=_env("RAGRUN_QUERY_CANDIDATES")
    )
    rrf_k: int = Field(60, ge=1, validation_alias=_env("RAGRUN_QUERY_RRF_K"))
    keyword_match: KeywordMatch = Field("any", validation_alias=_env("RAGRUN_QUERY_KEYWORD_MATCH"))
    scann_leaves_to_search: int | None = Field(
        None, ge=1, validation_alias=_env("RAGRUN_QUERY_SCANN_LEAVES_TO_SEARCH")
    )
    statement_timeout_ms: int = Field(
        10_000, ge=1, validation_alias=_env("RAGRUN_QUERY_STATEMENT_TIMEOUT_MS")
    )
    rerank: str = Field("none", validation_alias=_env("RAGRUN_QUERY_RERANK"))
    rerank_candidates: int = Field(
        50, ge=1, le=MAX_EF_SEARCH, validation_alias=_env("RAGRUN_QUERY_RERANK_CANDIDATES")
    )
    max_body_bytes: int = Field(
        64 * 1024, ge=1, validation_alias=_env("RAGRUN_QUERY_MAX_BODY_BYTES")
    )
    pool_max_size: int = Field(4, ge=1, validation_alias=_env("RAGRUN_QUERY_POOL_MAX_SIZE"))
    # False on a read replica, which cannot take migrations (the writer applies them).
    migrate: bool = Field(True, validation_alias=_env("RAGRUN_QUERY_MIGRATE"))
    api_keys: SecretStr | None = Field(None, validation_alias=_env("RAGRUN_API_KEYS"))
    cors_origins: str = Field("", validation_alias=_env("RAGRUN_QUERY_CORS_ORIGINS"))

    answer_model: str | None = Field(None, validation_alias=_env("RAGRUN_ANSWER_MODEL"))
    answer_k: int = Field(8, ge=1, validation_alias=_env("RAGRUN_ANSWER_K"))
    answer_max_output_tokens: int = Field(
        1024, ge=1, validation_alias=_env("RAGRUN_ANSWER_MAX_OUTPUT_TOKENS")
    )
    answer_temperature: float = Field(
        0.2, ge=0.0, le=2.0, validation_alias=_env("RAGRUN_ANSWER_TEMPERATURE")
    )
    answer_timeout_s: float = Field(60.0, gt=0, validation_alias=_env("RAGRUN_ANSWER_TIMEOUT_S"))

    @model_validator(mode="after")
    def _check(self) -> QuerySettings:
        if self.default_k > self.max_k:
            raise ValueError(
                f"RAGRUN_QUERY_DEFAULT_K ({self.default_k}) must not exceed "
                f"RAGRUN_QUERY_MAX_K ({self.max_k})"
            )
        if self.answer_k > self.max_k:
            raise ValueError(
                f"RAGRUN_ANSWER_K ({self.answer_k}) must not exceed "
                f"RAGRUN_QUERY_MAX_K ({self.max_k})"
            )
        self.api_key_list  # noqa: B018 - fail at start-up on a malformed list
        from ragrun_query.rerank import parse_rerank_spec

        parse_rerank_spec(self.rerank)
        return self

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """The accepted API keys; empty means the service runs open."""
        if self.api_keys is None:
            return ()
        keys = tuple(key.strip() for key in self.api_keys.get_secret_value().split(","))
        return tuple(key for key in keys if key)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """Origins allowed to call from a browser (``*`` for any); empty turns CORS off."""
        return tuple(o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip())

    def search_config(self, index: str = "hnsw") -> SearchConfig:
        return SearchConfig(
            ef_search=self.ef_search,
            max_scan_tuples=self.max_scan_tuples,
            candidates=self.candidates,
            rrf_k=self.rrf_k,
            index="scann" if index == "scann" else "hnsw",
            num_leaves_to_search=self.scann_leaves_to_search,
            statement_timeout_ms=self.statement_timeout_ms,
            keyword_match=self.keyword_match,
        )
