"""Embedder settings (every field is in the README's configuration table)."""

from pydantic import Field

from ragrun_common.settings import BatchSettings


class EmbedderSettings(BatchSettings):
    max_latency_ms: int = Field(100, ge=0, validation_alias="RAGRUN_EMBEDDER_MAX_LATENCY_MS")
    max_messages: int = Field(200, ge=1, validation_alias="RAGRUN_EMBEDDER_MAX_MESSAGES")
    gather_requests: int = Field(4, ge=1, validation_alias="RAGRUN_EMBEDDER_GATHER_REQUESTS")
    flow_max_messages: int = Field(400, ge=1, validation_alias="RAGRUN_EMBEDDER_FLOW_MESSAGES")
    # Client-side budgets for Vertex AI, near the per-region base-model quotas;
    # set them to your project's quotas (or a share of them per worker).
    requests_per_minute: float = Field(1_500, gt=0, validation_alias="RAGRUN_EMBED_RPM")
    tokens_per_minute: float = Field(5_000_000, gt=0, validation_alias="RAGRUN_EMBED_TPM")
    retry_deadline_s: float = Field(300, ge=0, validation_alias="RAGRUN_EMBED_RETRY_DEADLINE_S")
