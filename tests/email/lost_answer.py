"""A loopback TCP relay in front of the real SMTP server that loses the server's answer to the end of DATA.

It relays both ways. After the server has said 354 (send the message),
its next 250 answers the end of the message: the message is accepted and
will be delivered. The relay then closes the client's connection instead
of passing that answer on: the sandbox's `reset` fault
with `after: true`, for SMTP. Only the first transaction is hit; later
connections are relayed untouched. The fault is triggered by what the
server said, never by time.
"""

from __future__ import annotations

import socket
import threading
from contextlib import closing, suppress


class LostAnswerRelay:
    """`port` relays to 127.0.0.1:`target`; `lost` is set once an accepted message's answer was dropped."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.lost = threading.Event()
        self.server_answer = b""
        self._armed = True
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        with suppress(OSError):
            self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                armed, self._armed = self._armed, False
            threading.Thread(target=self._relay, args=(client, armed), daemon=True).start()

    def _relay(self, client: socket.socket, armed: bool) -> None:
        with closing(client), closing(socket.create_connection(("127.0.0.1", self.target))) as server:

            def client_to_server() -> None:
                with suppress(OSError):
                    while chunk := client.recv(65536):
                        server.sendall(chunk)
                with suppress(OSError):
                    server.shutdown(socket.SHUT_WR)

            threading.Thread(target=client_to_server, daemon=True).start()
            in_data = False  # the server said 354: its next 250 answers the end of the message
            with suppress(OSError):
                while chunk := server.recv(65536):
                    if armed and in_data and chunk.startswith(b"250"):
                        self.server_answer = chunk
                        self.lost.set()
                        client.shutdown(socket.SHUT_RDWR)  # the answer never reaches the client
                        return
                    in_data = in_data or chunk.startswith(b"354")
                    client.sendall(chunk)
