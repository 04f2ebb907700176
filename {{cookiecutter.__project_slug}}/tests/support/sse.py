"""Reading a text/event-stream body as a client would."""

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    event: str
    data: Any


def parse_events(body: str) -> list[Event]:
    """Split an SSE body into events, decoding each `data` as JSON; comments are skipped."""
    events = []
    for block in body.replace("\r\n", "\n").strip().split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value.removeprefix(" "))
        if "data" in fields:
            data = json.loads("\n".join(fields["data"]))
            events.append(Event(fields.get("event", ["message"])[0], data))
    return events


def streamed_text(events: list[Event]) -> str:
    return "".join(event.data["text"] for event in events if event.event == "text")
