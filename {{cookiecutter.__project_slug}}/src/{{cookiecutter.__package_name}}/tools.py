"""Example tools the agent may call. Replace them with your own: any `@tool` function works,
but for one that interrupts the turn to ask a person (the API has no way to carry the answer)."""

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from strands import tool


@tool
def current_time(timezone: str = "UTC") -> str:
    """Return the current date and time in ISO 8601 format.

    Args:
        timezone: An IANA time zone name, such as "Europe/Paris".
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"Unknown time zone {timezone!r}: use an IANA name such as 'Europe/Paris'."
    return datetime.now(zone).isoformat(timespec="seconds")


@tool
def word_count(text: str) -> int:
    """Count the words in a text.

    Args:
        text: The text to count the words of.
    """
    return len(text.split())


EXAMPLE_TOOLS = [current_time, word_count]
