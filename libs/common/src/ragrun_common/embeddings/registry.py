"""Build the embedding provider that ``RAGRUN_EMBEDDINGS`` names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ragrun_common.embeddings.base import EmbeddingProvider

if TYPE_CHECKING:
    from ragrun_common.settings import CommonSettings


def _hash(settings: CommonSettings) -> EmbeddingProvider:
    from ragrun_common.embeddings.hashing import HashEmbedder

    return HashEmbedder(settings.embedding.dim)


def _local(settings: CommonSettings) -> EmbeddingProvider:  # noqa: ARG001
    from ragrun_common.embeddings.local import LocalEmbedder

    return LocalEmbedder()


def _vertex(settings: CommonSettings) -> EmbeddingProvider:
    from ragrun_common.embeddings.vertex import VertexEmbedder

    spec = settings.embedding
    token = settings.vertex_access_token
    return VertexEmbedder(
        model=spec.model,
        dim=spec.dim,
        project=settings.project,
        location=settings.location,
        base_url=settings.vertex_base_url,
        access_token=token.get_secret_value() if token else None,
    )


_FACTORIES: dict[str, Callable[[CommonSettings], EmbeddingProvider]] = {
    "hash": _hash,
    "local": _local,
    "vertex": _vertex,
}


def create_provider(settings: CommonSettings) -> EmbeddingProvider:
    """Build the provider the settings name (imports heavy dependencies lazily)."""
    return _FACTORIES[settings.embedding.kind](settings)
