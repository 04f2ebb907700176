"""The /sessions routes: create, list, inspect, page through the history of, delete."""

import json
import uuid
from base64 import urlsafe_b64encode

import pytest
from strands.types.session import SessionAgent, SessionMessage

from ..conftest import Api, MakeApi
from ..support.http import assert_error


def test_create_list_inspect_and_delete_sessions(make_api: MakeApi) -> None:
    api = make_api(["Hi."])
    created = api.client.post("/sessions", json={"session_id": "support-1"})
    anonymous = api.client.post("/sessions")
    api.client.post("/process", json={"prompt": "Hello", "session_id": "support-1"})

    assert created.status_code == anonymous.status_code == 201
    assert created.headers["Location"] == "sessions/support-1"  # relative to /sessions
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


def test_history_pages_follow_message_ids_that_skip_one(api: Api) -> None:
    """A session written through the SDK's RepositorySessionManager skips an id when a message
    failed to be written: no page repeats a message, none is left out."""
    api.client.post("/sessions", json={"session_id": "s"})
    api.repository.create_agent("s", SessionAgent("default", {}, {}))
    for message_id in (0, 1, 3, 4, 5):
        message = {"role": "user", "content": [{"text": f"m{message_id}"}]}
        api.repository.create_message("s", "default", SessionMessage(message, message_id))

    seen, offset = [], 0
    while offset is not None:
        page = api.client.get("/sessions/s/history", params={"limit": 2, "offset": offset}).json()
        seen += [message["message_id"] for message in page["messages"]]
        offset = page["next_offset"]

    assert seen == [0, 1, 3, 4, 5]


def b64(text: str) -> str:
    return urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "",
        # What the store's own cursors look like, forged: unsigned, or signed by someone else.
        b64(json.dumps(["9999-12-31T23:59:59+14:00", "s"])),
        b64("[" * 5000 + "]" * 5000),
        b64(json.dumps(["2020-01-01T00:00:00+00:00", "s"])) + ".bm90IGEgc2lnbmF0dXJl",
    ],
)
def test_a_cursor_the_service_did_not_hand_out_is_refused(api: Api, cursor: str) -> None:
    assert_error(api.client.get("/sessions", params={"cursor": cursor}), 422, "invalid_cursor")


def test_a_cursor_altered_by_one_character_is_refused(api: Api) -> None:
    for number in range(3):
        api.client.post("/sessions", json={"session_id": f"s-{number}"})
    cursor = api.client.get("/sessions", params={"limit": 1}).json()["next_cursor"]
    payload, signature = cursor.split(".")
    altered = b64(json.dumps(["2020-01-01T00:00:00+00:00", "s-9"])) + "." + signature

    assert api.client.get("/sessions", params={"cursor": cursor}).status_code == 200
    assert_error(api.client.get("/sessions", params={"cursor": altered}), 422, "invalid_cursor")
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + signature
    assert_error(api.client.get("/sessions", params={"cursor": flipped}), 422, "invalid_cursor")


def test_cursors_are_good_across_processes_with_the_same_secret(make_api: MakeApi) -> None:
    shared, another = "a secret the replicas share, long enough", "y" * 32
    one = make_api(cursor_secret=shared)
    for number in range(3):
        one.client.post("/sessions", json={"session_id": f"s-{number}"})
    cursor = one.client.get("/sessions", params={"limit": 1}).json()["next_cursor"]
    same = make_api(cursor_secret=shared)
    other = make_api(cursor_secret=another)
    unset = make_api()  # draws a secret of its own

    page = same.client.get("/sessions", params={"limit": 1, "cursor": cursor}).json()
    assert [s["session_id"] for s in page["sessions"]] == ["s-1"]
    for refusing in (other, unset):
        response = refusing.client.get("/sessions", params={"cursor": cursor})
        assert_error(response, 422, "invalid_cursor")


@pytest.mark.parametrize(
    "params",
    [
        {"offset": 2**31},  # message ids are INTEGER: PostgreSQL failed past this
        {"offset": 2**63},  # SQLite failed past this
        {"offset": -1},
        {"limit": 0},
        {"limit": 501},
        {"limit": 2**63},
    ],
)
def test_history_parameters_out_of_range_get_422(api: Api, params: dict) -> None:
    api.client.post("/sessions", json={"session_id": "s"})

    response = api.client.get("/sessions/s/history", params=params)

    assert_error(response, 422, "invalid_request")


def test_the_largest_offset_is_answered(api: Api) -> None:
    api.client.post("/sessions", json={"session_id": "s"})

    response = api.client.get("/sessions/s/history", params={"offset": 2**31 - 1})

    assert response.status_code == 200
    assert response.json()["messages"] == []
