"""Settings come from the environment, fail early and name the variable."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ragrun_common.embeddings.spec import parse_embedding_spec
from ragrun_common.settings import BatchSettings, CommonSettings


def test_defaults_point_at_the_local_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "GOOGLE_CLOUD_PROJECT",
        "RAGRUN_EMBEDDINGS",
        "RAGRUN_EMBEDDING_DIM",
        "RAGRUN_BUCKET",
    ):
        monkeypatch.delenv(var, raising=False)
    s = CommonSettings()
    assert (s.project, s.bucket, s.embedding.name, s.embedding.dim) == (
        "ragrun-local", "ragrun-docs", "local", 384,
    )  # fmt: skip
    assert (s.objects_topic, s.chunks_topic, s.vectors_topic) == (
        "ragrun-objects", "ragrun-chunks", "ragrun-vectors",
    )  # fmt: skip


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "prod")
    monkeypatch.setenv("RAGRUN_EMBEDDINGS", "vertex")
    monkeypatch.setenv("RAGRUN_BATCH_MAX_TEXTS", "100")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/x")
    s = BatchSettings()
    assert s.project == "prod" and s.database_url == "postgresql://db/x"
    assert s.embedding.name == "vertex:text-embedding-005" and s.embedding.dim == 768
    assert s.batch_limits.max_items == 100


def test_settings_are_frozen() -> None:
    s = CommonSettings()
    with pytest.raises(ValidationError):
        s.bucket = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "dim", "message"),
    [
        ("openai", None, "RAGRUN_EMBEDDINGS"),
        ("local", 768, "384 dimensions"),
        ("vertex:gemini-embedding-001", 3072, "RAGRUN_EMBEDDING_DIM"),
    ],
)
def test_bad_embedding_choices_name_the_variable(value: str, dim: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_embedding_spec(value, dim)


def test_bad_values_fail_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGRUN_EMBEDDINGS", "bogus")
    with pytest.raises(ValidationError, match="RAGRUN_EMBEDDINGS"):
        CommonSettings()
    monkeypatch.setenv("RAGRUN_EMBEDDINGS", "hash")
    monkeypatch.setenv("RAGRUN_BATCH_MAX_TOKENS", "0")
    with pytest.raises(ValidationError, match="RAGRUN_BATCH_MAX_TOKENS"):
        BatchSettings()


def test_vertex_model_and_dimension() -> None:
    spec = parse_embedding_spec("vertex:gemini-embedding-001", 1536)
    assert (spec.kind, spec.model, spec.dim, spec.name) == (
        "vertex", "gemini-embedding-001", 1536, "vertex:gemini-embedding-001",
    )  # fmt: skip
