"""Envelope decoding: Eventarc CloudEvents and Pub/Sub-pushed GCS notifications.

Golden envelopes in data/ have the shapes Eventarc and Pub/Sub push deliver;
the adapter tests post them through functions-framework's real app.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import functions_framework
import pytest

from ragrun_chunker.events import FINALIZED, PUBSUB_PUBLISHED, Action, decode_event
from ragrun_common.errors import ContractError

DATA = Path(__file__).parent / "data"
GENERATION = 1795673826894964
JSON_API = {"payloadFormat": "JSON_API_V1"}


def golden(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def test_eventarc_finalized_is_an_index_event() -> None:
    envelope = golden("eventarc_finalized.json")
    event = decode_event(envelope["type"], envelope["data"])
    assert event.action is Action.INDEX
    assert (event.bucket, event.name, event.generation) == ("docs", "guides/intro.md", GENERATION)
    assert (event.content_type, event.size) == ("text/markdown", 5969)
    assert event.metadata == {"team": "docs", "lang": "en"}
    assert event.document().uri == "gs://docs/guides/intro.md"


def test_eventarc_deleted_is_a_delete_event() -> None:
    envelope = golden("eventarc_deleted.json")
    event = decode_event(envelope["type"], envelope["data"])
    assert event.action is Action.DELETE and event.document().deleted


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("pubsub_push_finalize.json", Action.INDEX),
        ("pubsub_push_delete.json", Action.DELETE),
        ("pubsub_push_metadata_update.json", Action.IGNORE),
        ("pubsub_push_no_payload.json", Action.INDEX),
    ],
)
def test_pubsub_notifications(name: str, action: Action) -> None:
    event = decode_event(PUBSUB_PUBLISHED, golden(name))
    assert event.action is action
    assert (event.bucket, event.name, event.generation) == ("docs", "guides/intro.md", GENERATION)


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        (FINALIZED, {"bucket": "b"}),
        (FINALIZED, ["not", "an", "object"]),
        (
            "google.cloud.storage.object.v1.finalized",
            {"bucket": "b", "name": "n", "generation": "x"},
        ),
        ("com.example.unknown", {}),
        (PUBSUB_PUBLISHED, {"subscription": "s"}),
        (
            PUBSUB_PUBLISHED,
            {"message": {"data": "%%%", "attributes": {"payloadFormat": "JSON_API_V1"}}},
        ),
    ],
)
def test_malformed_events_are_contract_errors(event_type: str, data: Any) -> None:
    with pytest.raises(ContractError):
        decode_event(event_type, data)


@pytest.fixture
def client() -> Any:
    source = Path(__file__).parent / "recording_function.py"
    app = functions_framework.create_app(
        target="record", source=str(source), signature_type="cloudevent"
    )
    return app.test_client()


def _recorded() -> list[Any]:
    """What the recording function decoded (functions-framework loads it by path)."""
    for module in sys.modules.values():
        decoded = getattr(module, "DECODED", None)
        if isinstance(decoded, list) and getattr(module, "record", None):
            return decoded
    raise AssertionError("recording function not loaded")


def test_functions_framework_accepts_a_structured_eventarc_event(client: Any) -> None:
    response = client.post(
        "/", json=golden("eventarc_finalized.json"),
        headers={"Content-Type": "application/cloudevents+json"},
    )  # fmt: skip
    assert response.status_code == 200, response.data
    assert _recorded()[-1].name == "guides/intro.md"


def test_functions_framework_accepts_a_binary_eventarc_event(client: Any) -> None:
    envelope = golden("eventarc_finalized.json")
    headers = {f"ce-{k}": v for k, v in envelope.items() if k not in ("data", "datacontenttype")}
    response = client.post("/", json=envelope["data"], headers=headers)
    assert response.status_code == 200, response.data
    assert _recorded()[-1].action is Action.INDEX


def test_functions_framework_converts_a_raw_pubsub_push(client: Any) -> None:
    response = client.post("/", json=golden("pubsub_push_delete.json"))
    assert response.status_code == 200, response.data
    event = _recorded()[-1]
    assert event.action is Action.DELETE and event.generation == GENERATION
