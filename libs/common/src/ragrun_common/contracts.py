"""Versioned message contracts between the stages.

Every message carries two attributes: ``ragrun_schema`` (which contract) and
``ragrun_schema_version``. Chunk batches are JSON. Vector batches are a small
JSON header followed by the vectors packed as little-endian float32, so a
250 x 768 batch is ~770 kB of vectors instead of several MB of JSON floats.

Identity is content-addressed: a document is (bucket, name), a version of it is
its GCS generation, and a chunk id is derived from (bucket, name, generation,
index) and the fingerprint of the chunking that cut it. Pub/Sub message ids
never take part in idempotency.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ragrun_common.errors import ContractError

SCHEMA_ATTR = "ragrun_schema"
VERSION_ATTR = "ragrun_schema_version"

_VECTOR_MAGIC = b"RGV1"
_HEADER_LEN = struct.Struct("<I")

Vectors = npt.NDArray[np.float32]


def document_id(bucket: str, name: str) -> str:
    """Stable id of the document at gs://bucket/name (all its generations)."""
    return hashlib.sha256(f"{bucket}\0{name}".encode()).hexdigest()[:32]


def chunk_id(bucket: str, name: str, generation: int, index: int, chunking: str = "") -> str:
    """Stable id of chunk ``index`` of one generation of a document.

    ``chunking`` (the chunker's fingerprint, see :class:`DocumentRef`) takes part
    when set, so chunks cut with other settings get other ids; without it the id
    is the one messages from before fingerprints had.
    """
    key = f"{bucket}\0{name}\0{generation}\0{index}"
    if chunking:
        key += f"\0{chunking}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DocumentRef(_Frozen):
    """One generation of one object, as every message about it describes it.

    ``chunk_count`` is how many chunks the chunker produced for this
    generation in all; the writer compares it with what it has written.
    ``error`` is set, with no chunks, when the chunker gave up on the object;
    ``deleted`` marks the object's deletion (also with no chunks).

    ``chunking`` fingerprints what produced the chunks (chunker version and
    chunking settings) and ``revision`` is when the chunker processed the event
    (ns since the epoch). Replaying the objects subscription after a settings
    change produces a new chunk set for the same generation; the writer keeps
    the newest revision and serves the previous complete set until it is done.
    Both default to empty/0, as in messages from before they existed.

    ``chunk_count_final`` is False on the chunk batches of a document the
    chunker streams (a large text object): their total is not known until the
    end, so they carry an upper bound (the chunker's ``RAGRUN_MAX_CHUNKS``) and
    the manifest, published last, carries the final count. It defaults to
    True, as in messages from before it existed.
    """

    bucket: str
    name: str
    generation: int
    content_type: str | None = None
    size: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    chunk_count: int = 0
    error: str | None = None
    deleted: bool = False
    chunking: str = ""
    revision: int = Field(0, ge=0)
    chunk_count_final: bool = True

    @property
    def document_id(self) -> str:
        return document_id(self.bucket, self.name)

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"

    def labels(self) -> dict[str, str]:
        """Log labels that identify this document version."""
        return {"document": self.uri, "generation": str(self.generation)}


class Chunk(_Frozen):
    """A span of a document's text, sized for one embedding input."""

    chunk_id: str
    index: int
    text: str
    tokens: int
    metadata: dict[str, Any] = Field(default_factory=dict)


class _Message(_Frozen):
    SCHEMA: ClassVar[str]
    VERSION: ClassVar[str] = "1"

    document: DocumentRef

    def attributes(self) -> dict[str, str]:
        return {
            SCHEMA_ATTR: self.SCHEMA,
            VERSION_ATTR: self.VERSION,
            "document_id": self.document.document_id,
            "generation": str(self.document.generation),
        }

    @classmethod
    def _check_attributes(cls, attributes: dict[str, str]) -> None:
        schema = attributes.get(SCHEMA_ATTR)
        version = attributes.get(VERSION_ATTR)
        if schema != cls.SCHEMA or version != cls.VERSION:
            raise ContractError(
                f"expected {SCHEMA_ATTR}={cls.SCHEMA} {VERSION_ATTR}={cls.VERSION}, "
                f"got {schema!r} version {version!r}"
            )


class ChunkBatch(_Message):
    """Chunks of one document, sized for one embedding request (chunker -> embedder)."""

    SCHEMA: ClassVar[str] = "ragrun.chunk-batch"

    chunks: list[Chunk] = Field(default_factory=list)

    def attributes(self) -> dict[str, str]:
        return {**super().attributes(), "count": str(len(self.chunks))}

    def encode(self) -> tuple[bytes, dict[str, str]]:
        return self.model_dump_json().encode(), self.attributes()

    @classmethod
    def decode(cls, data: bytes, attributes: dict[str, str]) -> ChunkBatch:
        cls._check_attributes(attributes)
        try:
            return cls.model_validate_json(data)
        except ValidationError as e:
            raise ContractError(f"malformed chunk batch: {e}") from e


class VectorBatch(_Message):
    """Chunks of one document with their embeddings (embedder -> writer)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)
    SCHEMA: ClassVar[str] = "ragrun.vector-batch"

    chunks: list[Chunk] = Field(default_factory=list)
    model: str
    vectors: Vectors = Field(exclude=True)

    def model_post_init(self, context: Any, /) -> None:  # noqa: ARG002 - pydantic hook
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.chunks):
            raise ContractError(
                f"{len(self.chunks)} chunks need a ({len(self.chunks)}, dim) vector array, "
                f"got shape {self.vectors.shape}"
            )

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def attributes(self) -> dict[str, str]:
        return {**super().attributes(), "dim": str(self.dim), "count": str(len(self.chunks))}

    def encode(self) -> tuple[bytes, dict[str, str]]:
        header = json.dumps({"dim": self.dim, **self.model_dump(mode="json")}).encode()
        body = np.ascontiguousarray(self.vectors, dtype="<f4").tobytes()
        data = _VECTOR_MAGIC + _HEADER_LEN.pack(len(header)) + header + body
        return data, self.attributes()

    @classmethod
    def decode(cls, data: bytes, attributes: dict[str, str]) -> VectorBatch:
        cls._check_attributes(attributes)
        if data[:4] != _VECTOR_MAGIC or len(data) < 8:
            raise ContractError("vector batch does not start with the RGV1 header")
        (length,) = _HEADER_LEN.unpack_from(data, 4)
        start = 4 + _HEADER_LEN.size
        try:
            header = json.loads(data[start : start + length])
            if not isinstance(header, dict):
                raise ContractError("malformed vector batch: the header is not a JSON object")
            dim = int(header.pop("dim"))
            count = len(header["chunks"])
            vectors = np.frombuffer(data, dtype="<f4", offset=start + length)
            if vectors.size != count * dim:
                raise ContractError(f"expected {count}x{dim} floats, got {vectors.size}")
            return cls.model_validate({**header, "vectors": vectors.reshape(count, dim)})
        # OverflowError: a "dim" of 1e999.
        except (ValueError, KeyError, TypeError, OverflowError, ValidationError) as e:
            raise ContractError(f"malformed vector batch: {e}") from e
