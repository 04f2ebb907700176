"""Turns: one prompt and the agent's answer to it, run on the event loop, saved once at the end.

A turn is admitted (MAX_CONCURRENT_TURNS per process), takes its session's lease and reads it
(waiting up to SESSION_WAIT_TIMEOUT while another turn holds it), then runs its agent as a task
against that unit of work, in memory: waiting for its model, it holds no thread and no database
connection. A turn that has started runs to its end even if its client goes away, and is stored
whole; a turn that fails, or whose lease was lost, stores nothing.

Each turn is a span of its request's trace (tracing.py), counted in the metrics (metrics.py), and
its log lines carry its session and principal (logs.py).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from pydantic import BaseModel, Field
from strands import Agent
from strands.agent import AgentResult
from strands.hooks import AfterModelCallEvent, HookProvider, HookRegistry
from strands.models import Model
from strands.types.content import Message
from strands.types.exceptions import MaxTokensReachedException
from strands.types.tools import ToolResultContent

from . import logs
from .agent import AGENT_ID, build_agent
from .config import Settings
from .database import DATABASE_OUTAGES, replace_unstorable
from .metrics import Metrics
from .principal_limits import PrincipalLimits, too_many_sessions
from .session_store import (
    LeaseLostError,
    LeaseRevokedError,
    SaveOutcomeUnknownError,
    SessionBusyError,
    TurnKey,
    TurnStore,
    UnitOfWork,
)

logger = logging.getLogger(__name__)
# OpenTelemetry's no-op tracer unless tracing is on (tracing.py).
tracer = trace.get_tracer(__name__)


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
    content: list[ToolResultContent]  # what the tool returned: text, JSON, images, documents


@dataclass(frozen=True)
class ModelRetry:
    """The model's call failed (throttled) and is made again after `delay` seconds: the text it
    streamed since the last tool result is withdrawn, and the new call streams its own."""

    delay: float


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class TurnResult(BaseModel):
    """A turn's answer: what /process returns, and the last event of /process-streaming."""

    session_id: str
    response: str = Field(description="The text of the agent's final message.")
    stop_reason: str = Field(examples=["end_turn"])
    usage: Usage


TurnEvent = TextDelta | ToolUse | ToolResult | ModelRetry | TurnResult


class OverloadedError(Exception):
    """The process holds as many turns as it may (MAX_CONCURRENT_TURNS)."""


class ClientGoneError(Exception):
    """The client left while its turn waited to start; the turn did not run."""


class TurnTimeoutError(Exception):
    """The turn took longer than TURN_TIMEOUT."""


class TurnCancelledError(Exception):
    """The turn was cancelled (POST /sessions/{id}/cancel); nothing of it was stored."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"The turn of session {session_id!r} was cancelled; nothing of it was stored."
        )


class InterruptNotSupportedError(Exception):
    """A tool or hook interrupted the turn to ask a person (Strands' interrupts): the API carries
    no answer back to it, so the turn fails and nothing of it is stored. Stored, it would leave
    a tool call without its result, and the SDK would refuse every later prompt of the session."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(
            f"The turn was interrupted for an answer ({', '.join(names)}), which this service "
            "does not support; nothing of it was stored."
        )


