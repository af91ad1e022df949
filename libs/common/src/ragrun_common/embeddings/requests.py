"""Send one embedding request, splitting it when the provider rejects it as too large."""

from __future__ import annotations

import numpy as np

from ragrun_common.contracts import Vectors
from ragrun_common.embeddings.base import EmbeddingProvider, Task
from ragrun_common.errors import PermanentError


def embed_request(provider: EmbeddingProvider, texts: list[str]) -> Vectors:
    """Embed one request; if the provider rejects it, split it and embed the halves.

    A request refused as too large is never dropped: the halves go again, down
    to single texts. Only a single text the provider rejects on its own raises.
    """
    try:
        return provider.embed(texts, Task.DOCUMENT)
    except PermanentError:
        if len(texts) == 1:
            raise
        middle = len(texts) // 2
        return np.concatenate(
            [embed_request(provider, texts[:middle]), embed_request(provider, texts[middle:])]
        )
