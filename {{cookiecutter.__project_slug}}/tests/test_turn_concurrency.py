"""Turns run on worker threads: the event loop stays free, and sessions proceed in parallel."""

import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from .conftest import Api
from .scripted_model import ScriptedModel


class GatedModel(ScriptedModel):
    """Replies only once `gate` lets it through; the wait blocks its thread, as slow I/O would."""

    def __init__(self, gate: Callable[[], object]) -> None:
        super().__init__()
        self.gate = gate
        self.entered = threading.Event()

    async def stream(self, messages: Any, *args: Any, **kwargs: Any) -> AsyncIterator[dict]:
        self.entered.set()
        self.gate()
        self.replies.append("done")
        async for event in super().stream(messages, *args, **kwargs):
            yield event


def test_turns_on_two_sessions_run_at_the_same_time(make_api: Callable[..., Api]) -> None:
    # Each turn waits inside the model until the other has arrived there too: if turns ran one
    # after the other, the barrier would break and the turns would fail.
    barrier = threading.Barrier(2, timeout=20)
    api = make_api(model=GatedModel(barrier.wait))

    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(api.client.post, "/process", json={"prompt": "hi", "session_id": f"s-{n}"})
            for n in range(2)
        ]
        statuses = [future.result(timeout=60).status_code for future in futures]

    assert statuses == [200, 200]


def test_the_event_loop_answers_while_a_turn_blocks(make_api: Callable[..., Api]) -> None:
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=20))
    api = make_api(model=model)

    with ThreadPoolExecutor(1) as pool:
        turn = pool.submit(api.client.post, "/process", json={"prompt": "hi", "session_id": "s"})
        assert model.entered.wait(timeout=20)
        health = api.client.get("/health")
        sessions = api.client.get("/sessions")
        answered_while_blocked = not release.is_set()
        release.set()
        assert turn.result(timeout=60).status_code == 200

    assert health.status_code == sessions.status_code == 200
    assert answered_while_blocked


@pytest.mark.skipif(sys.platform != "linux", reason="threads have their own nice value on Linux")
def test_turns_run_at_a_lower_cpu_priority_than_the_event_loop(
    make_api: Callable[..., Api],
) -> None:
    def own_nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    seen_by_the_turn: list[int] = []
    api = make_api(model=GatedModel(lambda: seen_by_the_turn.append(own_nice())))

    assert api.client.post("/process", json={"prompt": "hi"}).status_code == 200

    assert seen_by_the_turn == [min(own_nice() + 10, 19)]