class ModelError(Exception):
    """The model failed: `error` is what its provider raised. Its message, the provider's, is
    logged; the client gets the error's type only (api/errors.py)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(f"the model raised {type(error).__name__}: {error}")
        self.error = error


def message_text(message: Message) -> str:
    """The plain text of a message: its text blocks, joined."""
    return "".join(block["text"] for block in message["content"] if "text" in block)


class ModelFailures(HookProvider):
    """Records what the model raised, to tell a model's failure from the service's own."""

    def __init__(self) -> None:
        self.raised: list[BaseException] = []

    def register_hooks(self, registry: HookRegistry, **kwargs: Any) -> None:
        registry.add_callback(AfterModelCallEvent, self._record)

    def _record(self, event: AfterModelCallEvent) -> None:
        if event.exception is not None:
            self.raised.append(event.exception)

    def cause_of(self, error: BaseException) -> BaseException | None:
        """The model's exception that `error` is, or was raised from; None if none.

        Only explicit causes count (`raise ... from`, as the SDK wraps the model's errors): an
        error raised while a model error was being handled is a failure of its own.
        """
        seen: BaseException | None = error
        while seen is not None:
            if any(seen is raised for raised in self.raised):
                return seen
            seen = seen.__cause__
        return None


class Turn:
    """A turn in progress: its events, and then its result or its error, arrive in a queue."""

    def __init__(self, work: UnitOfWork, span: trace.Span, asked_at: float) -> None:
        self.work = work
        self.span = span
        self.asked_at = asked_at  # time.monotonic() when the turn was asked for
        self.streamed_text = False
        self.task: asyncio.Task[None] | None = None
        self.ending = False  # saving or giving up: its lease is no longer the lease keeper's
        self.lease_lost = False
        self.cancelled = False
        self.started = False  # its task has taken its first step
        self.ended = asyncio.Event()  # it has given its session back
        self._queue: asyncio.Queue[TurnEvent | BaseException] = asyncio.Queue()

    @property
    def session_id(self) -> str:
        return self.work.session_id

    @property
    def key(self) -> tuple[str, str]:
        """Its session's key: the principal's, then the session id (each principal names its
        own sessions)."""
        return self.work.principal, self.work.session_id

    def emit(self, item: TurnEvent | BaseException) -> None:
        self._queue.put_nowait(item)

    def cancel(self) -> None:
        """Stop the turn where it is, or as it starts: its task raises TurnCancelledError."""
        self.cancelled = True
        self._stop()

    def lose_lease(self) -> None:
        """Stop the turn where it is, or as it starts: its task raises LeaseLostError."""
        self.lease_lost = True
        self._stop()

    def _stop(self) -> None:
        # A task cancelled before its first step would never run, nor so clean up after itself:
        # one that has not started checks, as it starts, whether it was stopped.
        if self.started and self.task is not None:
            self.task.cancel()

    async def events(self) -> AsyncIterator[TurnEvent]:
        """Text deltas, tool uses and tool results as they happen; the TurnResult last. Raises
        what stopped the turn."""
        while True:
            item = await self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, TurnResult):
                return

    async def result(self) -> TurnResult:
        async for event in self.events():
            if isinstance(event, TurnResult):
                return event
        raise RuntimeError("the turn ended without a result")  # pragma: no cover


class TurnRunner:
    """Admits turns, runs them, keeps their leases, and waits for them when the process stops."""

    def __init__(
        self,
        settings: Settings,
        store: TurnStore,
        model: Model,
        metrics: Metrics | None = None,
        error_code: Callable[[BaseException], str] = lambda error: type(error).__name__,
    ) -> None:
        """`error_code` names a turn's failure in metrics and traces: the API passes the code
        its client gets."""
        self._settings = settings
        self._store = store
        self._model = model
        self._metrics = metrics or Metrics()
        self._error_code = error_code
        self._admitted = 0
        self._metrics.turns_in_flight.set_function(lambda: self.turns_in_flight)
        self._limits = PrincipalLimits(settings.max_turns_per_principal, settings.turns_per_minute)
        self._running: dict[tuple[str, str], Turn] = {}  # by key
        self._stopping = False
        self._lease_keeper: asyncio.Task[None] | None = None
        # Requests (turns, and API keys read) use all but one of the pool's connections at once:
        # lease renewals must never wait behind a burst of them, or the leases would expire (nor
        # /ready, or a busy replica would look broken: api/health.py).
        self.connections = asyncio.Semaphore(settings.db_pool_size - 1)

    @property
    def turns_in_flight(self) -> int:
        """Turns admitted and not yet ended: running, or waiting for their session."""
        return self._admitted

    async def start(
        self,
        session_id: str,
        principal: str,
        prompt: str,
        client_gone: Callable[[], Awaitable[bool]],
        turn_key: str | None = None,
    ) -> Turn:
        """Admit `principal`'s turn and start it once it holds its session; raise what stopped
        it (PrincipalLimitError past the principal's limits; TurnAlreadyStoredError if a turn
        with `turn_key`, its client's key, is stored in the session)."""
        # For every log line of the request from now on, and of the turn's task.
        logs.session_id.set(session_id)
        logs.principal.set(principal)
        if self._settings.log_prompts:
            logger.info("prompt: %s", prompt)
        asked_at = time.monotonic()
        span = tracer.start_span(
            "turn", attributes={"session.id": session_id, "enduser.id": principal}
        )
        try:
            # The turn's task, created inside, runs in this span: one trace with the request's.
            with trace.use_span(span, end_on_exit=False):
                key = TurnKey.of(turn_key, prompt) if turn_key is not None else None
                turn = await self._start(
                    session_id, principal, prompt, client_gone, key, span, asked_at
                )
        except BaseException as error:
            if isinstance(error, DATABASE_OUTAGES):  # as a turn that could not be stored is
                logger.warning("turn not started: database unavailable: %s", error)
            code = self._error_code(error)
            self._metrics.turns_refused.labels(code=code).inc()
            span.set_attribute("turn.outcome", code)
            span.set_status(trace.StatusCode.ERROR, code)
            span.end()
            raise
        self._metrics.turns_started.inc()
        return turn

    async def _start(
        self,
        session_id: str,
        principal: str,
        prompt: str,
        client_gone: Callable[[], Awaitable[bool]],
        turn_key: TurnKey | None,
        span: trace.Span,
        asked_at: float,
    ) -> Turn:
        if self._stopping or self._admitted >= self._settings.max_concurrent_turns:
            raise OverloadedError()
        self._limits.admit(principal)
        self._admitted += 1
        try:
            began = time.monotonic()
            try:
                work = await self._begin(session_id, principal, client_gone, turn_key)
            finally:  # a wait that ended in session_busy too: the slowest
                self._metrics.session_wait.observe(time.monotonic() - began)
            # Running from here on, with no await between: no other turn of this process takes
            # the session, and a cancel finds the turn here, not in the database.
            turn = Turn(work, span, asked_at)
            self._running[turn.key] = turn
            try:
                if await client_gone():
                    raise ClientGoneError()
                failures = ModelFailures()
                agent = build_agent(self._settings, work, session_id, self._model, hooks=[failures])
            except BaseException:
                try:
                    await self._give_up(work)
                finally:  # the database down too: the turn has ended, its lease will expire
                    del self._running[turn.key]
                    turn.ended.set()
                raise
        except BaseException:
            self._admitted -= 1
            self._limits.release(principal, started=False)
            raise
        turn.task = asyncio.create_task(self._run(turn, agent, prompt, failures))
        return turn

    async def _begin(
        self,
        session_id: str,
        principal: str,
        client_gone: Callable[[], Awaitable[bool]],
        turn_key: TurnKey | None,
    ) -> UnitOfWork:
        """Take the session's lease and read it, retrying while another turn holds it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.session_wait_timeout
        pause = 0.02
        while True:
            # A session this process is running needs no database round trip to be found busy.
            if (principal, session_id) not in self._running:
                try:
                    async with self.connections:
                        work = await self._store.begin(session_id, AGENT_ID, principal, turn_key)
                        if (principal, session_id) in self._running:
                            # Taken meanwhile by a turn of this process, whose lease a Stop sent
                            # to another replica has revoked: the session is that turn's until
                            # it has stopped.
                            await self._store.give_up(work)
                            raise SessionBusyError(session_id)
                        await self._within_session_limit(work)
                        return work
                except SessionBusyError:
                    pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise SessionBusyError(session_id, self._settings.session_wait_timeout)
            if await client_gone():
                raise ClientGoneError()
            await asyncio.sleep(min(pause, remaining))  # and a last try at the deadline
            pause = min(pause * 2, 0.25)

    async def _within_session_limit(self, work: UnitOfWork) -> None:
        """A turn that created its session must leave its principal within
        MAX_SESSIONS_PER_PRINCIPAL; else the session is deleted and the turn refused."""
        limit = self._settings.max_sessions_per_principal
        if work.new_session and work.principal_sessions > limit:
            await self._store.discard(work)
            raise too_many_sessions(limit)

    async def _run(self, turn: Turn, agent: Agent, prompt: str, failures: ModelFailures) -> None:
        turn.started = True
        try:
            try:
                if turn.cancelled:  # before the task began
                    raise TurnCancelledError(turn.session_id)
                if turn.lease_lost:
                    raise LeaseLostError(turn.session_id)
                async with asyncio.timeout(self._settings.turn_timeout) as deadline:
                    result = await self._relay(agent, turn, prompt)
                async with self.connections:
                    turn.ending = True
                    await self._store.save(turn.work)
            except asyncio.CancelledError:
                if turn.cancelled:
                    raise TurnCancelledError(turn.session_id) from None
                if not turn.lease_lost:
                    raise
                raise LeaseLostError(turn.session_id) from None
            except Exception as error:
                if isinstance(error, LeaseRevokedError):  # cancelled from another replica
                    raise TurnCancelledError(turn.session_id) from None
                if isinstance(error, TimeoutError) and deadline.expired():
                    timeout = self._settings.turn_timeout
                    message = f"The turn took longer than {timeout:g} s (TURN_TIMEOUT)."
                    raise TurnTimeoutError(message) from None
                if (cause := failures.cause_of(error)) is not None:
                    raise ModelError(cause) from error
                raise
        except BaseException as error:
            turn.ending = True
            # Whatever stopped the turn (a Stop, TURN_TIMEOUT, a lost lease) stops its model:
            # a provider that streams on a thread of its own (Bedrock) reads on, and generates
            # the rest of the answer, after the turn's task is cancelled, unless told. Told now,
            # as the SDK clears its signal while the task unwinds.
            agent.cancel()
            self._log_failure(error)
            code = self._error_code(error)
            self._metrics.turns_failed.labels(code=code).inc()
            turn.span.set_attribute("turn.outcome", code)
            turn.span.set_status(trace.StatusCode.ERROR, code)
            # Even with its lease lost: a session the turn created and no other turn took since
            # is deleted (give_up's statements change nothing of a lease that is not the turn's).
            try:
                await self._give_up(turn.work)
            except Exception:  # the lease expires by itself; the client still gets its answer
                logger.exception("could not give up the lease of a failed turn")
            finally:
                turn.emit(error)
            if not isinstance(error, Exception):
                raise
        else:
            turn.emit(result)
            try:
                self._finished(turn, result)
            except Exception:  # the turn is stored and answered: only its bookkeeping failed
                logger.exception("could not record a finished turn")
        finally:
            turn.span.end()
            self._admitted -= 1
            self._limits.release(turn.work.principal)
            del self._running[turn.key]
            turn.ended.set()
            # The tokens of every turn, a failed one's too: they were spent all the same.
            usage = agent.event_loop_metrics.accumulated_usage
            self._metrics.input_tokens.inc(usage["inputTokens"])
            self._metrics.output_tokens.inc(usage["outputTokens"])

    def _finished(self, turn: Turn, result: TurnResult) -> None:
        usage = result.usage
        logger.info(
            "turn finished: %s, %d tokens in, %d out",
            result.stop_reason,
            usage.input_tokens,
            usage.output_tokens,
        )
        self._metrics.turns_finished.inc()
        self._metrics.turn_duration.observe(time.monotonic() - turn.asked_at)
        turn.span.set_attribute("turn.outcome", "ok")

    @staticmethod
    def _log_failure(error: BaseException) -> None:
        # The session's id is in the line's context (logs.py), quoted where text logs need it.
        if isinstance(error, TurnCancelledError):
            logger.info("turn cancelled")
        elif isinstance(error, ModelError | TurnTimeoutError):
            logger.warning("turn failed: %s", error)
        elif isinstance(error, InterruptNotSupportedError):  # the code's, but the traceback is ours
            logger.error("turn failed: %s", error)
        elif isinstance(error, LeaseLostError):
            logger.warning("turn not stored: %s", error)
        elif isinstance(error, SaveOutcomeUnknownError):
            logger.warning("turn perhaps stored: %s", error.__cause__)
        elif isinstance(error, DATABASE_OUTAGES):  # an outage, not a bug: one line, as requests
            logger.warning("turn not stored: database unavailable: %s", error)
        else:
            logger.error("turn failed", exc_info=error)

    async def _relay(self, agent: Agent, turn: Turn, prompt: str) -> TurnResult:
        """Send the turn's events on as they come; return its result."""
        result: AgentResult | None = None
        cut_short = False  # the model's last message stopped at MODEL_MAX_TOKENS
        try:
            async for event in agent.stream_async(prompt):
                if "result" in event:
                    result = event["result"]
                    continue
                if "messageStop" in event.get("event", {}):
                    cut_short = event["event"]["messageStop"].get("stopReason") == "max_tokens"
                # The SDK runs no tool call of a message cut short: it is not announced.
                if not (cut_short and "message" in event):
                    self._pass_on(turn, event)
        except MaxTokensReachedException:
            # The model stopped at MODEL_MAX_TOKENS. The SDK has added its answer, as far as it
            # went, to the conversation (a tool call in it replaced by a note that it was cut),
            # which stays valid: the turn ends with that answer, as any turn ends, and is stored.
            message, stop_reason = agent.messages[-1], "max_tokens"
            usage = agent.event_loop_metrics.accumulated_usage
        else:
            assert result is not None  # the SDK's last event
            if result.stop_reason == "interrupt":
                names = [interrupt.name for interrupt in result.interrupts or ()]
                raise InterruptNotSupportedError(names)
            message, stop_reason = result.message, str(result.stop_reason)
            usage = result.metrics.accumulated_usage
        return TurnResult(
            session_id=turn.session_id,
            response=replace_unstorable(message_text(message)),  # as the turn is stored
            stop_reason=stop_reason,
            usage=Usage(
                input_tokens=usage["inputTokens"],
                output_tokens=usage["outputTokens"],
                total_tokens=usage["totalTokens"],
            ),
        )

    def _pass_on(self, turn: Turn, event: dict[str, Any]) -> None:
        """Emit the turn's text, tool uses, tool results and the model's retries from the SDK's
        stream events."""
        if "data" in event:
            if not turn.streamed_text:
                turn.streamed_text = True
                self._metrics.first_text.observe(time.monotonic() - turn.asked_at)
            turn.emit(TextDelta(event["data"]))
        elif "message" in event:
            for block in event["message"]["content"]:
                if "toolUse" in block:
                    use = block["toolUse"]
                    turn.emit(ToolUse(use["toolUseId"], use["name"], use["input"]))
                elif "toolResult" in block:
                    done = block["toolResult"]
                    turn.emit(ToolResult(done["toolUseId"], done["status"], done["content"]))
        elif "event_loop_throttled_delay" in event:  # ModelRetryStrategy calls the model again
            turn.emit(ModelRetry(event["event_loop_throttled_delay"]))

    async def cancel(self, principal: str, session_id: str) -> bool:
        """Stop the principal's running turn of the session, storing nothing of it; whether one
        was running. The session is free when this returns: on this replica the turn has ended;
        on another, it stops once its lease keeper finds its lease revoked (within a third of
        SESSION_LEASE_SECONDS), and cannot save meanwhile."""
        turn = self._running.get((principal, session_id))
        if turn is None:
            async with self.connections:
                return await self._store.revoke(principal, session_id)
        if turn.cancelled:  # a second Stop, or a client's retry, while the first ends it
            await turn.ended.wait()
            return True
        if turn.ending:  # being saved: too late to stop
            return False
        turn.cancel()
        await turn.ended.wait()
        return True

    async def _give_up(self, work: UnitOfWork) -> None:
        async with self.connections:
            await self._store.give_up(work)

    # The process's life

    def start_keeping_leases(self) -> None:
        self._lease_keeper = asyncio.create_task(self._keep_leases())

    async def _keep_leases(self) -> None:
        """Renew the leases of the running turns every third of a lease's length; stop the turns
        whose lease was lost, or revoked (cancelled from another replica)."""
        while True:
            await asyncio.sleep(self._settings.session_lease_seconds / 3)
            running = [turn for turn in self._running.values() if not turn.ending]
            if not running:
                continue
            try:
                lost = await self._store.renew([turn.work for turn in running])
            except Exception as error:  # the database is unreachable: try again next time
                logger.warning("could not renew %d session leases: %s", len(running), error)
                continue
            for turn in running:
                error = lost.get(turn.work.lease_id)
                if error is None or turn.ending:
                    continue
                if isinstance(error, LeaseRevokedError):
                    turn.cancel()
                    continue
                logger.warning(  # from no request: the ids quoted, as no context quotes them
                    "lost the lease of session %r of %r: stopping its turn",
                    turn.session_id,
                    turn.work.principal,
                )
                turn.lose_lease()

    async def shutdown(self) -> None:
        """Admit no more turns; let the running ones finish and be stored."""
        self._stopping = True
        while self._admitted:  # turns still waiting for their session have no task yet
            tasks = [turn.task for turn in self._running.values() if turn.task is not None]
            if tasks:
                await asyncio.wait(tasks)
            else:
                await asyncio.sleep(0.05)
        if self._lease_keeper is not None:
            self._lease_keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lease_keeper
