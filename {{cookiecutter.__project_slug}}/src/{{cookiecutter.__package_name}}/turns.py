"""Running agent turns off the event loop, and the events a turn produces.

The Strands SDK calls the session repository synchronously on the thread that runs the agent.
Each turn therefore runs on a worker thread of its own, with an event loop of its own, and sends
its events back to the request's event loop: database I/O never stalls the server, and turns of
different sessions run in parallel.

Turns of one session never overlap: each holds its session's lock (session_store/locks.py) from
restore to last write, across every replica. A turn that has started runs to its end, even if the
client goes away: it is stored whole, and the client can read it from the session's history. A
turn that fails (the model raised, timed out, or the database went away) is rolled back: the
session is left as it was before it, and the next turn starts clean.
"""

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from strands import Agent
from strands.agent import AgentResult
from strands.models import Model
from strands.types.content import Message

from .agent import AGENT_ID, build_agent
from .config import Settings
from .session_store import SqlSessionRepository
from .session_store.locks import SessionBusyError, SessionLocks

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolUse:
    id: str
    name: str
    input: Any


@dataclass(frozen=True)
class ToolResult:
    id: str
    status: str


@dataclass(frozen=True)
class TurnResult:
    session_id: str
    response: str
    stop_reason: str
    usage: Usage


TurnEvent = TextDelta | ToolUse | ToolResult | TurnResult


class TurnTimeoutError(Exception):
    """The turn took longer than TURN_TIMEOUT."""


@dataclass(frozen=True)
class _Started:
    """The worker has restored the session and is about to call the model."""


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def message_text(message: Message) -> str:
    """The plain text of a message: its text blocks, joined."""
    return "".join(block["text"] for block in message["content"] if "text" in block)


class Turn:
    """A turn running on a worker thread; its events arrive through a queue on the caller's loop."""

    def __init__(self, session_id: str, loop: asyncio.AbstractEventLoop) -> None:
        self.session_id = session_id
        self._loop = loop
        self._queue: asyncio.Queue[TurnEvent | _Started | _Failed] = asyncio.Queue()

    def emit(self, item: "TurnEvent | _Started | _Failed") -> None:
        """Called from the worker thread."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def _next(self) -> TurnEvent | _Started:
        item = await self._queue.get()
        if isinstance(item, _Failed):
            raise item.error
        return item

    async def started(self) -> None:
        """Wait until the session is restored and the model is called; raise what prevented it."""
        await self._next()

    async def events(self) -> AsyncIterator[TurnEvent]:
        """Text deltas, tool uses and tool results as they happen; the TurnResult last."""
        while True:
            item = await self._next()
            if isinstance(item, _Started):
                continue
            yield item
            if isinstance(item, TurnResult):
                return

    async def result(self) -> TurnResult:
        async for event in self.events():
            if isinstance(event, TurnResult):
                return event
        raise RuntimeError("the turn ended without a result")  # pragma: no cover


def _yield_the_cpu_to_the_event_loop() -> None:
    """Lower the scheduling priority of the calling worker thread (nice 10).

    Turn threads share the GIL and the cores with the event loop's thread. While turns compute
    (tools, a fast model), the loop, and every request it serves, would queue behind them; a
    niced turn thread lets the scheduler run the loop first. On Linux, nice is per thread
    (setpriority(2), "BUGS"); elsewhere this would renice the process, so it is left alone.
    """
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


@contextmanager
def locked_turn(
    locks: SessionLocks, repository: SqlSessionRepository, session_id: str
) -> Iterator[None]:
    """How every turn runs: holding its session's lock, in the repository's turn scope on the
    connection that holds it. Restoring in it also discards what an earlier turn left
    unfinished (a crash, an outage); its writes are stored when it ends."""
    with locks.hold(session_id) as connection, repository.turn(session_id, AGENT_ID, connection):
        yield


class TurnRunner:
    """Runs turns on a bounded pool of worker threads, one agent per turn."""

    def __init__(
        self,
        settings: Settings,
        repository: SqlSessionRepository,
        locks: SessionLocks,
        model_factory: Callable[[], Model],
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._locks = locks
        self._model_factory = model_factory
        self._executor = ThreadPoolExecutor(
            max_workers=settings.max_concurrent_turns,
            thread_name_prefix="turn",
            initializer=_yield_the_cpu_to_the_event_loop,
        )

    async def start(self, session_id: str, prompt: str) -> Turn:
        """Start a turn; return once its session is restored, or raise what stopped it."""
        turn = Turn(session_id, asyncio.get_running_loop())
        asyncio.get_running_loop().run_in_executor(self._executor, self._run, turn, prompt)
        await turn.started()
        return turn

    def shutdown(self) -> None:
        """Let running turns finish (they are stored whole), then stop the workers."""
        self._executor.shutdown(wait=True)

    def _run(self, turn: Turn, prompt: str) -> None:
        session_id = turn.session_id
        try:
            with locked_turn(self._locks, self._repository, session_id):
                agent = build_agent(
                    self._settings, self._repository, session_id, self._model_factory()
                )
                turn.emit(_Started())
                try:
                    result = asyncio.run(self._drive(agent, turn, prompt))
                except BaseException:
                    self._roll_back(session_id)
                    raise
            turn.emit(result)
        except SessionBusyError as error:
            turn.emit(_Failed(error))
        except BaseException as error:  # delivered to the request, which reports it
            logger.exception("turn failed: session_id=%s", session_id)
            turn.emit(_Failed(error))

    def _roll_back(self, session_id: str) -> None:
        try:
            removed = self._repository.discard_unfinished_turn(session_id, AGENT_ID)
            logger.info("rolled back a failed turn: session_id=%s messages=%d", session_id, removed)
        except Exception:
            # The next turn of the session discards it before it starts.
            logger.exception("could not roll back a failed turn: session_id=%s", session_id)

    async def _drive(self, agent: Agent, turn: Turn, prompt: str) -> TurnResult:
        try:
            async with asyncio.timeout(self._settings.turn_timeout):
                result = await self._relay(agent, turn, prompt)
        except TimeoutError:
            raise TurnTimeoutError(
                f"The turn took longer than {self._settings.turn_timeout:g} s (TURN_TIMEOUT)."
            ) from None
        usage = result.metrics.accumulated_usage
        return TurnResult(
            session_id=turn.session_id,
            response=message_text(result.message),
            stop_reason=str(result.stop_reason),
            usage=Usage(usage["inputTokens"], usage["outputTokens"], usage["totalTokens"]),
        )

    @staticmethod
    async def _relay(agent: Agent, turn: Turn, prompt: str) -> AgentResult:
        """Send the turn's events on as they come; return the SDK's result."""
        result = None
        async for event in agent.stream_async(prompt):
            if "data" in event:
                turn.emit(TextDelta(event["data"]))
            elif "message" in event:
                for block in event["message"]["content"]:
                    if "toolUse" in block:
                        use = block["toolUse"]
                        turn.emit(ToolUse(use["toolUseId"], use["name"], use["input"]))
                    elif "toolResult" in block:
                        done = block["toolResult"]
                        turn.emit(ToolResult(done["toolUseId"], done["status"]))
            elif "result" in event:
                result = event["result"]
        return result
