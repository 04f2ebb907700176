"""Callers and what they own: API keys, JWTs, the open mode; sessions seen by their owner alone."""

import json
import logging
import secrets
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine

from {{ cookiecutter.__package_name }}.api import security
from {{ cookiecutter.__package_name }}.api.app import create_app
from {{ cookiecutter.__package_name }}.api.cursors import sign_cursor, verify_cursor
from {{ cookiecutter.__package_name }}.api_keys import create_api_key, revoke_api_key
from {{ cookiecutter.__package_name }}.cli import main as command_line
from {{ cookiecutter.__package_name }}.principal_limits import (
    PrincipalLimitError,
    PrincipalLimits,
)
from {{ cookiecutter.__package_name }}.session_store import InvalidCursorError

from ..conftest import Api, MakeApi
from ..support.databases import drop_other_connections, postgres_database, settings_for
from ..support.http import QuietHandler, assert_error, local_http_server
from ..support.scripted_model import GatedModel


def as_principal(api: Api, principal: str) -> dict[str, str]:
    """The header of a new API key for `principal`."""
    key = create_api_key(api.client.app.state.engine, principal)
    return {"Authorization": f"Bearer {key}"}


def test_another_principals_session_is_as_if_it_did_not_exist(make_api: MakeApi) -> None:
    api = make_api(["Hi.", "Nothing to tell.", "Still nothing."])
    api.client.post("/process", json={"prompt": "Hello", "session_id": "mine"})
    mallory = as_principal(api, "mallory")

    assert api.client.get("/sessions", headers=mallory).json()["sessions"] == []
    for method, path in [
        ("GET", "/sessions/mine"),
        ("GET", "/sessions/mine/history"),
        ("DELETE", "/sessions/mine"),
    ]:
        assert_error(api.client.request(method, path, headers=mallory), 404, "session_not_found")
    # The same id names mallory's own session: a new one, which holds nothing of mine.
    continued = api.client.post(
        "/process", json={"prompt": "Tell me", "session_id": "mine"}, headers=mallory
    )
    assert continued.status_code == 200, continued.text
    streamed = api.client.post(
        "/process-streaming", json={"prompt": "Tell me", "session_id": "mine"}, headers=mallory
    )
    assert streamed.status_code == 200, streamed.text

    prompts = [[m["content"][0]["text"] for m in call] for call in api.model.calls]
    assert prompts[1] == ["Tell me"]
    assert prompts[2] == ["Tell me", "Nothing to tell.", "Tell me"]
    assert [s["session_id"] for s in api.client.get("/sessions").json()["sessions"]] == ["mine"]
    assert api.client.get("/sessions/mine").json()["message_count"] == 2
    assert api.client.get("/sessions/mine", headers=mallory).json()["message_count"] == 4


def test_two_principals_run_turns_on_sessions_of_the_same_id_at_once(make_api: MakeApi) -> None:
    # Each turn waits inside the model until the other has arrived there too, and then outlasts
    # its lease: the replica must renew both.
    barrier = threading.Barrier(2, timeout=20)

    def meet_and_think() -> None:
        barrier.wait()
        time.sleep(4.5)

    # A lease of 2 s, renewed every 0.67 s: a loaded machine may stall the loop for a second.
    api = make_api(model=GatedModel(meet_and_think), session_lease_seconds=2)
    callers = [as_principal(api, "alice"), as_principal(api, "bob")]

    with ThreadPoolExecutor(2) as pool:
        turns = [
            pool.submit(
                api.client.post, "/process", json={"prompt": "hi", "session_id": "chat"}, headers=h
            )
            for h in callers
        ]
        assert [turn.result(timeout=60).status_code for turn in turns] == [200, 200]

    for headers in callers:
        assert api.client.get("/sessions/chat", headers=headers).json()["message_count"] == 2


