"""A local Gemini endpoint on Vertex AI that answers the REST calls google-genai makes.

Point the real client at it with ``HttpOptions(base_url=stub.base_url,
api_version="v1")`` and a static token, as for :mod:`vertex_stub`. Two methods are
served under ``/v1/projects/{p}/locations/{l}/publishers/google/models/{model}:METHOD``,
with the shapes google-genai 3.x uses in Vertex mode:

``:generateContent``
    ``{"contents": [{"role": "user", "parts": [{"text": str}]}],
    "systemInstruction": {"parts": [{"text": str}], ...},
    "generationConfig": {"temperature": float, "maxOutputTokens": int, ...}}`` ->
    ``{"candidates": [{"content": {"role": "model", "parts": [{"text": str}]},
    "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount",
    "candidatesTokenCount", "totalTokenCount"}, "modelVersion": str,
    "createTime": str, "responseId": str}``
``:streamGenerateContent?alt=sse``
    the same request; the answer is a server-sent event stream, one
    ``data: {GenerateContentResponse}`` event per piece of text, the last one
    carrying ``finishReason`` and ``usageMetadata``.

What the model says comes from ``reply`` (a function of the request), by default a
fixed sentence. Faults can be injected: error statuses with Google's JSON error
body, a blocked answer (``finishReason`` ``SAFETY``, no text), a stream that
breaks off after its first event, and latency.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ragrun_common.testing._loopback import LoopbackStub, TrackedHandler
from ragrun_common.tokens import count_tokens

DEFAULT_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash-001")
DEFAULT_REPLY = "This is the stub's answer."

_PATH = re.compile(
    r"^/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/publishers/google/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)$"
)
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """One request the stub received: what the caller asked, and what it answered."""

    method: str
    model: str
    prompt: str
    system: str | None
    generation_config: dict[str, Any]
    query: str
    status: int


class _BadRequestError(Exception):
    pass


Reply = Callable[[GenerateRequest], str]


class GeminiStub(LoopbackStub):
    """A Gemini ``generateContent`` server on 127.0.0.1 and a free port, run in a thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    ``reply(request)`` makes the answer text; ``stream_pieces`` is how many SSE
    events a streamed answer is split into (by words).
    """

    def __init__(
        self,
        *,
        models: tuple[str, ...] = DEFAULT_MODELS,
        reply: Reply | None = None,
        stream_pieces: int = 3,
    ) -> None:
        self.models = models
        self.reply: Reply = reply or (lambda _request: DEFAULT_REPLY)
        self.stream_pieces = max(1, stream_pieces)
        super().__init__()
        self._requests: list[GenerateRequest] = []
        self._failures: list[int] = []
        self._blocked = 0
        self._break_streams = 0
        self._delay_s = 0.0

    # -- observations and faults -------------------------------------------

    @property
    def requests(self) -> list[GenerateRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._failures.clear()
            self._blocked = 0
            self._break_streams = 0
            self._delay_s = 0.0

    def fail_next(self, n: int = 1, *, status: int = 429) -> None:
        """Answer the next ``n`` requests with ``status`` and Google's error body."""
        with self._lock:
            self._failures.extend([status] * n)

    def block_next(self, n: int = 1) -> None:
        """Answer the next ``n`` requests with no text and ``finishReason: SAFETY``."""
        with self._lock:
            self._blocked += n

    def break_next_stream(self, n: int = 1) -> None:
        """Drop the connection of the next ``n`` streams after their first event."""
        with self._lock:
            self._break_streams += n

    def set_delay(self, seconds: float) -> None:
        with self._lock:
            self._delay_s = max(0.0, seconds)

    # -- request handling ----------------------------------------------------

    def _plan(self, path: str, headers: Mapping[str, str], body: bytes) -> _Plan:
        """Decide the answer to one POST (called from handler threads)."""
        with self._lock:
            delay = self._delay_s
        if delay and self._stopping.wait(delay):
            return _Plan(status=0)
        route_path, _, query = path.partition("?")
        match = _PATH.match(route_path)
        if match is None:
            return _Plan(*_error(404, f"The requested URL {path} was not found."))
        method, model = match["method"], match["model"]
        if not headers.get("authorization", "").startswith("Bearer "):
            return _Plan(*_error(401, "Request is missing a bearer token."))
        if method == "streamGenerateContent" and query != "alt=sse":
            return _Plan(*_error(400, "This stub streams server-sent events only (alt=sse)."))
        try:
            prompt, system, config = _parse(body)
        except _BadRequestError as e:
            return _Plan(*_error(400, str(e)))
        request = GenerateRequest(method, model, prompt, system, config, query, 0)
        if model not in self.models:
            return self._record(request, _Plan(*_error(404, f"Model {model} was not found.")))
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
            blocked = failure is None and self._blocked > 0
            self._blocked -= blocked
            streaming = method == "streamGenerateContent"
            broken = streaming and failure is None and self._break_streams > 0
            self._break_streams -= broken
        if failure is not None:
            return self._record(request, _Plan(*_error(failure, "Injected failure.")))
        text = "" if blocked else self.reply(request)
        limit = config.get("maxOutputTokens")
        if isinstance(limit, int) and limit > 0:
            text = " ".join(text.split(" ")[:limit])
        prompt_tokens = count_tokens(prompt) + count_tokens(system or "")
        pieces = _split(text, self.stream_pieces) if streaming else [text]
        events = [
            _response(
                model,
                piece,
                last=i == len(pieces) - 1,
                blocked=blocked,
                prompt_tokens=prompt_tokens,
                answer_tokens=count_tokens(text),
            )
            for i, piece in enumerate(pieces)
        ]
        if not streaming:
            return self._record(request, _Plan(200, json.dumps(events[0]).encode()))
        return self._record(request, _Plan(200, b"", events=events, broken=broken))

    def _record(self, request: GenerateRequest, plan: _Plan) -> _Plan:
        entry = GenerateRequest(
            request.method,
            request.model,
            request.prompt,
            request.system,
            request.generation_config,
            request.query,
            plan.status,
        )
        with self._lock:
            self._requests.append(entry)
        return plan


