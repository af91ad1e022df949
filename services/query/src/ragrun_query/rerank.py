"""The optional reranking step: rescore the top candidates with a slower, better model.

A :class:`Reranker` scores ``(query, passage)`` pairs; :func:`rerank` orders the
search results by those scores and keeps ``k``. Which reranker runs is the
setting ``RAGRUN_QUERY_RERANK``:

``none`` (default)
    no reranking; the search order stands.
``cross-encoder:MODEL``
    a sentence-transformers ``CrossEncoder`` (name or local path; needs the
    ``local`` extra of ragrun-common and the model on disk, as the service runs
    offline with ``HF_HUB_OFFLINE=1``).

Other rerankers plug in by passing any object with ``name`` and ``score`` to
``create_app(reranker=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ragrun_query.search import Result


class Reranker(Protocol):
    """Scores passages for a query; higher is more relevant."""

    name: str

    def score(self, query: str, passages: Sequence[str]) -> Sequence[float]: ...


@dataclass(frozen=True, slots=True)
class RerankSpec:
    kind: str
    model: str | None = None


def parse_rerank_spec(value: str) -> RerankSpec:
    """Parse ``none`` | ``cross-encoder:MODEL``; raise ValueError naming what is wrong."""
    kind, _, model = value.strip().partition(":")
    if kind not in _FACTORIES:
        raise ValueError(
            f"RAGRUN_QUERY_RERANK={value!r}: expected one of {', '.join(sorted(_FACTORIES))}"
        )
    if kind == "cross-encoder" and not model:
        raise ValueError("RAGRUN_QUERY_RERANK=cross-encoder needs a model: cross-encoder:MODEL")
    if kind == "none" and model:
        raise ValueError("RAGRUN_QUERY_RERANK=none takes no model")
    return RerankSpec(kind, model or None)


def create_reranker(value: str) -> Reranker | None:
    """The reranker the setting names, or ``None`` for ``none``."""
    spec = parse_rerank_spec(value)
    return _FACTORIES[spec.kind](spec)


def rerank(reranker: Reranker, query: str, results: Sequence[Result], k: int) -> list[Result]:
    """The ``k`` results the reranker scores highest, its score replacing the search's.

    Ties keep the search order; each result's ``ranks["rerank"]`` is its new place.
    """
    if not results:
        return []
    scores = [float(s) for s in reranker.score(query, [r.content for r in results])]
    if len(scores) != len(results):
        raise ValueError(
            f"reranker {reranker.name} returned {len(scores)} scores for {len(results)} passages"
        )
    order = sorted(range(len(results)), key=lambda i: (-scores[i], i))
    return [
        replace(results[i], score=scores[i], ranks={**results[i].ranks, "rerank": place})
        for place, i in enumerate(order[:k], start=1)
    ]


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder; loaded once, safe to share between threads."""

    def __init__(self, model: str) -> None:
        from sentence_transformers import CrossEncoder

        self.name = f"cross-encoder:{model}"
        self._model: Any = CrossEncoder(model)

    def score(self, query: str, passages: Sequence[str]) -> Sequence[float]:
        scores = self._model.predict([(query, passage) for passage in passages])
        return [float(s) for s in scores]


def _none(spec: RerankSpec) -> Reranker | None:  # noqa: ARG001
    return None


def _cross_encoder(spec: RerankSpec) -> Reranker | None:
    assert spec.model is not None
    return CrossEncoderReranker(spec.model)


_FACTORIES: dict[str, Callable[[RerankSpec], Reranker | None]] = {
    "none": _none,
    "cross-encoder": _cross_encoder,
}
