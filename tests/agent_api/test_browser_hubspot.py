"""The HubSpot card in a real browser: the card's own JSX, bundled with esbuild against React and a stand-in for
`@hubspot/ui-extensions`, rendered in headless Chromium by a host page that plays HubSpot, including its
`hubspot.fetch` proxy, which signs each request with the app's client secret (v3) and adds the user's ids as
HubSpot's does. The card shows a generated customer's timeline, confirms a suggestion and sends a reply, which
reaches the Twilio emulator once.

Needs Chromium and npm (esbuild, React: installed once into ~/.cache/crmhub-tests/node); skips saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from sqlalchemy import select

from crmhub.agent_api.signing import hubspot_signature
from crmhub.plugins import package
from crmhub.serving import HttpServer
from crmhub.store.schema import LinkSuggestionRow
from tests.agent_api.chromium import BROWSER_DIR, chromium_page, host_server, html, needs_chromium, screenshot
from tests.agent_api.conftest import CUSTOMER, HUBSPOT_SECRET, OURS, PUBLIC_URL, STRANGER, Panel

pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
pytestmark = needs_chromium
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
NODE = Path(os.environ.get("CRMHUB_TEST_NODE", Path.home() / ".cache" / "crmhub-tests" / "node"))
NODE_PACKAGES = ["esbuild@0.24", "react@18.3", "react-dom@18.3"]
USER = {"userId": "77", "userEmail": "alice@acme.test", "appId": "9001", "portalId": "123"}


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """esbuild and React for bundling the card, installed once from the npm registry."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the HubSpot card is bundled with esbuild from the npm registry")
    modules = NODE / "node_modules"
    if not (modules / ".bin" / "esbuild").exists():
        NODE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["npm", "install", "--prefix", str(NODE), "--no-audit", "--no-fund", "--silent",
                               *NODE_PACKAGES], capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            pytest.skip(f"npm could not install {' '.join(NODE_PACKAGES)}: {done.stderr.strip()[-300:]}")
    return modules


def _bundle(modules: Path, crmhub_url: str, work: Path) -> bytes:
    """The card as HubSpot's build would ship it for `crmhub_url`, with the stand-in SDK."""
    built = package("hubspot", url=crmhub_url, plugins_dir=PLUGINS, out=work)
    with zipfile.ZipFile(built) as archive:
        archive.extractall(work / "project")
    out = work / "card.js"
    subprocess.run([str(modules / ".bin" / "esbuild"), str(work / "project/src/app/extensions/CrmhubCard.jsx"),
                    "--bundle", "--format=iife", "--jsx=automatic", f"--outfile={out}", "--log-level=warning",
                    f"--alias:@hubspot/ui-extensions={BROWSER_DIR / 'hubspot' / 'ui-extensions.jsx'}"],
                   check=True, env={**os.environ, "NODE_PATH": str(modules)}, timeout=120)
    return out.read_bytes()


def _signing_proxy(local_url: str) -> Any:
    """HubSpot's side of `hubspot.fetch`: adds the user's ids, signs (v3) with the client secret over the public
    URL, and sends it on; the public URL reaches the local crmhub as a load balancer in front of it would."""
    def forward(body: bytes) -> tuple[int, str, bytes]:
        asked = json.loads(body)
        url = f"{asked['url']}{'&' if '?' in asked['url'] else '?'}{urlencode(USER)}"
        assert url.startswith(PUBLIC_URL + "/")  # permittedUrls.fetch: only crmhub
        payload = b"" if asked.get("body") is None else json.dumps(asked["body"]).encode()
        stamp = str(int(datetime.now(UTC).timestamp() * 1000))
        headers = {"X-HubSpot-Signature-v3": hubspot_signature(HUBSPOT_SECRET, asked["method"], url, payload, stamp),
                   "X-HubSpot-Request-Timestamp": stamp, "Content-Type": "application/json"}
        answer = requests.request(asked["method"], local_url + url.removeprefix(PUBLIC_URL), data=payload or None,
                                  headers=headers, timeout=30)
        return answer.status_code, "application/json", answer.content

    return forward


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with chromium_page() as page:
        yield page


def test_the_hubspot_card_shows_the_timeline_confirms_a_suggestion_and_replies_once(
        panel: Panel, browser_page: Any, node_modules: Path, tmp_path: Path) -> None:
    panel.tw.receive_message(CUSTOMER, OURS, "Where is my parcel?")
    panel.tw.receive_message(STRANGER, OURS, "Hello, I'm +1 415 555 0123 on my other phone")
    panel.hub.sync_once()
    [contact] = [c for c in panel.hs.objects("contacts") if STRANGER in json.dumps(c["properties"])]

    with HttpServer(panel.hub.webhook_app()) as crmhub:
        card = _bundle(node_modules, PUBLIC_URL, tmp_path)
        host_html = (BROWSER_DIR / "hubspot" / "host.html").read_text().replace("__RECORD__", str(contact["id"]))
        routes = {("GET", "/record"): html(host_html),
                  ("GET", "/card.js"): lambda _b: (200, "application/javascript", card),
                  ("POST", "/hubspot-fetch"): _signing_proxy(crmhub.url.rstrip("/"))}
        with host_server(routes) as host:
            browser_page.goto(f"{host}/record")
            browser_page.get_by_text("on my other phone").wait_for()
            browser_page.get_by_role("button", name="Same customer").wait_for()
            screenshot(browser_page, "hubspot-card")

            browser_page.get_by_role("button", name="Same customer").click()
            browser_page.get_by_text("confirmed").first.wait_for()
            browser_page.get_by_role("button", name="Same customer").wait_for(state="detached")
            with panel.hub.store.transaction() as session:
                [row] = session.scalars(select(LinkSuggestionRow))
                assert (row.status, row.decided_by) == ("confirmed", "agent 77 in hubspot (alice@acme.test)")

            browser_page.locator("textarea[name=text]").fill("Found it: it ships today.")
            browser_page.get_by_role("button", name="Send").click()
            browser_page.get_by_text("Reply queued on sms").wait_for()
            panel.hub.sync_once()
            panel.hub.sync_once()
            screenshot(browser_page, "hubspot-card-replied")
    sent = [m for m in panel.tw.snapshot()["messages"].values()
            if m["direction"] == "outbound-api" and m["body"] == "Found it: it ships today."]
    assert len(sent) == 1 and sent[0]["from"] == OURS
