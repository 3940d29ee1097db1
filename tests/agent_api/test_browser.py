"""The Zendesk sidebar and the Salesforce panel in a real browser: headless Chromium loads each as its CRM does
(Zendesk's signed-URL POST, Salesforce's Canvas signed request, into the frame of a host page that plays the
framework), shows a generated customer's timeline, confirms an identity suggestion and sends a reply, which
reaches the Twilio emulator once.

Debian's Chromium (`scripts/install-chromium.sh`, run by `make test`) driven by Playwright; screenshots go to
`test-artifacts/` (or $CRMHUB_TEST_ARTIFACTS). Skipped, saying why, where Chromium is not installed
(tests/agent_api/chromium.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from crmhub.agent_api.pages import ZAF_SDK
from crmhub.serving import HttpServer
from crmhub.store.schema import LinkSuggestionRow
from tests.agent_api.chromium import BROWSER_DIR, chromium_page, host_server, html, needs_chromium, screenshot
from tests.agent_api.conftest import CUSTOMER, OURS, STRANGER, Panel

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
pytestmark = needs_chromium


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with chromium_page() as page:
        yield page


def _conversation(panel: Panel) -> None:
    """A generated run: a customer writes; a stranger claims the customer's number (a suggestion)."""
    panel.tw.receive_message(CUSTOMER, OURS, "Where is my parcel?")
    panel.tw.receive_message(STRANGER, OURS, "Hello, I'm +1 415 555 0123 on my other phone")
    panel.hub.sync_once()


def _work_in_the_panel(panel: Panel, page: Any, host_html: str, crm: str, actor: str, reply: str) -> None:
    """Open the host page, wait for the timeline, confirm the suggestion, send `reply`; screenshots on the way."""
    page.route(ZAF_SDK, lambda route: route.fulfill(path=BROWSER_DIR / "zaf_stub.js",
                                                    content_type="application/javascript"))
    with host_server({("GET", "/record"): html(host_html)}) as host:
        page.goto(f"{host}/record")
        sidebar = page.frame_locator("#sidebar")
        sidebar.locator("#timeline li", has_text="on my other phone").wait_for()
        sidebar.locator("#suggestions li").wait_for()
        screenshot(page, f"{crm}-panel")

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
        screenshot(page, f"{crm}-panel-replied")
    sent = [m for m in panel.tw.snapshot()["messages"].values()
            if m["direction"] == "outbound-api" and m["body"] == reply]
    assert len(sent) == 1 and sent[0]["from"] == OURS


@pytest.mark.frame_ancestors("http://127.0.0.1:*")
def test_the_zendesk_sidebar_shows_the_timeline_confirms_a_suggestion_and_replies_once(
        panel: Panel, browser_page: Any) -> None:
    _conversation(panel)
    [ticket] = [t for t in panel.zd.tickets() if "other phone" in str(t.get("description"))]
    with HttpServer(panel.hub.webhook_app()) as crmhub:
        page = ((BROWSER_DIR / "zendesk_host.html").read_text().replace("__CRMHUB__", crmhub.url.rstrip("/"))
                .replace("__TOKEN__", panel.zendesk_token()).replace("__TICKET__", str(ticket["id"])))
        _work_in_the_panel(panel, browser_page, page, "zendesk", "agent 361 in zendesk",
                           "We found it: it leaves today.")


@pytest.mark.frame_ancestors("http://127.0.0.1:*")
def test_the_salesforce_canvas_panel_shows_the_timeline_confirms_a_suggestion_and_replies_once(
        panel: Panel, browser_page: Any) -> None:
    _conversation(panel)
    [task] = [t for t in panel.sf.records("Task") if "other phone" in str(t.get("Description"))]
    case = {"Id": task["WhatId"]}
    with HttpServer(panel.hub.webhook_app()) as crmhub:
        page = ((BROWSER_DIR / "salesforce_host.html").read_text().replace("__CRMHUB__", crmhub.url.rstrip("/"))
                .replace("__TOKEN__", panel.canvas(record=case["Id"])).replace("__RECORD__", case["Id"]))
        _work_in_the_panel(panel, browser_page, page, "salesforce",
                           "agent 005000000000001AAA in salesforce (alice@acme.test)", "Found it, it ships today.")
