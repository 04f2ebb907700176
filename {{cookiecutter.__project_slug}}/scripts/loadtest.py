"""Drive many streaming conversations at once against a running service, and report how it held.

    make loadtest ARGS="--conversations 1000"
    uv run python scripts/loadtest.py http://127.0.0.1:8000 --conversations 200 --turns 2

Each conversation is a session of its own that sends its turns to /process-streaming one after
the other; all conversations start at once. The report counts the turns that ended with `done`,
the errors by status and code, the wall time, and the time from sending each turn to its first
text and to its end (p50, p99). A turn's clock starts when aiohttp starts writing its request, as
load tools count a request's duration (k6's http_req_duration): opening a thousand connections
keeps this one process busy for a while, and that time is the load test's, not the service's. With
MODEL_PROVIDER=echo and ECHO_WORD_DELAY set, the service behaves like one on a remote model.
API_KEY, when set, is sent as the bearer token.

The client is aiohttp: its C parser lets one process keep a thousand streams busy.
"""

import argparse
import asyncio
import json
import math
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

# Eighteen words: the echo model answers with twenty ("You said: ...").
PROMPT = "please tell me again in your own words what we agreed on for the next release of it"


@dataclass
class Report:
    conversations: int
    turns: int
    completed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_text: list[float] = field(default_factory=list)
    turn_seconds: list[float] = field(default_factory=list)
    wall: float = 0.0

    def summary(self) -> dict[str, object]:
        return {
            "conversations": self.conversations,
            "turns": self.conversations * self.turns,
            "completed": self.completed,
            "errors": dict(self.errors),
            "wall_s": round(self.wall, 3),
            "first_text_p50_s": percentile(self.first_text, 0.50),
            "first_text_p99_s": percentile(self.first_text, 0.99),
            "turn_p50_s": percentile(self.turn_seconds, 0.50),
            "turn_p99_s": percentile(self.turn_seconds, 0.99),
        }


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile: the smallest value that `fraction` of them do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)], 3)


async def error_code(response: aiohttp.ClientResponse) -> str:
    """The service's error code; a proxy's error page, or uvicorn's plain 503 beyond its
    connection limit, has none."""
    try:
        return (await response.json(content_type=None))["error"]["code"]
    except (ValueError, TypeError, KeyError):
        return "(not the service's error)"


def error_event_code(data: bytes) -> str:
    try:
        return json.loads(data)["code"]
    except (ValueError, TypeError, KeyError):
        return "(not the service's error)"


async def turn(client: aiohttp.ClientSession, session_id: str, prompt: str, report: Report) -> None:
    sent: dict[str, float] = {}  # filled in by note_sent
    first_text = event = None
    try:
        body = {"prompt": prompt, "session_id": session_id}
        request = client.post("/process-streaming", json=body, trace_request_ctx=sent)
        async with request as response:
            start = sent["at"]
            if response.status != 200:
                report.errors[f"{response.status} {await error_code(response)}"] += 1
                return
            async for line in response.content:
                if line.startswith(b"event: "):
                    event = line[7:].strip().decode()
                    if event == "text" and first_text is None:
                        first_text = time.perf_counter() - start
                elif line.startswith(b"data: ") and event == "error":
                    report.errors[f"error event {error_event_code(line[6:])}"] += 1
                    return
    # HttpProcessingError: a line longer than aiohttp reads at once, or a malformed response.
    except (aiohttp.ClientError, HttpProcessingError, TimeoutError) as error:
        report.errors[type(error).__name__] += 1
        return
    if event != "done":
        report.errors["stream ended without done"] += 1
        return
    report.completed += 1
    report.turn_seconds.append(time.perf_counter() - start)
    if first_text is not None:
        report.first_text.append(first_text)


async def note_sent(
    _client: aiohttp.ClientSession,
    context: SimpleNamespace,
    _params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    context.trace_request_ctx["at"] = time.perf_counter()


async def conversation(
    client: aiohttp.ClientSession, turns: int, prompt: str, report: Report
) -> None:
    session_id = f"load-{uuid.uuid4()}"
    for _ in range(turns):
        await turn(client, session_id, prompt, report)


async def run(url: str, conversations: int, turns: int, prompt: str, seconds: float) -> Report:
    headers = {"Authorization": f"Bearer {key}"} if (key := os.environ.get("API_KEY")) else {}
    report = Report(conversations, turns)
    tracing = aiohttp.TraceConfig()
    tracing.on_request_headers_sent.append(note_sent)
    async with aiohttp.ClientSession(
        base_url=url,
        trace_configs=[tracing],
        headers=headers,
        connector=aiohttp.TCPConnector(limit=conversations),
        timeout=aiohttp.ClientTimeout(total=seconds),
    ) as client:
        start = time.perf_counter()
        await asyncio.gather(
            *(conversation(client, turns, prompt, report) for _ in range(conversations))
        )
        report.wall = time.perf_counter() - start
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8000")
    parser.add_argument("--conversations", type=int, default=100, help="sessions at once")
    parser.add_argument("--turns", type=int, default=1, help="turns per conversation")
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per request")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()

    report = asyncio.run(run(args.url, args.conversations, args.turns, args.prompt, args.timeout))
    summary = report.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        for name, value in summary.items():
            print(f"{name:>18}: {value}")
    if report.completed < summary["turns"]:
        sys.exit(1)  # the report says what failed


if __name__ == "__main__":
    main()
