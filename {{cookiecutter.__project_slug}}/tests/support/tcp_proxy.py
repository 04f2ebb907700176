"""A TCP proxy in front of the test database that can cut a connection as its answer comes back:
the database has done what it was asked, and the client never hears so."""

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import make_url


class AnswerCuttingProxy:
    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self._target = (url.host or "127.0.0.1", url.port or 5432)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        self.url = url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
        self.cut_next_answer = False
        # Closes the connections it accepts at once, as a database that went away.
        self.refusing = False
        # Run as the answer is cut, before the client can know: what happens meanwhile.
        self.at_cut: Callable[[], object] = lambda: None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed
                return
            if self.refusing:
                client.close()
                continue
            server = socket.create_connection(self._target)
            threading.Thread(target=self._pass, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pass, args=(server, client, True), daemon=True).start()

    def _pass(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65_536):
                if answers and self.cut_next_answer:
                    self.cut_next_answer = False
                    self.at_cut()
                    for end in (source, sink):
                        end.shutdown(socket.SHUT_RDWR)
                    return
                sink.sendall(data)
        except OSError:  # the other direction cut the connection
            pass
        finally:
            source.close()
            sink.close()

    def close(self) -> None:
        self._listener.close()


@contextmanager
def answer_cutting_proxy(database_url: str) -> Iterator[AnswerCuttingProxy]:
    proxy = AnswerCuttingProxy(database_url)
    try:
        yield proxy
    finally:
        proxy.close()
