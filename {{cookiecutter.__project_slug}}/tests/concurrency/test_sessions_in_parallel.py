"""Turns run on the event loop, holding no thread and no database connection while their model
works: sessions proceed in parallel, and the service keeps answering."""

import threading
from concurrent.futures import ThreadPoolExecutor

from ..conftest import Api, MakeApi
from ..support.scripted_model import GatedModel


def post_turns(api: Api, sessions: list[str]) -> list[int]:
    with ThreadPoolExecutor(len(sessions)) as pool:
        futures = [
            pool.submit(api.client.post, "/process", json={"prompt": "hi", "session_id": session})
            for session in sessions
        ]
        return [future.result(timeout=60).status_code for future in futures]


def test_turns_on_two_sessions_run_at_the_same_time(make_api: MakeApi) -> None:
    # Each turn waits inside the model until the other has arrived there too: if turns ran one
    # after the other, the barrier would break and the turns would fail.
    barrier = threading.Barrier(2, timeout=20)
    api = make_api(model=GatedModel(barrier.wait))

    assert post_turns(api, ["s-1", "s-2"]) == [200, 200]


def test_turns_hold_no_database_connection_while_their_model_works(make_api: MakeApi) -> None:
    # Ten turns inside their model at once, on a pool of two connections.
    barrier = threading.Barrier(10, timeout=20)
    api = make_api(model=GatedModel(barrier.wait), db_pool_size=2)

    assert post_turns(api, [f"s-{n}" for n in range(10)]) == [200] * 10


def test_the_service_answers_while_turns_wait_for_their_model(make_api: MakeApi) -> None:
    release = threading.Event()
    model = GatedModel(lambda: release.wait(timeout=20))
    api = make_api(model=model)

    with ThreadPoolExecutor(1) as pool:
        turn = pool.submit(api.client.post, "/process", json={"prompt": "hi", "session_id": "s"})
        assert model.entered.wait(timeout=20)
        health = api.client.get("/health")
        sessions = api.client.get("/sessions")
        answered_while_waiting = not turn.done()
        release.set()
        assert turn.result(timeout=60).status_code == 200

    assert health.status_code == sessions.status_code == 200
    assert answered_while_waiting
