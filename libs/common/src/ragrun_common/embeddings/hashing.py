"""A deterministic bag-of-words embedder for tests where the model is not the point.

Texts sharing words get similar vectors, so ranking still behaves sensibly for
keyword-like queries; it is not a semantic model.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from ragrun_common.contracts import Vectors
from ragrun_common.embeddings.base import Task

_WORD = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    def __init__(self, dim: int = 384) -> None:
        self.name = "hash"
        self.dim = dim

    def embed(self, texts: Sequence[str], task: Task) -> Vectors:  # noqa: ARG002
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dim
                sign = 1.0 if digest[4] & 1 else -1.0
                out[row, bucket] += sign
            norm = float(np.linalg.norm(out[row]))
            if norm == 0.0:
                out[row, 0] = 1.0
            else:
                out[row] /= norm
        return out
