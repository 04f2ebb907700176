"""Through the real server as `serve` runs it: clients that send their requests too slowly lose
them (REQUEST_HEADER_TIMEOUT, REQUEST_BODY_TIMEOUT), as do those whose headers are too large
(MAX_HEADER_BYTES), and no one else notices."""

import http.client
import json
import select
import socket
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from ..support.http import assert_error
from ..support.server import Server, server_process
from ..support.sse import parse_events, streamed_text

# Short deadlines, so that the tests wait little; a trickled byte every TRICKLE_INTERVAL seconds.
TIMEOUTS = {"REQUEST_HEADER_TIMEOUT": "1", "REQUEST_BODY_TIMEOUT": "1"}
TRICKLE_INTERVAL = 0.2
# A whole request, which every server answers at once.
HEALTH_REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
# Long enough to outlast the server's deadline many times over, short enough to end a failing test.
SOCKET_TIMEOUT = 10


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.client.base_url.port), SOCKET_TIMEOUT)


def trickle(sock: socket.socket, data: bytes) -> bool:
    """Send `data` a byte at a time until the server answers or closes the connection; whether it
    did before the last byte."""
    for byte in data:
        answered, _, _ = select.select([sock], [], [], TRICKLE_INTERVAL)
        if answered:
            return True
        sock.sendall(bytes([byte]))
    return False


def read_response(sock: socket.socket) -> httpx.Response:
    """The server's next answer, read whole."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return httpx.Response(response.status, headers=response.getheaders(), content=response.read())


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:  # it closed as a trickled byte arrived
        return True


def request_head(server: Server, framing: str) -> bytes:
    """A turn's headers, with the API key: sent whole, the turn would run."""
    lines = [
        "POST /process HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: {server.client.headers['Authorization']}",
        "Content-Type: application/json",
        framing,
    ]
    return "\r\n".join([*lines, "", ""]).encode()


def test_a_body_sent_too_slowly_gets_408_and_never_reaches_the_route(
    database_url: str, engine: Engine
) -> None:
    """Valid JSON, then whitespace a byte at a time: a prefix of the body is valid JSON too."""
    prefix = b'{"prompt": "do not run me", "session_id": "slow-body"}'
    padding = 40  # bytes, trickled over 8 s: far past the deadline, if it fails to end the request
    answers = {}
    with server_process(database_url, serve=True, **TIMEOUTS) as server:
        for framing, first, rest in [
            (f"Content-Length: {len(prefix) + padding}", prefix, b" " * padding),
            (
                "Transfer-Encoding: chunked",
                b"%x\r\n%s\r\n" % (len(prefix), prefix),
                b"1\r\n \r\n" * (padding // 6),
            ),
        ]:
            with connect(server) as sock:
                sock.sendall(request_head(server, framing) + first)
                assert trickle(sock, rest)
                answers[framing] = read_response(sock)
                assert closed_by_server(sock)
        stored = server.client.get("/sessions/slow-body")

    for response in answers.values():
        assert_error(response, 408, "request_timeout")
        assert response.headers["connection"] == "close"
    assert_error(stored, 404, "session_not_found")


@pytest.mark.parametrize("after_a_response", [False, True], ids=["new", "kept-alive"])
def test_headers_sent_too_slowly_lose_the_connection(
    tmp_path: Path, after_a_response: bool
) -> None:
    """uvicorn's keep-alive timer stops at a request's first byte: this one does not."""
    with server_process(f"sqlite:///{tmp_path / 'test.db'}", serve=True, **TIMEOUTS) as server:
        with connect(server) as sock:
            if after_a_response:
                sock.sendall(HEALTH_REQUEST)
                assert read_response(sock).status_code == 200
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0")  # half a header line
            assert trickle(sock, b".0.1" * 10)
            assert closed_by_server(sock)
        assert server.client.get("/health").status_code == 200


def test_a_replica_at_its_connection_limit_still_answers_its_liveness_probe(
    tmp_path: Path,
) -> None:
    """Idle connections count toward --limit-concurrency too: a replica with all it allows open
    is busy, not hung, and a failed liveness probe would have it restarted. Readiness takes it
    out of rotation meanwhile; every other request gets uvicorn's 503."""
    database_url = f"sqlite:///{tmp_path / 'test.db'}"
    # Idle connections kept open for the test's length, however slow the machine.
    options = ["--limit-concurrency", "3", "--timeout-keep-alive", "60"]
    turns = {"MAX_CONCURRENT_TURNS": "1"}  # fewer than uvicorn serves at once, as `serve` asks
    with server_process(database_url, serve=True, serve_options=options, **turns) as server:
        # With the client's own keep-alive connection, one more than the limit; each is open on
        # the server's side once it has answered on it (else it may wait in the listen backlog).
        held = [connect(server) for _ in range(3)]
        for sock in held:
            sock.sendall(HEALTH_REQUEST)
            assert read_response(sock).status_code == 200
        answers = {path: server.client.get(path).status_code for path in ("/health", "/ready")}
        answers["/sessions"] = server.client.get("/sessions").status_code
        for sock in held:
            sock.close()

    assert answers == {"/health": 200, "/ready": 503, "/sessions": 503}


def test_headers_larger_than_max_header_bytes_get_431_and_a_closed_connection(
    tmp_path: Path,
) -> None:
    """Sent at once, headers without end grew the process by gigabytes in seconds. A body that
    arrives with its headers does not count toward them."""
    padding = b"X-Padding: %s\r\n" % (b"a" * 16_000)
    body = json.dumps({"prompt": "x" * 8_000, "session_id": "large-body"}).encode()
    database_url = f"sqlite:///{tmp_path / 'test.db'}"
    with server_process(database_url, serve=True, MAX_HEADER_BYTES="1024") as server:
        with connect(server) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + padding)
            refused = read_response(sock)
            assert closed_by_server(sock)
        with connect(server) as sock:
            sock.sendall(request_head(server, f"Content-Length: {len(body)}") + body)
            answered = read_response(sock)

    assert_error(refused, 431, "headers_too_large")
    assert answered.status_code == 200, answered.text


