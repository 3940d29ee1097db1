"""Serving an ASGI app with uvicorn on a background thread: the webhook receiver and the ops listener.

The socket is bound here, before uvicorn runs, so an address that cannot be
had (a port taken by another process, a host that is not this machine's)
is a `CannotListen` naming the setting to change, which the CLI prints as
one line, rather than uvicorn's error log and a traceback.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

import structlog
import uvicorn
from fastapi import FastAPI

from crmhub.errors import CrmhubError

log = structlog.get_logger("crmhub.serving")


class CannotListen(CrmhubError):
    """An address crmhub was told to listen on cannot be bound; the fix is in settings or on the host."""


class HttpServer:
    """Serves `app` with uvicorn on a background thread: in the daemon, or in tests on port 0.

    Uvicorn's access log is off (it would log query strings); the apps log
    route and outcome themselves.

    Args:
        section: the settings section the address comes from (`webhooks`, `ops`), named in errors.
        source: the settings file, named in errors.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, section: str = "webhooks",
                 source: Path | None = None, start_timeout: float = 10.0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._start_timeout = start_timeout
        self.host = host
        self.section = section
        self.source = source
        self._asked_port = port

    @property
    def port(self) -> int:
        """The bound port (the free one picked for port 0)."""
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> HttpServer:
        """Start serving; returns once the socket listens.

        Raises:
            CannotListen: the address is taken or not this host's, or the server did not start in time.
        """
        sock = self._bind()
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"crmhub-{self.section}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._start_timeout
        while not self._server.started:  # uvicorn offers no start event to wait on
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                sock.close()
                raise CannotListen(self._where("port", f"the server did not start within {self._start_timeout:g} s"))
            time.sleep(0.01)
        log.info("listening", server=self.section, url=self.url)
        return self

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need no wait
        try:
            sock.bind((self.host, self._asked_port))
        except OSError as exc:
            sock.close()
            raise CannotListen(self._refusal(exc)) from None
        return sock

    def _refusal(self, exc: OSError) -> str:
        if exc.errno == errno.EADDRINUSE:
            return self._where("port", "address already in use; stop the process that holds it, or choose "
                                       "another port there")
        if exc.errno == errno.EACCES:
            return self._where("port", "permission denied; use a port of 1024 or above, or grant the service "
                                       "CAP_NET_BIND_SERVICE")
        if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
            return self._where("host", "not an address of this host; use 127.0.0.1, 0.0.0.0 or one of this "
                                       "machine's addresses")
        return self._where("port", f"{exc.strerror or type(exc).__name__}; check the address there")

    def _where(self, key: str, problem: str) -> str:
        setting = f"{self.section}.{key}" + (f" in {self.source}" if self.source is not None else "")
        return f"cannot listen on {self.host}:{self._asked_port} ({setting}): {problem}"

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
