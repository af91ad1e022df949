"""A local Vertex AI embedding endpoint that answers the REST calls google-genai makes.

Point the real client at it with ``HttpOptions(base_url=stub.base_url,
api_version="v1")`` and a static token. Three methods are served under
``/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:METHOD``, with
the request and response shapes google-genai 3.x uses in Vertex mode:

``:predict`` (text-embedding-005 and other non-Gemini models)
    ``{"instances": [{"content": str, "task_type": str}],
    "parameters": {"outputDimensionality": int, "autoTruncate": bool}}`` ->
    ``{"predictions": [{"embeddings": {"values": [...], "statistics":
    {"truncated": bool, "token_count": int}}}], "metadata":
    {"billableCharacterCount": int}}``
``:batchEmbedContents`` (gemini-embedding-001 with several texts)
    ``{"requests": [{"content": {"parts": [{"text": str}], "role": "user"},
    "embedContentConfig": {"taskType", "outputDimensionality", "autoTruncate"}}]}``
    -> ``{"embeddings": [{"values": [...]}], "usageMetadata": {...}}``
``:embedContent`` (gemini-embedding-001 with a single text)
    ``{"content": {...}, "embedContentConfig": {...}}`` ->
    ``{"embedding": {"values": [...]}, "usageMetadata": {...}, "truncated": bool}``

Vectors are deterministic: a bag of words, hashed into buckets and projected
with a fixed random matrix to the model's native dimension, normalised there and
then cut to ``outputDimensionality``, as Vertex does. Texts sharing words get
similar vectors, and reduced-dimension vectors are not unit length.

The published per-request limits (texts, tokens per text and per request) are
enforced with ragrun's token estimate, errors use Google's JSON error body, and
faults (error statuses, malformed answers, dropped connections, latency) can be
injected to exercise the caller's error handling.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ragrun_common.testing._loopback import LoopbackStub, TrackedHandler
from ragrun_common.tokens import count_tokens

MalformedKind = Literal["count", "dim", "json"]

#: Native output dimension of each model the stub serves.
DEFAULT_MODELS: Mapping[str, int] = {
    "text-embedding-005": 768,
    "text-embedding-004": 768,
    "text-multilingual-embedding-002": 768,
    "gemini-embedding-001": 3072,
}

_PATH = re.compile(
    r"^/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/google/models/(?P<model>[^/:]+):(?P<method>predict|batchEmbedContents|embedContent)$"
)
_WORD = re.compile(r"\w+", re.UNICODE)
_BUCKETS = 2048
_PROJECTION_SEED = 20240520
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True, slots=True)
class StubRequest:
    """One request the stub received, as tests and benchmarks inspect it.

    ``status`` is what the stub answered (0 when it dropped the connection);
    fields the request did not carry are ``None``.
    """

    method: str
    project: str
    location: str
    model: str
    texts: tuple[str, ...]
    task_type: str | None
    dimensionality: int | None
    auto_truncate: bool | None
    tokens: int
    status: int

    @property
    def n_texts(self) -> int:
        return len(self.texts)


@dataclass(frozen=True, slots=True)
class _Parsed:
    texts: tuple[str, ...]
    task_type: str | None
    dimensionality: int | None
    auto_truncate: bool | None


class _BadRequestError(Exception):
    """The request body is not one Vertex would accept (answered with HTTP 400)."""


class VertexStub(LoopbackStub):
    """A Vertex AI embedding server on 127.0.0.1 and a free port, run in a thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. All
    methods are thread-safe; fault injections apply to the next embedding
    requests in arrival order.
    """

    def __init__(
        self,
        *,
        models: Mapping[str, int] = DEFAULT_MODELS,
        max_texts: int = 250,
        max_tokens_per_text: int = 2048,
        max_tokens_per_request: int = 20_000,
    ) -> None:
        self.models = dict(models)
        self.max_texts = max_texts
        self.max_tokens_per_text = max_tokens_per_text
        self.max_tokens_per_request = max_tokens_per_request
        super().__init__()
        self._requests: list[StubRequest] = []
        self._failures: list[tuple[int, str | None]] = []
        self._malformed: list[MalformedKind] = []
        self._disconnects = 0
        self._delay_s = 0.0

    # -- observations ------------------------------------------------------

    @property
    def requests(self) -> list[StubRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget recorded requests and pending faults, and remove the delay."""
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._malformed.clear()
            self._disconnects = 0
            self._delay_s = 0.0

    # -- fault injection ---------------------------------------------------

    def fail_next(self, n: int = 1, *, status: int = 429, message: str | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` and Google's error body."""
        with self._lock:
            self._failures.extend([(status, message)] * n)

    def malformed_next(self, n: int = 1, *, kind: MalformedKind = "count") -> None:
        """Answer the next ``n`` requests with HTTP 200 but a broken body.

        ``count``: one embedding fewer than texts; ``dim``: every vector one
        value short; ``json``: a body that is not JSON.
        """
        with self._lock:
            self._malformed.extend([kind] * n)

    def disconnect_next(self, n: int = 1) -> None:
        """Close the connection without answering the next ``n`` requests."""
        with self._lock:
            self._disconnects += n

    def set_delay(self, seconds: float) -> None:
        """Wait ``seconds`` before answering every request from now on (0 disables)."""
        with self._lock:
            self._delay_s = max(0.0, seconds)

    # -- request handling (called from handler threads) --------------------

    def _handle(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        """Answer one POST; returns (status, body), status 0 meaning "drop"."""
        with self._lock:
            delay = self._delay_s
        if delay and self._stopping.wait(delay):
            return 0, b""
        match = _PATH.match(path.split("?", 1)[0])
        if match is None:
            return _error(404, f"The requested URL {path} was not found on this server.")
        route = match.groupdict()
        record = {
            "method": route["method"],
            "project": route["project"],
            "location": route["location"],
            "model": route["model"],
        }
        if not headers.get("authorization", "").startswith("Bearer "):
            return self._answer(record, None, _error(401, "Request is missing a bearer token."))
        native_dim = self.models.get(route["model"])
        if native_dim is None:
            message = (
                f"Publisher Model `projects/{route['project']}/locations/{route['location']}"
                f"/publishers/google/models/{route['model']}` was not found."
            )
            return self._answer(record, None, _error(404, message))
        try:
            parsed = _parse(route["method"], body)
        except _BadRequestError as e:
            return self._answer(record, None, _error(400, str(e)))

        with self._lock:
            disconnect = self._disconnects > 0
            self._disconnects -= disconnect
            failure = None if disconnect or not self._failures else self._failures.pop(0)
            pending = not disconnect and failure is None and self._malformed
            malformed = self._malformed.pop(0) if pending else None
        if disconnect:
            return self._answer(record, parsed, (0, b""))
        if failure is not None:
            status, reason = failure
            return self._answer(record, parsed, _error(status, reason or "Injected failure."))
        try:
            answer = self._embed(route["method"], parsed, native_dim, malformed)
        except _BadRequestError as e:
            return self._answer(record, parsed, _error(400, str(e)))
        return self._answer(record, parsed, answer)

    def _answer(
        self, record: dict[str, str], parsed: _Parsed | None, answer: tuple[int, bytes]
    ) -> tuple[int, bytes]:
        texts = parsed.texts if parsed else ()
        entry = StubRequest(
            method=record["method"],
            project=record["project"],
            location=record["location"],
            model=record["model"],
            texts=texts,
            task_type=parsed.task_type if parsed else None,
            dimensionality=parsed.dimensionality if parsed else None,
            auto_truncate=parsed.auto_truncate if parsed else None,
            tokens=sum(count_tokens(text) for text in texts),
            status=answer[0],
        )
        with self._lock:
            self._requests.append(entry)
        return answer

    def _embed(
        self, method: str, parsed: _Parsed, native_dim: int, malformed: MalformedKind | None
    ) -> tuple[int, bytes]:
        """Check the published limits, then build the method's answer."""
        texts = parsed.texts
        if not texts:
            raise _BadRequestError("At least one content is required.")
        if len(texts) > self.max_texts:
            raise _BadRequestError(
                f"{len(texts)} instances are more than the {self.max_texts} allowed per request."
            )
        dim = parsed.dimensionality or native_dim
        if not 1 <= dim <= native_dim:
            raise _BadRequestError(f"outputDimensionality must be between 1 and {native_dim}.")
        token_counts = [count_tokens(text) for text in texts]
        if sum(token_counts) > self.max_tokens_per_request:
            raise _BadRequestError(
                f"Unable to submit request because the input token count is "
                f"{sum(token_counts)} but the model supports up to "
                f"{self.max_tokens_per_request}."
            )
        # Vertex truncates long texts unless autoTruncate is explicitly false.
        truncate = parsed.auto_truncate is not False
        truncated = [count > self.max_tokens_per_text for count in token_counts]
        if any(truncated) and not truncate:
            raise _BadRequestError(
                f"Unable to submit request because the input token count is "
                f"{max(token_counts)} but the model supports up to {self.max_tokens_per_text}."
            )
        vectors = _vectors(texts, native_dim, dim, self.max_tokens_per_text)
        if malformed == "json":
            return 200, b'{"predictions": [ this is not JSON'
        # Eight decimals keep JSON encoding cheap and change no ranking.
        rows: list[list[float]] = np.round(vectors.astype(np.float64), 8).tolist()
        if malformed == "dim":
            rows = [row[:-1] for row in rows]
        elif malformed == "count":
            rows = rows[:-1]
        used = [min(count, self.max_tokens_per_text) for count in token_counts]
        total = sum(used)
        usage = {"promptTokenCount": total, "totalTokenCount": total}
        if method == "predict":
            predictions = [
                {
                    "embeddings": {
                        "values": row,
                        "statistics": {"truncated": cut, "token_count": tokens},
                    }
                }
                for row, cut, tokens in zip(rows, truncated, used, strict=False)
            ]
            billable = sum(len(text) - sum(c.isspace() for c in text) for text in texts)
            body: dict[str, Any] = {
                "predictions": predictions,
                "metadata": {"billableCharacterCount": billable},
            }
        elif method == "batchEmbedContents":
            body = {"embeddings": [{"values": row} for row in rows], "usageMetadata": usage}
        else:  # embedContent: a single content
            body = {"usageMetadata": usage, "truncated": truncated[0]}
            if rows:
                body["embedding"] = {"values": rows[0]}
        return 200, json.dumps(body).encode()