def test_each_principal_lists_only_its_own_sessions(make_api: MakeApi) -> None:
    api = make_api(["One.", "Two."])
    alice, bob = as_principal(api, "alice"), as_principal(api, "bob")
    api.client.post("/process", json={"prompt": "a", "session_id": "alice-1"}, headers=alice)
    api.client.post("/sessions", json={"session_id": "bob-1"}, headers=bob)

    def listed(headers: dict[str, str]) -> list[str]:
        page = api.client.get("/sessions", headers=headers).json()
        return [session["session_id"] for session in page["sessions"]]

    assert listed(alice) == ["alice-1"]
    assert listed(bob) == ["bob-1"]
    assert listed({}) == []  # the test's own principal
    mirrored = api.client.post("/sessions", json={"session_id": "alice-1"}, headers=bob)
    assert mirrored.status_code == 201  # each principal names its sessions for itself
    assert listed(bob) == ["alice-1", "bob-1"]
    assert listed(alice) == ["alice-1"]


def test_a_cursor_is_good_only_for_the_principal_it_was_handed_to(make_api: MakeApi) -> None:
    api = make_api()
    alice, bob = as_principal(api, "alice"), as_principal(api, "bob")
    for number in range(2):
        api.client.post("/sessions", json={"session_id": f"s-{number}"}, headers=alice)
        api.client.post("/sessions", json={"session_id": f"s-{number}"}, headers=bob)
    cursor = api.client.get("/sessions", params={"limit": 1}, headers=alice).json()["next_cursor"]

    mine = api.client.get("/sessions", params={"cursor": cursor}, headers=alice)
    theirs = api.client.get("/sessions", params={"cursor": cursor}, headers=bob)

    assert [session["session_id"] for session in mine.json()["sessions"]] == ["s-0"]
    assert_error(theirs, 422, "invalid_cursor")


def test_a_cursor_signed_for_a_principal_never_passes_as_anothers() -> None:
    """The signature covers the cursor and the principal joined by a ".", which a principal may
    hold: "ICAg.q2"'s cursor, its signature moved past "ICAg.", must not pass as q2's."""
    secret = secrets.token_bytes(32)
    body, _, signature = sign_cursor(secret, "ICAg.q2", "WyJ4Il0").rpartition(".")

    with pytest.raises(InvalidCursorError):
        verify_cursor(secret, "q2", f"{body}.ICAg.{signature}")


def test_a_revoked_key_is_refused_at_once(api: Api) -> None:
    key = create_api_key(api.client.app.state.engine, "carol")
    headers = {"Authorization": f"Bearer {key}"}
    assert api.client.get("/sessions", headers=headers).status_code == 200

    assert revoke_api_key(api.client.app.state.engine, key.partition(".")[0])

    assert_error(api.client.get("/sessions", headers=headers), 401, "unauthorized")
    forged = {"Authorization": f"Bearer {key.partition('.')[0]}.not-the-secret"}
    assert_error(api.client.get("/sessions", headers=forged), 401, "unauthorized")


@pytest.mark.parametrize(
    "body", ["not JSON", '{"prompt": 42}', '{"prompt": "hi"}'], ids=["not-json", "invalid", "valid"]
)
def test_a_body_without_a_valid_credential_gets_401_whatever_it_holds(api: Api, body: str) -> None:
    """The credential is checked before the body is read: a caller without one learns nothing of
    how its body would have been taken, and the service holds nothing of it."""
    headers = {"Authorization": "Bearer not-a-key", "Content-Type": "application/json"}

    response = api.client.post("/process", content=body, headers=headers)

    assert_error(response, 401, "unauthorized")
    assert response.headers["connection"] == "close"  # the body was not read


