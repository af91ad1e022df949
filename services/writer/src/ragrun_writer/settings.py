"""Writer settings (every field is in the README's configuration table)."""

from pydantic import Field

from ragrun_common.settings import CommonSettings


class WriterSettings(CommonSettings):
    max_rows: int = Field(2_000, ge=1, validation_alias="RAGRUN_WRITER_MAX_ROWS")
    max_messages: int = Field(200, ge=1, validation_alias="RAGRUN_WRITER_MAX_MESSAGES")
    max_latency_ms: int = Field(200, ge=0, validation_alias="RAGRUN_WRITER_MAX_LATENCY_MS")
    flow_max_messages: int = Field(400, ge=1, validation_alias="RAGRUN_WRITER_FLOW_MESSAGES")
    retry_deadline_s: float = Field(300, ge=0, validation_alias="RAGRUN_WRITER_RETRY_DEADLINE_S")
