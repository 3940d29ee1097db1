"""The Zendesk sidebar app in a real browser: headless Chromium loads it as Zendesk does (a signed-URL POST into
the sidebar frame of a host page that plays the Apps framework), shows a generated customer's timeline, confirms
an identity suggestion and sends a reply, which reaches the Twilio emulator once.

Debian's Chromium (`scripts/install-chromium.sh`, run by `make test`) driven by Playwright; screenshots go to
`test-artifacts/` (or $CRMHUB_TEST_ARTIFACTS). Skipped, saying why, where Chromium is not installed.
"""

from __future__ import annotations

import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crmhub.agent_api.pages import ZAF_SDK
from crmhub.serving import HttpServer
from crmhub.store.schema import LinkSuggestionRow
from tests.agent_api.conftest import CUSTOMER, OURS, STRANGER, Panel

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed; `make test` installs Debian's "
                                                           "chromium where it runs as root with apt-get")
BROWSER_DIR = Path(__file__).with_name("browser")
ARTIFACTS = Path(os.environ.get("CRMHUB_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


class _HostPage(BaseHTTPRequestHandler):
    """Serves the page that plays Zendesk (set as `html` on the server), like the CRM's own origin would."""

    def do_GET(self) -> None:  # noqa: N802  # http.server's name
        body = self.server.html.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def host() -> Iterator[ThreadingHTTPServer]:
    """The host page's own server on a free port (Chromium lets a local page frame the local crmhub)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostPage)
    server.html = ""  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 460, "height": 960})
            yield page
        finally:
            browser.close()


def _conversation(panel: Panel) -> None:
    """A generated run: a customer writes; a stranger claims the customer's number (a suggestion)."""
    panel.tw.receive_message(CUSTOMER, OURS, "Where is my parcel?")
    panel.tw.receive_message(STRANGER, OURS, "Hello, I'm +1 415 555 0123 on my other phone")
    panel.hub.sync_once()


def _work_in_the_panel(panel: Panel, page: Any, host: ThreadingHTTPServer, host_html: str, crm: str, actor: str,
                       reply: str) -> None:
    """Open the host page, wait for the timeline, confirm the suggestion, send `reply`; screenshots on the way."""
    host.html = host_html  # type: ignore[attr-defined]
    page.route(ZAF_SDK, lambda route: route.fulfill(path=BROWSER_DIR / "zaf_stub.js",
                                                    content_type="application/javascript"))
    page.goto(f"http://127.0.0.1:{host.server_address[1]}/record")
    sidebar = page.frame_locator("#sidebar")
    sidebar.locator("#timeline li", has_text="on my other phone").wait_for()
    sidebar.locator("#suggestions li").wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{crm}-panel.png")

    sidebar.locator("#suggestions button[data-action=confirm]").click()
    sidebar.locator("#sent", has_text="confirmed").wait_for()
    sidebar.locator("#suggestions").wait_for(state="hidden")  # the panel read the suggestions again
    with panel.hub.store.transaction() as session:
        [row] = session.scalars(select(LinkSuggestionRow))
        assert (row.status, row.decided_by) == ("confirmed", actor)

    sidebar.locator("#text").fill(reply)
    sidebar.locator("#send").click()
    sidebar.locator("#sent", has_text="Reply queued on sms").wait_for()
    sidebar.locator("#timeline li[data-kind=reply]", has_text=reply).wait_for()
    panel.hub.sync_once()
    panel.hub.sync_once()
    page.screenshot(path=ARTIFACTS / f"{crm}-panel-replied.png")
    sent = [m for m in panel.tw.snapshot()["messages"].values()
            if m["direction"] == "outbound-api" and m["body"] == reply]
    assert len(sent) == 1 and sent[0]["from"] == OURS


@pytest.mark.frame_ancestors("http://127.0.0.1:*")
def test_the_zendesk_sidebar_shows_the_timeline_confirms_a_suggestion_and_replies_once(
        panel: Panel, browser_page: Any, host: ThreadingHTTPServer) -> None:
    _conversation(panel)
    [ticket] = [t for t in panel.zd.tickets() if "other phone" in str(t.get("description"))]
    with HttpServer(panel.hub.webhook_app()) as crmhub:
        html = ((BROWSER_DIR / "zendesk_host.html").read_text().replace("__CRMHUB__", crmhub.url.rstrip("/"))
                .replace("__TOKEN__", panel.zendesk_token()).replace("__TICKET__", str(ticket["id"])))
        _work_in_the_panel(panel, browser_page, host, html, "zendesk", "agent 361 in zendesk",
                           "We found it: it leaves today.")


@pytest.mark.frame_ancestors("http://127.0.0.1:*")
def test_the_salesforce_canvas_panel_shows_the_timeline_confirms_a_suggestion_and_replies_once(
        panel: Panel, browser_page: Any, host: ThreadingHTTPServer) -> None:
    _conversation(panel)
    [task] = [t for t in panel.sf.records("Task") if "other phone" in str(t.get("Description"))]
    case = {"Id": task["WhatId"]}
    with HttpServer(panel.hub.webhook_app()) as crmhub:
        html = ((BROWSER_DIR / "salesforce_host.html").read_text().replace("__CRMHUB__", crmhub.url.rstrip("/"))
                .replace("__TOKEN__", panel.canvas(record=case["Id"])).replace("__RECORD__", case["Id"]))
        _work_in_the_panel(panel, browser_page, host, html, "salesforce",
                           "agent 005000000000001AAA in salesforce (alice@acme.test)", "Found it, it ships today.")
