"""Vertex AI text embeddings through the google-genai SDK in Vertex mode.

The SDK picks the endpoint from the model name: ``text-embedding-*`` models go to
``...:predict``, ``gemini-embedding-001`` to ``...:batchEmbedContents`` (or
``...:embedContent`` for a single text). Every failure is mapped to the two
error roots so the calling stage can nack (retry) or ack (give up).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NoReturn

import google.auth.exceptions
import numpy as np
import pydantic
from google.genai import errors as genai_errors
from google.genai import types

from ragrun_common.contracts import Vectors
from ragrun_common.embeddings.base import Task
from ragrun_common.errors import PermanentError, RetryableError, ThrottledError
from ragrun_common.transport import NETWORK_ERRORS
from ragrun_common.vertex_client import make_vertex_client

# The statuses Google documents as transient (the SDK's own retry set).
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


_NETWORK_ERRORS = NETWORK_ERRORS


class VertexEmbedder:
    """Embeds texts with a Vertex AI model; safe to share between threads.

    One ``genai.Client`` is created up front and reused, so connections and
    credentials are pooled. The SDK's own retries are switched off: Pub/Sub owns
    message-level retries and ragrun adds bounded backoff around this call.
    """

    def __init__(
        self,
        *,
        model: str,
        dim: int,
        project: str,
        location: str,
        base_url: str | None = None,
        access_token: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.name = f"vertex:{model}"
        self.dim = dim
        self.model = model
        self._client = make_vertex_client(
            project=project,
            location=location,
            base_url=base_url,
            access_token=access_token,
            timeout_s=timeout_s,
        )

    def embed(self, texts: Sequence[str], task: Task) -> Vectors:
        """Embed ``texts`` as one request; unit-length float32 rows in input order.

        Raises :class:`RetryableError` for quota, server, network and malformed
        answers and :class:`PermanentError` for requests Vertex rejects.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # One Content per text: a bare list of strings would become one
        # multi-part Content (one fused vector) for multimodal Gemini models.
        contents: list[types.Content] = [
            types.Content(role="user", parts=[types.Part(text=text)]) for text in texts
        ]
        config = types.EmbedContentConfig(
            task_type=task.value, output_dimensionality=self.dim, auto_truncate=True
        )
        try:
            response = self._client.models.embed_content(
                model=self.model, contents=contents, config=config
            )
        except genai_errors.APIError as e:
            _raise_for_api_error(e, self.model)
        except (
            json.JSONDecodeError,
            pydantic.ValidationError,
            genai_errors.UnknownApiResponseError,
        ) as e:
            raise RetryableError(f"Vertex AI {self.model}: malformed answer: {e}") from e
        except google.auth.exceptions.RefreshError as e:
            # google-auth marks refresh failures that are worth retrying.
            error_type = RetryableError if getattr(e, "retryable", False) else PermanentError
            raise error_type(f"Vertex AI {self.model}: cannot refresh credentials: {e}") from e
        except google.auth.exceptions.DefaultCredentialsError as e:
            raise PermanentError(f"Vertex AI {self.model}: no credentials: {e}") from e
        except _NETWORK_ERRORS as e:
            raise RetryableError(f"Vertex AI {self.model}: {type(e).__name__}: {e}") from e
        except ValueError as e:
            # The SDK validates requests client-side (e.g. contents it cannot send).
            raise PermanentError(f"Vertex AI {self.model}: request refused: {e}") from e
        return self._to_vectors(response, len(texts))

    def close(self) -> None:
        """Release the client's connection pool."""
        self._client.close()

    def _to_vectors(self, response: types.EmbedContentResponse, expected: int) -> Vectors:
        """Check the answer's shape and L2-normalise it.

        text-embedding-005 truncates to ``output_dimensionality`` without
        renormalising, so rows are not unit length until this step.
        """
        embeddings = response.embeddings or []
        if len(embeddings) != expected:
            raise RetryableError(
                f"Vertex AI {self.model}: malformed answer: "
                f"{len(embeddings)} embeddings for {expected} texts"
            )
        rows: list[list[float]] = []
        for index, embedding in enumerate(embeddings):
            values = embedding.values or []
            if len(values) != self.dim:
                raise RetryableError(
                    f"Vertex AI {self.model}: malformed answer: embedding {index} has "
                    f"{len(values)} dimensions, expected {self.dim}"
                )
            rows.append(values)
        vectors = np.asarray(rows, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0.0):
            raise RetryableError(
                f"Vertex AI {self.model}: malformed answer: zero or non-finite embedding"
            )
        normalised: Vectors = (vectors / norms).astype(np.float32, copy=False)
        return normalised


def _raise_for_api_error(error: genai_errors.APIError, model: str) -> NoReturn:
    """Map an HTTP error answer to ragrun's error roots.

    Other 4xx (bad request, permission, not found) cannot succeed on retry;
    unlisted codes (other 5xx, unexpected statuses) are retried so Pub/Sub
    dead-letters them after its attempts rather than dropping them.
    """
    message = f"Vertex AI {model}: HTTP {error.code} {error.status}: {error.message}"
    if error.code == 429:
        raise ThrottledError(message) from error
    if error.code in _RETRYABLE_STATUSES:
        raise RetryableError(message) from error
    if 400 <= error.code < 500:
        raise PermanentError(message) from error
    raise RetryableError(message) from error
