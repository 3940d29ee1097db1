"""Debian's Chromium under Playwright for the plugins' browser tests, and where their screenshots go.

`make test` installs Chromium where it can (scripts/install-chromium.sh); a
test module marks itself with `needs_chromium` and skips, saying why, where
it is absent.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("CRMHUB_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
BROWSER_DIR = Path(__file__).with_name("browser")
# As a probe of this machine kind found: without the background-networking flags Chromium's own connections
# are refused by the closed network, many at a time.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed; `make test` installs "
                                                             "Debian's chromium where it runs as root with apt-get")


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A page of a fresh headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser.new_page(viewport={"width": 500, "height": 960})
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{name}.png")


Route = Callable[[bytes], tuple[int, str, bytes]]
"""A host route: the request body -> (status, content type, body)."""


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        path = self.path.partition("?")[0]
        route = self.server.routes.get((self.command, path))  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, kind, data = route(body) if route else (404, "text/plain", b"not here")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer  # noqa: N815  # http.server's names

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def host_server(routes: dict[tuple[str, str], Route]) -> Iterator[str]:
    """The page that plays a CRM, on its own local origin (Chromium lets a local page frame the local crmhub);
    yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.routes = routes  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def html(page: str) -> Route:
    return lambda _body: (200, "text/html; charset=utf-8", page.encode())
