"""Decode the CloudEvents that reach the chunker into one object event.

Two routes deliver GCS object changes:

- Eventarc's direct storage trigger: ``google.cloud.storage.object.v1.finalized``
  or ``...deleted``, whose data is the object resource.
- A Pub/Sub push (or Eventarc Pub/Sub trigger) carrying a GCS notification:
  ``google.cloud.pubsub.topic.v1.messagePublished``, whose message has the
  attributes ``eventType``, ``bucketId``, ``objectId``, ``objectGeneration``,
  ``payloadFormat`` and, for ``JSON_API_V1``, the object resource as data. This
  route can be replayed by seeking the subscription.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ragrun_common.contracts import DocumentRef
from ragrun_common.errors import ContractError

FINALIZED = "google.cloud.storage.object.v1.finalized"
DELETED = "google.cloud.storage.object.v1.deleted"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


class Action(Enum):
    INDEX = "index"
    DELETE = "delete"
    IGNORE = "ignore"


_NOTIFICATION_ACTIONS = {
    "OBJECT_FINALIZE": Action.INDEX,
    "OBJECT_DELETE": Action.DELETE,
}
_EVENTARC_ACTIONS = {FINALIZED: Action.INDEX, DELETED: Action.DELETE}


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """What happened to which generation of which object."""

    action: Action
    bucket: str
    name: str
    generation: int
    content_type: str | None = None
    size: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    content_encoding: str | None = None  # "gzip": stored compressed (decompressive transcoding)

    def document(self) -> DocumentRef:
        return DocumentRef(
            bucket=self.bucket,
            name=self.name,
            generation=self.generation,
            content_type=self.content_type,
            size=self.size,
            metadata=self.metadata,
            deleted=self.action is Action.DELETE,
        )


def _from_resource(
    action: Action, resource: Mapping[str, Any], fallback: Mapping[str, str]
) -> ObjectEvent:
    bucket = resource.get("bucket") or fallback.get("bucketId")
    name = resource.get("name") or fallback.get("objectId")
    generation = resource.get("generation") or fallback.get("objectGeneration")
    if not bucket or not name or generation is None:
        raise ContractError("object event lacks bucket, name or generation")
    try:
        size = int(resource["size"]) if resource.get("size") is not None else None
        gen = int(generation)
    except (TypeError, ValueError) as e:
        raise ContractError(f"object event has a non-numeric generation or size: {e}") from e
    metadata = resource.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise ContractError("object metadata is not a key/value map")
    return ObjectEvent(
        action=action,
        bucket=str(bucket),
        name=str(name),
        generation=gen,
        content_type=resource.get("contentType"),
        size=size,
        metadata={str(k): str(v) for k, v in metadata.items()},
        content_encoding=resource.get("contentEncoding"),
    )


def _from_pubsub(data: Mapping[str, Any]) -> ObjectEvent:
    message = data.get("message")
    if not isinstance(message, Mapping):
        raise ContractError("Pub/Sub event without a message")
    attributes = message.get("attributes") or {}
    event_type = attributes.get("eventType", "")
    action = _NOTIFICATION_ACTIONS.get(event_type, Action.IGNORE)
    resource: Mapping[str, Any] = {}
    if attributes.get("payloadFormat") == "JSON_API_V1" and message.get("data"):
        try:
            resource = json.loads(base64.b64decode(message["data"], validate=True))
        except (binascii.Error, ValueError) as e:
            raise ContractError(f"GCS notification payload is not JSON: {e}") from e
    event = _from_resource(action, resource, attributes)
    if action is Action.IGNORE:
        return _ignored(event, f"notification type {event_type or '(none)'} is not indexed")
    return event


def _ignored(event: ObjectEvent, reason: str) -> ObjectEvent:
    return ObjectEvent(Action.IGNORE, event.bucket, event.name, event.generation, reason=reason)


def decode_event(event_type: str, data: Any) -> ObjectEvent:
    """The object event in a CloudEvent's type and data; ContractError if malformed."""
    if not isinstance(data, Mapping):
        raise ContractError(f"{event_type} event data is not a JSON object")
    if event_type == PUBSUB_PUBLISHED:
        return _from_pubsub(data)
    if event_type in _EVENTARC_ACTIONS:
        return _from_resource(_EVENTARC_ACTIONS[event_type], data, {})
    raise ContractError(f"unsupported CloudEvent type {event_type!r}")
