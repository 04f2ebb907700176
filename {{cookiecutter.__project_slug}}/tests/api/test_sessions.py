"""The /sessions routes: create, list, inspect, page through the history of, delete."""

import uuid
from collections.abc import Callable

from ..conftest import Api
from ..support.http import assert_error

MakeApi = Callable[..., Api]


def test_create_list_inspect_and_delete_sessions(make_api: MakeApi) -> None:
    api = make_api(["Hi."])
    created = api.client.post("/sessions", json={"session_id": "support-1"})
    anonymous = api.client.post("/sessions")
    api.client.post("/process", json={"prompt": "Hello", "session_id": "support-1"})

    assert created.status_code == anonymous.status_code == 201
    assert uuid.UUID(anonymous.json()["session_id"])
    detail = api.client.get("/sessions/support-1").json()
    assert detail["message_count"] == 2
    assert [(a["agent_id"], a["message_count"]) for a in detail["agents"]] == [("default", 2)]
    newest = api.client.get("/sessions/support-1/history").json()["messages"][-1]
    assert detail["updated_at"] >= detail["agents"][0]["updated_at"]
    assert detail["updated_at"] >= newest["created_at"], "a turn's save touches its session"
    again = api.client.post("/sessions", json={"session_id": "support-1"})
    assert_error(again, 409, "already_exists")

    assert api.client.delete("/sessions/support-1").status_code == 204
    assert_error(api.client.get("/sessions/support-1"), 404, "session_not_found")
    assert_error(api.client.get("/sessions/support-1/history"), 404, "session_not_found")
    assert_error(api.client.delete("/sessions/support-1"), 404, "session_not_found")
    assert api.repository.message_counts("support-1") == {}


def test_sessions_are_paged_newest_first(api: Api) -> None:
    for number in range(5):
        api.client.post("/sessions", json={"session_id": f"s-{number}"})

    pages, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = api.client.get("/sessions", params=params).json()
        pages.append([s["session_id"] for s in page["sessions"]])
        if not (cursor := page["next_cursor"]):
            break

    assert pages == [["s-4", "s-3"], ["s-2", "s-1"], ["s-0"]]
    assert_error(api.client.get("/sessions", params={"limit": 101}), 422, "invalid_request")
    assert_error(api.client.get("/sessions", params={"cursor": "garbage"}), 422, "invalid_request")


def test_history_is_paged_with_limit_and_offset(make_api: MakeApi) -> None:
    api = make_api([f"reply {n}" for n in range(3)])
    for n in range(3):
        api.client.post("/process", json={"prompt": f"prompt {n}", "session_id": "s"})

    first = api.client.get("/sessions/s/history", params={"limit": 4}).json()
    rest = api.client.get("/sessions/s/history", params={"offset": first["next_offset"]}).json()

    assert [m["message_id"] for m in first["messages"]] == [0, 1, 2, 3]
    assert first["next_offset"] == 4
    assert [m["text"] for m in rest["messages"]] == ["prompt 2", "reply 2"]
    assert rest["next_offset"] is None
    other = api.client.get("/sessions/s/history", params={"agent_id": "nobody"}).json()
    assert other["messages"] == []
