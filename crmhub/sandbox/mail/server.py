"""The sandbox mail server's listeners: IMAP (pymap) and SMTP (aiosmtpd) on one event loop.

Both libraries are asyncio servers, so one background thread runs one loop
for both; the HTTP control plane (werkzeug threads) reaches the mailboxes
through `call()`, which runs a coroutine on that loop and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiosmtpd.smtp import SMTP
from proxyprotocol.noop import ProxyProtocolNoop
from proxyprotocol.reader import ProxyProtocolReader
from pymap.imap import IMAPServer

from crmhub.sandbox.mail.smtp import MailHandler
from crmhub.sandbox.mail.store import Mailstore

T = TypeVar("T")
HOST = "127.0.0.1"
HOSTNAME = "mail.sandbox.test"
CALL_TIMEOUT = 30.0
# pymap's debug lines are the whole IMAP conversation (LOGIN passwords, message bodies): never below WARNING.
_PYMAP_LOG = logging.getLogger("pymap")
_PYMAP_LOG.setLevel(max(_PYMAP_LOG.level, logging.WARNING))


class MailServers:
    """IMAP and SMTP listening on 127.0.0.1 until `stop()`; ports 0 pick free ones."""

    def __init__(self, store: Mailstore, handler: MailHandler, *,
                 on_imap_connect: Callable[[], bool] = lambda: True) -> None:
        self.store = store
        self._handler = handler
        self._on_imap_connect = on_imap_connect
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sandbox-mail", daemon=True)
        self._servers: list[asyncio.Server] = []
        self.ports: dict[str, int] = {}

    def start(self, *, smtp_port: int = 0, imap_port: int = 0) -> MailServers:
        """Listen (raises OSError when a port is taken)."""
        self._thread.start()
        try:
            self.call(self._listen(smtp_port, imap_port))
        except BaseException:
            self.stop()
            raise
        return self

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the mail loop from another thread; its result or its exception."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.call(self._close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        self._loop.close()

    async def _listen(self, smtp_port: int, imap_port: int) -> None:
        handler = self._handler
        smtp = await self._loop.create_server(
            lambda: SMTP(handler, hostname=HOSTNAME, authenticator=handler.authenticate, auth_required=False,
                         auth_require_tls=False, decode_data=False, enable_SMTPUTF8=True),
            HOST, smtp_port)
        self._servers.append(smtp)
        imap_server = IMAPServer(self.store.login, self.store.config)
        accept = ProxyProtocolReader(ProxyProtocolNoop()).get_callback(imap_server)

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if not self._on_imap_connect():
                writer.transport.abort()
                return
            await accept(reader, writer)

        imap = await asyncio.start_server(on_connect, HOST, imap_port)
        self._servers.append(imap)
        self.ports = {"smtp": _port(smtp), "imap": _port(imap)}

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            if hasattr(server, "close_clients"):
                server.close_clients()
        # open IMAP sessions (an IDLE) are tasks of their own: cancel them so the loop can stop
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])