def test_a_key_is_checked_on_a_fresh_connection_after_the_database_dropped_ours(
    api: Api, engine: Engine
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a SQLite connection cannot be dropped by its server")
    assert api.client.get("/sessions").status_code == 200  # the key's read left a pooled connection
    drop_other_connections(engine)

    assert api.client.get("/sessions").status_code == 200


def test_a_key_made_while_the_service_takes_none_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The command names the database too: a key made in the wrong one was refused as silently."""
    database_url = f"sqlite:///{tmp_path / 'keys.db'}"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("AUTH_MODE", "none")

    command_line(["create-api-key", "dave"])

    said = capsys.readouterr()
    assert said.out.startswith(f"API key for 'dave' in {database_url}; ")
    assert said.err == "AUTH_MODE=none: the service takes no API key until AUTH_MODE=api_keys.\n"


def test_the_command_line_makes_lists_and_revokes_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'keys.db'}"
    monkeypatch.setenv("DATABASE_URL", database_url)
    command_line(["list-api-keys"])
    # Run in another folder than the service's, it would read another SQLite file: it says which.
    assert capsys.readouterr().err == f"no API keys in {database_url}\n"

    command_line(["create-api-key", "dave"])
    key = capsys.readouterr().out.splitlines()[-1]
    command_line(["list-api-keys"])
    listed = capsys.readouterr().out
    key_id = key.partition(".")[0]
    command_line(["revoke-api-key", key_id])
    capsys.readouterr()
    with pytest.raises(SystemExit, match="no unrevoked key"):
        command_line(["revoke-api-key", key_id])

    assert key_id in listed and "'dave'" in listed and "revoked" not in listed
    assert key.partition(".")[2] not in listed, "the secret is shown only once"
    command_line(["list-api-keys"])
    assert "revoked" in capsys.readouterr().out


def key_command_failure(monkeypatch: pytest.MonkeyPatch, database_url: str) -> str:
    """What `list-api-keys` exits with on this database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "2")
    with pytest.raises(SystemExit) as exit:
        command_line(["list-api-keys"])
    assert isinstance(exit.value.code, str) and "\n" not in exit.value.code, "one line"
    assert exit.value.code.endswith("is it up, and migrated (make migrate)?")
    return exit.value.code


@pytest.mark.postgresql
def test_the_key_commands_say_in_one_line_that_the_database_is_not_migrated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The service never migrates PostgreSQL itself: a key asked for before `make migrate` gets
    a line that says so, not a traceback."""
    with postgres_database() as unmigrated:
        assert 'relation "api_keys" does not exist' in key_command_failure(monkeypatch, unmigrated)


def test_the_key_commands_say_in_one_line_that_the_database_is_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nothing_listens = "postgresql+psycopg://postgres@127.0.0.1:1/postgres"
    assert "connection" in key_command_failure(monkeypatch, nothing_listens)


def test_the_key_commands_say_in_one_line_that_the_sqlite_file_cannot_be_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    in_a_file = f"sqlite:///{tmp_path / 'a-file' / 'keys.db'}"

    assert "a-file" in key_command_failure(monkeypatch, in_a_file)


@pytest.mark.parametrize("principal", ["a/b", "p" * 129], ids=["slash", "too-long"])
def test_create_api_key_refuses_an_invalid_principal_in_one_line(
    capsys: pytest.CaptureFixture[str], principal: str
) -> None:
    with pytest.raises(SystemExit) as exit:
        command_line(["create-api-key", principal])

    assert exit.value.code == 2
    assert f"invalid principal '{principal}': use 1 to 128 characters" in capsys.readouterr().err


def test_no_credential_proves_the_open_modes_principal(
    make_api: MakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    """AUTH_MODE=none's principal, "local", owns what that mode stored and the sessions stored
    before principals existed: a key for it, made past the command line's refusal, proves
    nothing."""
    api = make_api()
    key = create_api_key(api.client.app.state.engine, "local")

    response = api.client.get("/sessions", headers={"Authorization": f"Bearer {key}"})
    with pytest.raises(SystemExit):
        command_line(["create-api-key", "local"])

    assert_error(response, 401, "unauthorized")
    assert "AUTH_MODE=none's principal" in capsys.readouterr().err


def test_open_mode_needs_no_credential_and_says_so(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        api = make_api(["Hi."], auth_mode="none")
    response = api.client.post("/process", json={"prompt": "Hi", "session_id": "open"}, headers={})

    assert response.status_code == 200
    assert "AUTH_MODE=none" in caplog.text
    local = api.repository.for_principal("local")
    assert local.read_session("open") is not None


def test_open_mode_refuses_browsers_on_other_sites(make_api: MakeApi) -> None:
    """Any web page its user opens could otherwise run turns on the developer's model: a `fetch`
    whose body has no content type is sent without a CORS preflight, and FastAPI reads it as
    JSON. The service's own pages, an allowed origin, and clients that are not browsers pass."""
    api = make_api(
        ["Own page.", "Behind a proxy.", "Allowed origin.", "Not a browser."],
        auth_mode="none",
        cors_allow_origins=["https://app.example"],
    )
    local = api.client.app.state.repository.for_principal("local")

    def post(**headers: str) -> Response:
        turn = {"prompt": "Hi", "session_id": "open"}
        return api.client.post("/process", json=turn, headers=headers)

    refused = [
        post(**{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}),
        post(**{"Sec-Fetch-Site": "same-site", "Origin": "http://other.localhost"}),
        post(Origin="https://evil.example"),  # a browser that sends no Sec-Fetch-Site
        api.client.post("/sessions", headers={"Sec-Fetch-Site": "cross-site"}),
        api.client.delete("/sessions/open", headers={"Origin": "null"}),
    ]
    listed = api.client.get("/sessions", headers={"Sec-Fetch-Site": "cross-site"})

    for response in refused:
        assert_error(response, 403, "cross_site_request")
    assert local.read_session("open") is None
    assert listed.status_code == 200, "reading is harmless: the page cannot see the answer"
    assert post(**{"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"}).is_success
    assert post(Origin="http://testserver:8080").is_success  # a proxy passed the Host on portless
    assert post(**{"Sec-Fetch-Site": "cross-site", "Origin": "https://app.example"}).is_success
    assert post().is_success
    assert len(local.list_messages("open", "default")) == 8


