"""Build the embedding provider that ``RAGRUN_EMBEDDINGS`` names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ragrun_common.embeddings.base import EmbeddingProvider
from ragrun_common.embeddings.spec import EmbeddingSpec

if TYPE_CHECKING:
    from ragrun_common.settings import CommonSettings


def _hash(spec: EmbeddingSpec, settings: CommonSettings) -> EmbeddingProvider:  # noqa: ARG001
    from ragrun_common.embeddings.hashing import HashEmbedder

    return HashEmbedder(spec.dim)


def _local(spec: EmbeddingSpec, settings: CommonSettings) -> EmbeddingProvider:  # noqa: ARG001
    from ragrun_common.embeddings.local import LocalEmbedder

    return LocalEmbedder(threads=settings.local_model_threads, cache_dir=settings.model_cache)


def _vertex(spec: EmbeddingSpec, settings: CommonSettings) -> EmbeddingProvider:
    from ragrun_common.embeddings.vertex import VertexEmbedder

    token = settings.vertex_access_token
    return VertexEmbedder(
        model=spec.model,
        dim=spec.dim,
        project=settings.project,
        location=settings.location,
        base_url=settings.vertex_base_url,
        access_token=token.get_secret_value() if token else None,
    )


_FACTORIES: dict[str, Callable[[EmbeddingSpec, CommonSettings], EmbeddingProvider]] = {
    "hash": _hash,
    "local": _local,
    "vertex": _vertex,
}


def create_provider(
    settings: CommonSettings, spec: EmbeddingSpec | None = None
) -> EmbeddingProvider:
    """Build the provider ``spec`` names, by default the settings' (``RAGRUN_EMBEDDINGS``).

    Heavy dependencies are imported lazily; Vertex AI's project, location and
    endpoint come from the settings either way.
    """
    spec = spec or settings.embedding
    return _FACTORIES[spec.kind](spec, settings)