@dataclass(slots=True)
class _Plan:
    status: int
    body: bytes = b""
    events: list[dict[str, Any]] | None = None
    broken: bool = False


def _split(text: str, pieces: int) -> list[str]:
    """``text`` in up to ``pieces`` consecutive parts that join back to it exactly."""
    words = re.findall(r"\S+\s*|\s+", text)
    if not words:
        return [""]
    size = max(1, -(-len(words) // pieces))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _response(
    model: str, text: str, *, last: bool, blocked: bool, prompt_tokens: int, answer_tokens: int
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"index": 0}
    if blocked:
        candidate["finishReason"] = "SAFETY"
        candidate["safetyRatings"] = [
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
        ]
    else:
        candidate["content"] = {"role": "model", "parts": [{"text": text}]}
        if last:
            candidate["finishReason"] = "STOP"
    body: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": model,
        "createTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "responseId": uuid.uuid4().hex[:22],
    }
    if last:
        body["usageMetadata"] = {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": answer_tokens,
            "totalTokenCount": prompt_tokens + answer_tokens,
        }
    return body


def _parse(body: bytes) -> tuple[str, str | None, dict[str, Any]]:
    try:
        data = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _BadRequestError(f"Invalid JSON payload received. {e}") from e
    if not isinstance(data, dict):
        raise _BadRequestError("Invalid JSON payload received: expected an object.")
    contents = data.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _BadRequestError("contents is not specified")
    prompt = "\n".join(_text(content, "contents") for content in contents)
    system = data.get("systemInstruction")
    config = data.get("generationConfig") or {}
    if not isinstance(config, dict):
        raise _BadRequestError("generationConfig must be an object.")
    return prompt, None if system is None else _text(system, "systemInstruction"), config


def _text(content: object, where: str) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list) or not parts:
        raise _BadRequestError(f"{where}: each content needs at least one part.")
    texts = [part.get("text") for part in parts if isinstance(part, dict)]
    if len(texts) != len(parts) or not all(isinstance(text, str) for text in texts):
        raise _BadRequestError(f"{where}: only text parts are supported.")
    return "".join(str(text) for text in texts)


def _error(status: int, message: str) -> tuple[int, bytes]:
    body = {"error": {"code": status, "message": message, "status": _STATUS_NAMES.get(status)}}
    return status, json.dumps(body).encode()


class _Handler(TrackedHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        plan = self.server.stub._plan(self.path, headers, body)
        if plan.status == 0:
            self.drop()
            return
        if plan.events is None:
            self.send_response(plan.status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(plan.body)))
            self.end_headers()
            self.wfile.write(plan.body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, event in enumerate(plan.events):
            self._chunk(b"data: " + json.dumps(event).encode() + b"\r\n\r\n")
            if plan.broken and index == 0:
                self.drop()
                return
        self._chunk(b"")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


GeminiStub.handler = _Handler
GeminiStub.thread_name = "gemini-stub"
