"""A CloudEvent target that decodes what functions-framework hands it, for envelope tests."""

import functions_framework
from cloudevents.http.event import CloudEvent

from ragrun_chunker.events import ObjectEvent, decode_event

DECODED: list[ObjectEvent] = []


@functions_framework.cloud_event
def record(cloud_event: CloudEvent) -> None:
    DECODED.append(decode_event(cloud_event["type"], cloud_event.data))
