"""Embedder settings (every field is in the README's configuration table)."""

from pydantic import Field

from ragrun_common.settings import EmbeddingBudgetSettings


class EmbedderSettings(EmbeddingBudgetSettings):
    max_latency_ms: int = Field(1000, ge=0, validation_alias="RAGRUN_EMBEDDER_MAX_LATENCY_MS")
    max_messages: int = Field(1000, ge=1, validation_alias="RAGRUN_EMBEDDER_MAX_MESSAGES")
    gather_requests: int = Field(8, ge=1, validation_alias="RAGRUN_EMBEDDER_GATHER_REQUESTS")
    flow_max_messages: int = Field(1500, ge=1, validation_alias="RAGRUN_EMBEDDER_FLOW_MESSAGES")
