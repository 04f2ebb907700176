"""What one principal may take of a replica: turns at once, and turns started a minute.

Both are counted in this process's memory: with N replicas behind a balancer, a principal may
run up to N times as much in all (see "Operating" in the README). The sessions a principal may
keep are counted in the database, across replicas (turns.py).
"""

import math
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable


class PrincipalLimitError(Exception):
    """A principal is past one of its limits (`code`); it may retry after `retry_after` seconds,
    or, without one, once it has deleted sessions."""

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


def too_many_sessions(limit: int) -> PrincipalLimitError:
    message = f"You keep {limit} sessions (MAX_SESSIONS_PER_PRINCIPAL): delete some first."
    return PrincipalLimitError("too_many_sessions", message)


class PrincipalLimits:
    """Turns at once (MAX_TURNS_PER_PRINCIPAL) and turns in any 60 s (TURNS_PER_MINUTE)."""

    def __init__(
        self,
        turns_at_once: int,
        turns_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.turns_at_once = turns_at_once
        self.turns_per_minute = turns_per_minute
        self._clock = clock
        self._running: Counter[str] = Counter()
        # When each of the principal's turns of the last minute started, oldest first.
        self._started: defaultdict[str, deque[float]] = defaultdict(deque)
        self._next_sweep = clock() + 60

    def admit(self, principal: str) -> None:
        """Count a new turn of `principal`, or raise PrincipalLimitError."""
        if self._running[principal] >= self.turns_at_once:
            message = f"{self.turns_at_once} turns of yours are running (MAX_TURNS_PER_PRINCIPAL)."
            raise PrincipalLimitError("too_many_turns", message, retry_after=1)
        now = self._clock()
        if now >= self._next_sweep:
            self._forget_idle(now)
        started = self._started[principal]
        while started and started[0] <= now - 60:
            started.popleft()
        if len(started) >= self.turns_per_minute:
            message = f"You started {self.turns_per_minute} turns in a minute (TURNS_PER_MINUTE)."
            retry_after = math.ceil(started[0] + 60 - now)
            raise PrincipalLimitError("too_many_turns", message, retry_after)
        started.append(now)
        self._running[principal] += 1

    def release(self, principal: str, *, started: bool = True) -> None:
        """A turn of `principal` ended; or, not `started`, was refused before it started (its
        session busy, the database down): then it does not count against the minute either, so
        that a client retrying through an outage is not locked out when it ends. (The newest
        start is forgotten: which one does not change the count.)"""
        self._running[principal] -= 1
        if not self._running[principal]:
            del self._running[principal]
        if not started and (starts := self._started.get(principal)):
            starts.pop()
            if not starts:
                del self._started[principal]

    def _forget_idle(self, now: float) -> None:
        """Forget the principals that started no turn in the last minute: a replica that serves
        many callers for weeks must not keep an entry for every one it has seen."""
        idle = [name for name, started in self._started.items() if started[-1] <= now - 60]
        for principal in idle:
            del self._started[principal]
        self._next_sweep = now + 60

    def remembered(self) -> int:
        """How many principals are remembered: those running a turn or started one lately."""
        return len(self._started.keys() | self._running.keys())
