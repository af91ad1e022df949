"""Which embedding provider to use, parsed from ``RAGRUN_EMBEDDINGS``.

``local`` is all-MiniLM-L6-v2 shipped in a Python package (offline),
``vertex:MODEL`` is Vertex AI through google-genai (``vertex`` alone means
``text-embedding-005``), ``hash`` is a deterministic bag-of-words hasher for
tests where the model is not the point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["local", "vertex", "hash"]

DEFAULT_VERTEX_MODEL = "text-embedding-005"
LOCAL_MODEL = "all-MiniLM-L6-v2"

_DEFAULT_DIMS: dict[str, int] = {
    "local": 384,
    "hash": 384,
    "vertex:text-embedding-005": 768,
    "vertex:text-multilingual-embedding-002": 768,
    "vertex:gemini-embedding-001": 768,
}
_VERTEX_FALLBACK_DIM = 768
_MAX_INDEXABLE_DIM = 2000  # pgvector's HNSW limit for the vector type


@dataclass(frozen=True, slots=True)
class EmbeddingSpec:
    kind: Kind
    model: str
    dim: int

    @property
    def name(self) -> str:
        """The identifier recorded with every vector, e.g. ``vertex:text-embedding-005``."""
        return self.kind if self.kind in ("local", "hash") else f"{self.kind}:{self.model}"


def parse_embedding_spec(value: str, dim: int | None = None) -> EmbeddingSpec:
    """Parse ``local`` | ``hash`` | ``vertex[:MODEL]``; raise ValueError naming what is wrong."""
    kind, _, model = value.strip().partition(":")
    if kind == "local":
        if model and model != LOCAL_MODEL:
            raise ValueError(f"RAGRUN_EMBEDDINGS: the local provider only ships {LOCAL_MODEL}")
        spec_model, key = LOCAL_MODEL, "local"
    elif kind == "hash":
        spec_model, key = "hash", "hash"
    elif kind == "vertex":
        spec_model = model or DEFAULT_VERTEX_MODEL
        key = f"vertex:{spec_model}"
    else:
        raise ValueError(f"RAGRUN_EMBEDDINGS={value!r}: expected 'local', 'hash' or 'vertex:MODEL'")
    default_dim = _DEFAULT_DIMS.get(key, _VERTEX_FALLBACK_DIM)
    resolved = dim or default_dim
    if kind == "local" and resolved != 384:
        raise ValueError("RAGRUN_EMBEDDING_DIM: all-MiniLM-L6-v2 produces 384 dimensions")
    if not 1 <= resolved <= _MAX_INDEXABLE_DIM:
        raise ValueError(f"RAGRUN_EMBEDDING_DIM must be 1..{_MAX_INDEXABLE_DIM}, got {resolved}")
    return EmbeddingSpec(kind=kind, model=spec_model, dim=resolved)  # type: ignore[arg-type]