class _Handler(TrackedHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        status, payload = self.server.stub._handle(self.path, headers, body)
        if status == 0:
            self.drop()
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


VertexStub.handler = _Handler
VertexStub.thread_name = "vertex-stub"


def _error(status: int, message: str) -> tuple[int, bytes]:
    """Google's JSON error body, which google-genai turns into ``APIError``."""
    name = _STATUS_NAMES.get(status, "UNKNOWN")
    body = {"error": {"code": status, "message": message, "status": name}}
    return status, json.dumps(body).encode()


def _parse(method: str, body: bytes) -> _Parsed:
    """Read texts and options from a request body, rejecting what Vertex would reject."""
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _BadRequestError(f"Invalid JSON payload received. {e}") from e
    if not isinstance(data, dict):
        raise _BadRequestError("Invalid JSON payload received: expected an object.")
    if method == "predict":
        instances = data.get("instances")
        if not isinstance(instances, list):
            raise _BadRequestError("'instances' must be a list.")
        texts: list[str] = []
        task_types: set[str | None] = set()
        for instance in instances:
            content = instance.get("content") if isinstance(instance, dict) else None
            if not isinstance(content, str):
                raise _BadRequestError("Each instance needs a string 'content'.")
            texts.append(content)
            task_types.add(instance.get("task_type"))
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise _BadRequestError("'parameters' must be an object.")
        return _Parsed(
            texts=tuple(texts),
            task_type=_single(task_types),
            dimensionality=_optional_int(parameters.get("outputDimensionality")),
            auto_truncate=_optional_bool(parameters.get("autoTruncate")),
        )
    requests = data.get("requests") if method == "batchEmbedContents" else [data]
    if not isinstance(requests, list):
        raise _BadRequestError("'requests' must be a list.")
    texts, configs = [], []
    for request in requests:
        if not isinstance(request, dict):
            raise _BadRequestError("Each request must be an object.")
        texts.append(_content_text(request.get("content")))
        # The SDK nests options in embedContentConfig; the REST reference also
        # lists them at the top level of EmbedContentRequest. Accept both.
        config = request.get("embedContentConfig") or request
        if not isinstance(config, dict):
            raise _BadRequestError("'embedContentConfig' must be an object.")
        configs.append(config)
    dims = {_optional_int(config.get("outputDimensionality")) for config in configs}
    truncates = {_optional_bool(config.get("autoTruncate")) for config in configs}
    if len(dims) > 1 or len(truncates) > 1:
        raise _BadRequestError("All requests in a batch must use the same options.")
    return _Parsed(
        texts=tuple(texts),
        task_type=_single({config.get("taskType") for config in configs}),
        dimensionality=next(iter(dims), None),
        auto_truncate=next(iter(truncates), None),
    )


def _content_text(content: object) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise _BadRequestError("Each content needs at least one part.")
    texts = [part.get("text") for part in parts if isinstance(part, dict)]
    if len(texts) != len(parts) or not all(isinstance(text, str) for text in texts):
        raise _BadRequestError("Only text parts are supported.")
    return "".join(str(text) for text in texts)


def _single(values: set[Any]) -> Any:
    """The one value every item shares (None if absent); mixed values are rejected."""
    if len(values) > 1:
        raise _BadRequestError("All instances in a request must use the same task type.")
    return next(iter(values), None)


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadRequestError(f"Expected an integer, got {value!r}.")
    return value


def _optional_bool(value: object) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise _BadRequestError(f"Expected a boolean, got {value!r}.")
    return value


@lru_cache(maxsize=4)
def _projection(native_dim: int) -> npt.NDArray[np.float32]:
    """A fixed Gaussian matrix mapping word buckets to the model's native space."""
    rng = np.random.default_rng(_PROJECTION_SEED + native_dim)
    return rng.standard_normal((_BUCKETS, native_dim), dtype=np.float32)


def _vectors(
    texts: Sequence[str], native_dim: int, dim: int, max_words: int
) -> npt.NDArray[np.float32]:
    """Deterministic embeddings: unit length at ``native_dim``, then cut to ``dim``."""
    bags = np.zeros((len(texts), _BUCKETS), dtype=np.float32)
    for row, text in enumerate(texts):
        words = _WORD.findall(text.lower())[:max_words]
        for word in words:
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest[:4], "little") % _BUCKETS
            bags[row, bucket] += 1.0 if digest[4] & 1 else -1.0
        if not bags[row].any():
            bags[row, 0] = 1.0  # texts without words still get a stable vector
    full = bags @ _projection(native_dim)
    full /= np.linalg.norm(full, axis=1, keepdims=True)
    result: npt.NDArray[np.float32] = full[:, :dim]
    return result