def test_open_mode_is_not_served_beyond_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_MODE", "none")

    with pytest.raises(SystemExit, match="ALLOW_OPEN_ACCESS=true"):
        command_line(["serve", "--host", "0.0.0.0"])


@pytest.mark.usefixtures("uvicorn_never_runs")
@pytest.mark.parametrize("trusted", ["*", " * ", "10.0.0.5,0.0.0.0/0", "::/0"])
def test_open_mode_is_not_served_behind_a_trust_in_every_proxy(
    monkeypatch: pytest.MonkeyPatch, trusted: str
) -> None:
    """Trusting every address, uvicorn takes the first address of any client's X-Forwarded-For
    for its own: a client on another machine that names 127.0.0.1 there, even through a proxy
    of this machine that adds the real one after it, would be taken for one on this machine."""
    monkeypatch.setenv("AUTH_MODE", "none")
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", trusted)

    with pytest.raises(SystemExit, match="name your proxy's address there"):
        command_line(["serve"])


@pytest.mark.parametrize("allow_open_access", [False, True])
def test_open_mode_answers_other_machines_only_when_allowed(
    database_url: str, allow_open_access: bool
) -> None:
    """Served by plain `uvicorn --host 0.0.0.0`, which `serve`'s refusal above does not stop."""
    settings = settings_for(database_url, auth_mode="none", allow_open_access=allow_open_access)
    app = create_app(settings)
    with TestClient(app, client=("192.0.2.7", 50000)) as client:
        response = client.get("/sessions")
    # This machine, as a server listening on "::" sees an IPv4 client of it.
    with TestClient(app, client=("::ffff:127.0.0.1", 50000)) as client:
        local = client.get("/sessions")

    assert local.status_code == 200, local.text
    if allow_open_access:
        assert response.status_code == 200, response.text
    else:
        assert_error(response, 403, "open_access_refused")


# JWT: tokens signed by a key of a local JWKS, as an identity provider would publish it.
ISSUER, AUDIENCE = "https://id.example/", "my-service"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@contextmanager
def jwks_server(*answers: tuple[int, str], fetches: list[str] | None = None) -> Iterator[str]:
    """An identity provider's JWKS address that answers each GET with the next of `answers`
    (status, body), the last one from then on; the paths fetched are added to `fetches`."""
    remaining = list(answers)

    class Jwks(QuietHandler):
        def do_GET(self) -> None:
            if fetches is not None:
                fetches.append(self.path)
            status, body = remaining.pop(0) if len(remaining) > 1 else remaining[0]
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

    with local_http_server(Jwks) as url:
        yield f"{url}/jwks.json"


def key_set(key: rsa.RSAPrivateKey, **fields: str) -> str:
    """The JWKS document of the key's public half, with these fields (kid, use, alg)."""
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return json.dumps({"keys": [{**jwk, **fields}]})


