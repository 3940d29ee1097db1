"""The plugin pages: what a CRM loads in its frame after a signed launch, the panel with a session inside.

Zendesk POSTs the sidebar's URL with its signed `token` (signed URLs);
Salesforce POSTs a Canvas app's URL with `signed_request`. crmhub checks the
signature and answers the panel (`static/panel.html`, `panel.js`) holding a
session, so the page's own calls to `/agent/api/v1` need no further signing.
The Content-Security-Policy lets only the CRM's own pages frame the panel
and only crmhub's scripts (and Zendesk's ZAF SDK) run in it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form, HTTPException
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from crmhub.agent_api.auth import AgentAuth

STATIC = Path(__file__).with_name("static")
ZAF_SDK = "https://static.zdassets.com/zendesk_app_framework_sdk/2.0/zaf_sdk.min.js"


def add_pages(app: FastAPI, auth: AgentAuth, frame_ancestors: Sequence[str]) -> None:
    """The launch pages and the panel's static files, on the agents' API app."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    template = (STATIC / "panel.html").read_text()
    policy = "; ".join((
        "default-src 'none'", f"script-src 'self' {ZAF_SDK}", "style-src 'self'", "connect-src 'self'",
        "img-src 'self'", "base-uri 'none'", "form-action 'none'",
        "frame-ancestors " + (" ".join(frame_ancestors) or "'none'")))

    def page(crm: str, session: str, record: str | None = None, framework: str = "") -> HTMLResponse:
        config = {"crm": crm, "session": session, "api": "/agent/api/v1", "record": record}
        # Inside <script type="application/json">: `<` escaped so no text can close the element.
        embedded = json.dumps(config).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        html = template.replace("__CONFIG__", embedded).replace("__FRAMEWORK__", framework)
        return HTMLResponse(html, headers={"Content-Security-Policy": policy, "Cache-Control": "no-store",
                                           "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"})

    @app.post("/zendesk/sidebar", response_class=HTMLResponse, include_in_schema=False)
    def zendesk_sidebar(token: Annotated[str | None, Form()] = None) -> HTMLResponse:
        if not token:
            raise HTTPException(401, "Zendesk signs this page's URL: set signedUrls in the app's manifest")
        _, session = auth.launch("zendesk", token)
        return page("zendesk", session, framework=f'<script src="{ZAF_SDK}"></script>')

    @app.post("/salesforce/canvas", response_class=HTMLResponse, include_in_schema=False)
    def salesforce_canvas(signed_request: Annotated[str | None, Form()] = None) -> HTMLResponse:
        if not signed_request:
            raise HTTPException(401, "Salesforce signs a Canvas app's request: set the connected app's Canvas "
                                     "access method to Signed Request (POST)")
        _, session = auth.launch("salesforce", signed_request)
        return page("salesforce", session, record=canvas_record(signed_request))


def canvas_record(signed_request: str) -> str | None:
    """The record a verified Canvas request was opened on (its environment's record, else a `recordId` parameter)."""
    envelope: Any = json.loads(base64.b64decode(signed_request.partition(".")[2]))
    environment = ((envelope.get("context") or {}).get("environment") or {})
    record = (environment.get("record") or {}).get("Id") or (environment.get("parameters") or {}).get("recordId")
    return str(record) if record else None


def default_ancestors(zendesk_subdomain: str | None, salesforce: bool) -> list[str]:
    """Who may frame the panel when `agent_api.frame_ancestors` is empty: the enabled CRMs' own pages."""
    out = [f"https://{zendesk_subdomain}.zendesk.com"] if zendesk_subdomain else []
    if salesforce:
        out += ["https://*.lightning.force.com", "https://*.my.salesforce.com", "https://*.visualforce.com"]
    return out