def test_headers_sent_behind_a_request_still_being_answered_count_too(tmp_path: Path) -> None:
    """Pipelined behind a slow turn, headers without end were neither counted nor timed: they
    grew the process by gigabytes. The connection is closed (a 431 would land in the turn's
    response)."""
    padding = b"X-Padding: %s\r\n" % (b"a" * 16_000)
    body = json.dumps({"prompt": "a slow answer", "session_id": "pipelined"}).encode()
    database_url = f"sqlite:///{tmp_path / 'test.db'}"
    limits = {"MAX_HEADER_BYTES": "1024", "ECHO_WORD_DELAY": "0.5"}
    with server_process(database_url, serve=True, **limits) as server:
        with connect(server) as sock:
            sock.sendall(request_head(server, f"Content-Length: {len(body)}") + body)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            try:
                for _ in range(100):  # 1.6 MB, were nothing counted
                    sock.sendall(padding)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed while they were sent
            assert closed_by_server(sock), "closed before the turn's answer"
        assert server.client.get("/health").status_code == 200


# Why a request is refused before its body is read, and the status it gets.
REFUSED_UNREAD = {"body too large": 413, "another host": 400, "no credential": 401}


@pytest.mark.parametrize("refused", REFUSED_UNREAD)
def test_a_request_refused_before_its_body_was_read_loses_the_connection(
    tmp_path: Path, refused: str
) -> None:
    """Answered before its body was read (413 for the size it declares, 400 for another host,
    401 without a credential: nothing of a body is held for a client that has none), a request
    kept its connection for as long as its client trickled the rest of the body: uvicorn reads
    and drops it, and waits for its end."""
    with server_process(f"sqlite:///{tmp_path / 'test.db'}", serve=True) as server:
        head = request_head(server, "Content-Length: 1000")
        if refused == "body too large":
            head = request_head(server, "Content-Length: 100000000")
        elif refused == "another host":
            head = head.replace(b"Host: 127.0.0.1", b"Host: elsewhere.example")
        else:
            authorization = f"Authorization: {server.client.headers['Authorization']}\r\n"
            head = head.replace(authorization.encode(), b"")
        with connect(server) as sock:
            sock.sendall(head)
            response = read_response(sock)
            sock.sendall(b"x")  # more of the body, which the server must not wait for
            sock.settimeout(2)
            assert closed_by_server(sock)

    assert response.headers["connection"] == "close"
    assert response.status_code == REFUSED_UNREAD[refused]


def test_headers_after_a_chunked_body_count_too(tmp_path: Path) -> None:
    """The headers a chunked body may end with (trailers) were neither counted nor bounded: one
    client grew the process by gigabytes in seconds. A body sent in many small chunks still
    passes."""
    padding = b"X-Padding: %s\r\n" % (b"a" * 16_000)
    body = json.dumps({"prompt": "x" * 4_000, "session_id": "chunked"}).encode()
    pieces = [body[i : i + 10] for i in range(0, len(body), 10)]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    database_url = f"sqlite:///{tmp_path / 'test.db'}"
    with server_process(database_url, serve=True, MAX_HEADER_BYTES="1024") as server:
        with connect(server) as sock:
            sock.sendall(request_head(server, "Transfer-Encoding: chunked") + b"1\r\n{\r\n0\r\n")
            try:
                for _ in range(100):  # 1.6 MB, were nothing counted
                    sock.sendall(padding)
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed while they were sent
            assert closed_by_server(sock)
        with connect(server) as sock:
            sock.sendall(request_head(server, "Transfer-Encoding: chunked") + chunks + b"0\r\n\r\n")
            answered = read_response(sock)

    assert answered.status_code == 200, answered.text


def test_requests_and_streamed_turns_outlast_the_deadlines(
    database_url: str, engine: Engine
) -> None:
    """A streamed turn longer than both deadlines, then a turn on the same connection."""
    prompt = "one two three four five six seven eight"  # echoed with two more words, 0.25 s each
    with server_process(database_url, serve=True, ECHO_WORD_DELAY="0.25", **TIMEOUTS) as server:
        client = server.client
        with client.stream("POST", "/process-streaming", json={"prompt": prompt}) as response:
            events = parse_events(response.read().decode())
        session_id = events[0].data["session_id"]
        second = client.post("/process", json={"prompt": "Again", "session_id": session_id})
        history = client.get(f"/sessions/{session_id}/history").json()["messages"]
        client.delete(f"/sessions/{session_id}")

    assert streamed_text(events) == f"You said: {prompt}"
    assert second.json()["response"] == "You said: Again"
    assert [m["text"] for m in history] == [
        prompt,
        f"You said: {prompt}",
        "Again",
        "You said: Again",
    ]