@pytest.fixture(scope="module")
def jwks_url(signing_key: rsa.RSAPrivateKey) -> Iterator[str]:
    with jwks_server((200, key_set(signing_key, kid="key-1", use="sig", alg="RS256"))) as url:
        yield url


def token(key: rsa.RSAPrivateKey, key_id: str | None = "key-1", **claims: object) -> dict[str, str]:
    """A token of the identity provider's signed by `key`: a claim given as None is left out."""
    now = int(time.time())
    payload = {"sub": "erin", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    headers = {"kid": key_id} if key_id else {}
    encoded = jwt.encode(payload, key, algorithm="RS256", headers=headers)
    return {"Authorization": f"Bearer {encoded}"}


def test_a_jwt_names_its_principal(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, jwks_url: str
) -> None:
    settings = {"jwt_jwks_url": jwks_url, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    api = make_api(["Hi."], auth_mode="jwt", **settings)
    erin = token(signing_key)

    response = api.client.post("/process", json={"prompt": "Hi", "session_id": "jwt"}, headers=erin)

    assert response.status_code == 200, response.text
    assert api.repository.for_principal("erin").read_session("jwt") is not None
    assert api.client.get("/sessions", headers=token(signing_key, sub="frank")).json() == {
        "sessions": [],
        "next_cursor": None,
    }


def test_a_jwt_from_a_provider_whose_clock_runs_ahead_is_accepted(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, jwks_url: str
) -> None:
    settings = {"jwt_jwks_url": jwks_url, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    api = make_api(auth_mode="jwt", **settings)
    ahead = int(time.time()) + 10

    response = api.client.get("/sessions", headers=token(signing_key, iat=ahead, nbf=ahead))

    assert response.status_code == 200, response.text


def test_a_jwt_may_be_checked_by_its_client_id_instead_of_an_audience(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, jwks_url: str
) -> None:
    """Amazon Cognito's access tokens, which AgentCore's JWT authorizer takes by their client
    (`allowedClients`), carry a `client_id` and no `aud`."""
    settings = {"jwt_jwks_url": jwks_url, "jwt_issuer": ISSUER, "jwt_client_ids": ["app", "cli"]}
    api = make_api(auth_mode="jwt", **settings)

    def sessions(**claims: object) -> int:
        access_token = token(signing_key, **{"aud": None, **claims})
        return api.client.get("/sessions", headers=access_token).status_code

    assert sessions(client_id="cli") == 200
    assert sessions(client_id="cli", aud="any-audience") == 200
    assert sessions(client_id="another-app") == 401
    assert sessions() == 401


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "another-service"},
        {"iss": "https://elsewhere.example/"},
        {"exp": 1},
        {"nbf": int(time.time()) + 600},
        {"sub": ""},
        {"sub": "local"},
    ],
    ids=["audience", "issuer", "expired", "not-yet-valid", "no-principal", "open-modes-principal"],
)
def test_a_jwt_that_does_not_hold_is_refused(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, jwks_url: str, claims: dict
) -> None:
    settings = {"jwt_jwks_url": jwks_url, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    api = make_api(auth_mode="jwt", **settings)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    assert_error(
        api.client.get("/sessions", headers=token(signing_key, **claims)), 401, "unauthorized"
    )
    assert_error(api.client.get("/sessions", headers=token(stranger)), 401, "unauthorized")
    assert_error(api.client.get("/sessions", headers={}), 401, "unauthorized")


@pytest.fixture
def broken_jwks_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A JWKS address that answers with `request.param` (status, body); "unreachable": none."""
    if request.param == "unreachable":
        yield "http://127.0.0.1:9/jwks.json"
        return
    with jwks_server(request.param) as url:
        yield url


@pytest.mark.parametrize(
    "broken_jwks_url",
    [
        "unreachable",
        (502, "Bad Gateway"),
        (200, "<html>Bad Gateway</html>"),
        (200, '{"keys": []}'),
        (200, "[]"),
    ],
    ids=["unreachable", "502", "not-json", "no-keys", "not-a-key-set"],
    indirect=True,
)
def test_an_identity_provider_without_readable_keys_is_an_outage_not_a_refusal(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, broken_jwks_url: str
) -> None:
    settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
    api = make_api(auth_mode="jwt", jwt_jwks_url=broken_jwks_url, **settings)

    response = api.client.get("/sessions", headers=token(signing_key))
    not_a_jwt = api.client.get("/sessions", headers={"Authorization": "Bearer not-a-jwt"})

    assert_error(response, 503, "auth_unavailable")
    assert response.headers["Retry-After"] == "5"
    assert_error(not_a_jwt, 401, "unauthorized")


def test_an_identity_provider_that_drops_the_connection_mid_answer_is_an_outage(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey
) -> None:
    class DropsMidAnswer(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b'{"keys": [')
            # Closed with a reset, not an orderly end: the reader's next read fails.
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()

    with local_http_server(DropsMidAnswer) as url:
        settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        api = make_api(auth_mode="jwt", jwt_jwks_url=f"{url}/jwks.json", **settings)
        response = api.client.get("/sessions", headers=token(signing_key))

    assert_error(response, 503, "auth_unavailable")


def test_a_failing_identity_provider_is_not_asked_again_by_every_request(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey
) -> None:
    """Anyone can send tokens that name no key held: each would have the failing provider asked
    again, five seconds at most each, while every other token check waited."""
    fetches: list[str] = []
    with jwks_server((502, "Bad Gateway"), fetches=fetches) as url:
        settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        api = make_api(auth_mode="jwt", jwt_jwks_url=url, **settings)
        responses = [api.client.get("/sessions", headers=token(signing_key)) for _ in range(5)]

    for response in responses:
        assert_error(response, 503, "auth_unavailable")
    assert len(fetches) == 1


def test_tokens_naming_no_key_held_do_not_each_ask_a_failing_provider(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a key set held, a token naming a key that it lacks has the provider asked once (a
    key it has published since), and not again for a while whatever came of it: while the
    provider fails, every such token would have it asked, five seconds each, while the others
    queued."""
    monkeypatch.setattr(security, "JWKS_REFETCH_SECONDS", 0)  # the key set read long ago
    fetches: list[str] = []
    answers = [(200, key_set(signing_key, kid="key-1")), (502, "Bad Gateway")]
    with jwks_server(*answers, fetches=fetches) as url:
        settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        api = make_api(auth_mode="jwt", jwt_jwks_url=url, **settings)
        known = api.client.get("/sessions", headers=token(signing_key))
        unknown = [
            api.client.get("/sessions", headers=token(signing_key, key_id="key-2"))
            for _ in range(5)
        ]
        known_again = api.client.get("/sessions", headers=token(signing_key))

    assert known.status_code == known_again.status_code == 200
    for response in unknown:
        assert_error(response, 401, "unauthorized")
    assert len(fetches) == 2  # the key set, then once for key-2


def test_a_key_set_read_before_the_provider_failed_goes_on_checking_tokens(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An identity provider's outage that outlasts the key set's lifespan refuses no valid
    token: the key set read last answers until the provider can be read again."""
    # The key set read long ago, to be read again at the next token.
    monkeypatch.setattr(security, "JWKS_LIFESPAN_SECONDS", 0)
    monkeypatch.setattr(security, "JWKS_REFETCH_SECONDS", 0)
    fetches: list[str] = []
    answers = [(200, key_set(signing_key, kid="key-1")), (502, "Bad Gateway")]
    with jwks_server(*answers, fetches=fetches) as url:
        settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        api = make_api(auth_mode="jwt", jwt_jwks_url=url, **settings)
        responses = [api.client.get("/sessions", headers=token(signing_key)) for _ in range(3)]
        other_key = api.client.get("/sessions", headers=token(signing_key, key_id="key-2"))

    assert [response.status_code for response in responses] == [200, 200, 200]
    assert_error(other_key, 401, "unauthorized")
    assert len(fetches) == 2  # the key set, then once: not again for JWKS_RETRY_SECONDS


def test_a_key_set_is_read_again_only_once_its_lifespan_is_over(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(security, "JWKS_REFETCH_SECONDS", 0)
    fetches: list[str] = []
    with jwks_server((200, key_set(signing_key, kid="key-1")), fetches=fetches) as url:
        settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        api = make_api(auth_mode="jwt", jwt_jwks_url=url, **settings)
        responses = [api.client.get("/sessions", headers=token(signing_key)) for _ in "ab"]

    assert [response.status_code for response in responses] == [200, 200]
    assert len(fetches) == 1


def test_a_key_the_provider_withdrew_is_refused_once_the_key_set_is_read_again(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(security, "JWKS_LIFESPAN_SECONDS", 0)
    monkeypatch.setattr(security, "JWKS_REFETCH_SECONDS", 0)
    successor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    answers = [(200, key_set(signing_key, kid="key-1")), (200, key_set(successor, kid="key-2"))]
    with jwks_server(*answers) as url:
        settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        api = make_api(auth_mode="jwt", jwt_jwks_url=url, **settings)
        before = api.client.get("/sessions", headers=token(signing_key))
        withdrawn = api.client.get("/sessions", headers=token(signing_key))
        new_key = api.client.get("/sessions", headers=token(successor, key_id="key-2"))

    assert before.status_code == 200
    assert_error(withdrawn, 401, "unauthorized")
    assert new_key.status_code == 200


class HangingProvider:
    """An identity provider that answers its key set once, then hangs at every fetch until told
    to `hang_up`: `fetching` is set once one hangs."""

    def __init__(self, document: str) -> None:
        self.document = document
        self.fetching, self.hang_up = threading.Event(), threading.Event()

    @contextmanager
    def serving(self) -> Iterator[str]:
        provider, answered = self, []

        class HangsAfterItsFirstAnswer(QuietHandler):
            def do_GET(self) -> None:
                if answered:
                    provider.fetching.set()
                    provider.hang_up.wait(30)
                answered.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(provider.document.encode())

        with local_http_server(HangsAfterItsFirstAnswer) as url:
            yield f"{url}/jwks.json"


def test_while_the_key_set_is_fetched_a_token_naming_another_key_does_not_wait(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queued behind a fetch from a provider that hangs, such tokens would hold every worker
    thread, and the valid tokens would wait for one."""
    monkeypatch.setattr(security, "JWKS_REFETCH_SECONDS", 0)  # the key set read long ago
    other_key = token(signing_key, key_id="key-2")
    provider = HangingProvider(key_set(signing_key, kid="key-1"))
    with provider.serving() as url, ThreadPoolExecutor(1) as pool:
        settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        api = make_api(auth_mode="jwt", jwt_jwks_url=url, **settings)
        assert api.client.get("/sessions", headers=token(signing_key)).status_code == 200
        fetches = pool.submit(api.client.get, "/sessions", headers=other_key)
        assert provider.fetching.wait(30)  # the second fetch hangs

        meanwhile = api.client.get("/sessions", headers=other_key)
        valid = api.client.get("/sessions", headers=token(signing_key))
        still_fetching = not fetches.done()
        provider.hang_up.set()

    assert still_fetching
    assert_error(meanwhile, 401, "unauthorized")
    assert valid.status_code == 200
    assert_error(fetches.result(), 401, "unauthorized")


def test_while_an_old_key_set_is_read_again_valid_tokens_do_not_wait(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key set held answers while a provider that hangs is asked for a newer one."""
    monkeypatch.setattr(security, "JWKS_LIFESPAN_SECONDS", 0)  # read again at every token
    monkeypatch.setattr(security, "JWKS_REFETCH_SECONDS", 0)
    provider = HangingProvider(key_set(signing_key, kid="key-1"))
    with provider.serving() as url, ThreadPoolExecutor(1) as pool:
        settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        api = make_api(auth_mode="jwt", jwt_jwks_url=url, **settings)
        assert api.client.get("/sessions", headers=token(signing_key)).status_code == 200
        fetches = pool.submit(api.client.get, "/sessions", headers=token(signing_key))
        assert provider.fetching.wait(30)  # the second read hangs

        meanwhile = api.client.get("/sessions", headers=token(signing_key))
        still_fetching = not fetches.done()
        provider.hang_up.set()

    assert still_fetching
    assert meanwhile.status_code == 200
    assert fetches.result().status_code == 200


def test_a_key_set_whose_keys_have_no_ids_checks_tokens_that_name_none(
    make_api: MakeApi, signing_key: rsa.RSAPrivateKey
) -> None:
    """An id is optional in a JWKS (RFC 7517): a provider of one key may give it none."""
    with jwks_server((200, key_set(signing_key))) as url:
        settings = {"jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        api = make_api(auth_mode="jwt", jwt_jwks_url=url, **settings)
        responses = [api.client.get("/sessions", headers=token(signing_key, None)) for _ in "ab"]

    assert [response.status_code for response in responses] == [200, 200]


def test_a_principal_past_its_turns_a_minute_waits_others_do_not(make_api: MakeApi) -> None:
    api = make_api(["One.", "Two.", "Three."], turns_per_minute=2)
    mallory = as_principal(api, "mallory")
    for prompt in ("one", "two"):
        assert api.client.post("/process", json={"prompt": prompt}).status_code == 200

    refused = api.client.post("/process", json={"prompt": "three"})
    other = api.client.post("/process", json={"prompt": "three"}, headers=mallory)

    assert_error(refused, 429, "too_many_turns")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert other.status_code == 200


def test_a_turn_refused_before_it_started_is_not_counted_against_the_minute(
    make_api: MakeApi,
) -> None:
    api = make_api(["One.", "Two."], turns_per_minute=2, max_sessions_per_principal=1)
    assert api.client.post("/process", json={"prompt": "one", "session_id": "a"}).is_success

    refused = api.client.post("/process", json={"prompt": "new", "session_id": "b"})
    second = api.client.post("/process", json={"prompt": "two", "session_id": "a"})

    assert_error(refused, 429, "too_many_sessions")
    assert second.status_code == 200, second.text


def test_turns_at_once_are_limited_per_principal() -> None:
    limits = PrincipalLimits(turns_at_once=1, turns_per_minute=100)
    limits.admit("alice")

    with pytest.raises(PrincipalLimitError) as refused:
        limits.admit("alice")
    limits.admit("bob")
    limits.release("alice")
    limits.admit("alice")

    assert refused.value.code == "too_many_turns"
    assert refused.value.retry_after == 1


def test_principals_idle_for_a_minute_are_forgotten() -> None:
    now = [0.0]
    limits = PrincipalLimits(turns_at_once=5, turns_per_minute=5, clock=lambda: now[0])
    for number in range(1000):
        limits.admit(f"caller-{number}")
        limits.release(f"caller-{number}")
    limits.admit("busy")  # still running a minute later: kept

    now[0] = 61.0
    limits.admit("newcomer")

    assert limits.remembered() == 2
    limits.release("busy")
    limits.admit("busy")


def test_a_turn_refused_before_it_started_leaves_the_limits_working() -> None:
    """Its start is forgotten (and its principal, if that was its only start), so that the
    minute's sweep finds no principal without a start: it once raised on every later turn."""
    now = [0.0]
    limits = PrincipalLimits(turns_at_once=5, turns_per_minute=1, clock=lambda: now[0])
    limits.admit("alice")
    limits.release("alice", started=False)  # its session was busy
    limits.admit("alice")  # the refused turn does not count against the minute
    limits.release("alice", started=False)

    now[0] = 61.0
    limits.admit("bob")
    limits.admit("alice")

    assert limits.remembered() == 2


def test_a_principal_keeps_at_most_its_sessions(make_api: MakeApi) -> None:
    api = make_api(["Hi.", "Again."], max_sessions_per_principal=2)
    assert api.client.post("/sessions", json={"session_id": "a"}).status_code == 201
    api.client.post("/process", json={"prompt": "hello", "session_id": "b"})

    created = api.client.post("/sessions", json={"session_id": "c"})
    started = api.client.post("/process", json={"prompt": "hello", "session_id": "d"})
    continued = api.client.post("/process", json={"prompt": "again", "session_id": "b"})

    assert_error(created, 429, "too_many_sessions")
    assert_error(started, 429, "too_many_sessions")
    existing = api.client.post("/sessions", json={"session_id": "a"})
    assert_error(existing, 409, "already_exists")
    assert continued.status_code == 200
    assert len(api.model.calls) == 2, "the refused turn never reached the model"
    assert api.repository.count_sessions() == 2
    assert api.client.delete("/sessions/a").status_code == 204
    assert api.client.post("/sessions", json={"session_id": "c"}).status_code == 201
