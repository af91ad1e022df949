"""Typed, frozen settings read from the environment.

Each service subclasses :class:`CommonSettings` with its own knobs, builds one
instance in ``main`` and passes it down. Every variable is listed in the
README's configuration table.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ragrun_common.batching import BatchLimits
from ragrun_common.embeddings.spec import EmbeddingSpec, parse_embedding_spec


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class CommonSettings(BaseSettings):
    """What every ragrun process needs: where the project, topics and database are."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    project: str = Field("ragrun-local", validation_alias=_env("GOOGLE_CLOUD_PROJECT"))
    location: str = Field("us-central1", validation_alias=_env("GOOGLE_CLOUD_LOCATION"))
    bucket: str = Field("ragrun-docs", validation_alias=_env("RAGRUN_BUCKET"))
    pubsub_emulator_host: str | None = Field(None, validation_alias=_env("PUBSUB_EMULATOR_HOST"))
    storage_emulator_host: str | None = Field(None, validation_alias=_env("STORAGE_EMULATOR_HOST"))
    database_url: str = Field(
        "postgresql://postgres@127.0.0.1:5432/ragrun", validation_alias=_env("DATABASE_URL")
    )
    embeddings: str = Field("local", validation_alias=_env("RAGRUN_EMBEDDINGS"))
    embedding_dim: int | None = Field(None, validation_alias=_env("RAGRUN_EMBEDDING_DIM"))
    # ONNX Runtime threads per local-model call; 0 is one per core (batches of chunks).
    local_model_threads: int = Field(0, ge=0, validation_alias=_env("RAGRUN_LOCAL_MODEL_THREADS"))
    # Where the local model's exported ONNX graph is kept (default ~/.cache/ragrun).
    model_cache: Path | None = Field(None, validation_alias=_env("RAGRUN_MODEL_CACHE"))
    vertex_base_url: str | None = Field(None, validation_alias=_env("RAGRUN_VERTEX_BASE_URL"))
    vertex_access_token: SecretStr | None = Field(
        None, validation_alias=_env("RAGRUN_VERTEX_ACCESS_TOKEN")
    )

    objects_topic: str = Field("ragrun-objects", validation_alias=_env("RAGRUN_OBJECTS_TOPIC"))
    chunks_topic: str = Field("ragrun-chunks", validation_alias=_env("RAGRUN_CHUNKS_TOPIC"))
    vectors_topic: str = Field("ragrun-vectors", validation_alias=_env("RAGRUN_VECTORS_TOPIC"))
    chunker_subscription: str = Field(
        "ragrun-chunker", validation_alias=_env("RAGRUN_CHUNKER_SUBSCRIPTION")
    )
    embedder_subscription: str = Field(
        "ragrun-embedder", validation_alias=_env("RAGRUN_EMBEDDER_SUBSCRIPTION")
    )
    writer_subscription: str = Field(
        "ragrun-writer", validation_alias=_env("RAGRUN_WRITER_SUBSCRIPTION")
    )
    log_level: str = Field("INFO", validation_alias=_env("RAGRUN_LOG_LEVEL"))

    @property
    def embedding(self) -> EmbeddingSpec:
        """The parsed embedding provider choice, with its dimension resolved."""
        return parse_embedding_spec(self.embeddings, self.embedding_dim)

    @model_validator(mode="after")
    def _check_embeddings(self) -> CommonSettings:
        self.embedding  # noqa: B018 - parse now so a bad value fails at start-up
        return self


class BatchSettings(CommonSettings):
    """Embedding request limits, shared by the chunker and the embedder."""

    batch_max_texts: int = Field(250, ge=1, validation_alias=_env("RAGRUN_BATCH_MAX_TEXTS"))
    batch_max_tokens: int = Field(20_000, ge=1, validation_alias=_env("RAGRUN_BATCH_MAX_TOKENS"))

    @property
    def batch_limits(self) -> BatchLimits:
        return BatchLimits(max_items=self.batch_max_texts, max_tokens=self.batch_max_tokens)


class EmbeddingBudgetSettings(BatchSettings):
    """Client-side budgets and retries for Vertex AI (the embedder, ``ragrun index``).

    The defaults are near the per-region base-model quotas; set them to your
    project's quotas, or to a share of them per process.
    """

    requests_per_minute: float = Field(1_500, gt=0, validation_alias=_env("RAGRUN_EMBED_RPM"))
    tokens_per_minute: float = Field(5_000_000, gt=0, validation_alias=_env("RAGRUN_EMBED_TPM"))
    retry_deadline_s: float = Field(
        300, ge=0, validation_alias=_env("RAGRUN_EMBED_RETRY_DEADLINE_S")
    )
