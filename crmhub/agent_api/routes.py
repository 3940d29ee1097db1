"""The agents' API app (mounted at `/agent` on the webhook receiver); its OpenAPI is at `/agent/openapi.json`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Form, Header, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from crmhub.agent_api import views
from crmhub.agent_api.auth import AgentAuth
from crmhub.agent_api.pages import add_pages
from crmhub.agent_api.signing import Agent
from crmhub.ops import OpsError
from crmhub.store import StateStore
from crmhub.store import replies as reply_store
from crmhub.store.schema import LedgerRow, ReplyRow, ThreadRow
from crmhub.sync.replies import addressed_reply

log = structlog.get_logger("crmhub.agent_api")
MAX_REPLY_CHARS = 10_000  # an X DM's limit, the longest of the channels; each channel refuses what it cannot take
CRMS = ("salesforce", "zendesk", "hubspot")

DecideFn = Callable[[Session, int, str], str]
"""Confirms or rejects link suggestion `id` as `actor`; returns what happened; raises OpsError when it cannot."""


class ReplyIn(BaseModel):
    conversation: str = Field(description="The conversation to answer (a key from the person's conversations).",
                              min_length=1, max_length=255)
    text: str = Field(description="What the customer gets.", min_length=1, max_length=MAX_REPLY_CHARS)
    crm: str | None = Field(None, description="With the ops token: the CRM whose case gets a note if it fails.")
    idempotency_key: str | None = Field(None, min_length=8, max_length=128,
                                        description="Instead of the Idempotency-Key header, for callers that "
                                                    "cannot set headers (HubSpot's hubspot.fetch).")


def create_agent_app(store: StateStore, auth: AgentAuth, *, confirm: DecideFn, reject: DecideFn,
                     crms: Sequence[str], on_reply: Callable[[], None] = lambda: None,
                     frame_ancestors: Sequence[str] = ()) -> FastAPI:
    """The API behind the agents' plugins.

    Args:
        confirm, reject: decide a link suggestion (`crmhub.ops.links`), as the calling agent.
        crms: the enabled CRMs (a record lookup names one of them).
        on_reply: called after a reply was queued (the daemon sends replies at once rather than at its interval).
        frame_ancestors: the origins whose pages may frame the plugin pages (Content-Security-Policy).
    """
    app = FastAPI(title="crmhub agents' API", version="1", docs_url=None, redoc_url=None,
                  description="What the CRM plugins show and do: the person behind a record, their timeline on "
                              "every channel, identity suggestions, replies. See docs/agent-api.md.")
    signed_in = Depends(auth)
    add_pages(app, auth, frame_ancestors)

    @app.post("/session/{crm}", summary="Exchange a CRM app's signed launch for a session token")
    def session(crm: str, token: Annotated[str | None, Form()] = None,
                signed_request: Annotated[str | None, Form()] = None) -> dict[str, Any]:
        signed = token if crm == "zendesk" else signed_request
        if not signed:
            raise HTTPException(401, "the launch carries no signed token (Zendesk: token, Salesforce: signed_request)")
        agent, issued = auth.launch(crm, signed)
        log.info("agent session opened", crm=agent.crm)
        return {"session": issued, "expires_in": int(auth.sessions.ttl.total_seconds()),
                "agent": {"crm": agent.crm, "user": agent.user, "name": agent.display}}

    @app.get("/api/v1/records/{crm}/{record_id}", summary="The person behind a CRM record (contact or case)")
    def record(crm: str, record_id: str, agent: Agent = signed_in) -> Any:
        if crm not in crms:
            raise HTTPException(404, f"{crm} is not one of crmhub's CRMs here ({', '.join(crms)})")
        with store.transaction() as s:
            person = views.person_of_record(s, crm, record_id)
            if person is None:
                raise HTTPException(404, "crmhub holds no customer for this record (no message of theirs yet)")
            return views.as_json(views.person_view(s, person))

    @app.get("/api/v1/persons/{person_id}", summary="A person: identities, CRM records, conversations")
    def person(person_id: int, agent: Agent = signed_in) -> Any:
        with store.transaction() as s:
            return views.as_json(views.person_view(s, _current(s, person_id)))

    @app.get("/api/v1/persons/{person_id}/timeline", summary="Every channel's interactions, newest first, paged")
    def timeline(person_id: int, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                 before: Annotated[str | None, Query(max_length=200)] = None, agent: Agent = signed_in) -> Any:
        with store.transaction() as s:
            try:
                page = views.timeline(s, _current(s, person_id), limit=limit, before=before)
            except views.BadCursor as exc:
                raise HTTPException(422, str(exc)) from None
            return {"items": views.as_json(page.items), "next": page.next}

    @app.get("/api/v1/persons/{person_id}/suggestions", summary="Pending identity suggestions about the person")
    def suggestions(person_id: int, agent: Agent = signed_in) -> Any:
        with store.transaction() as s:
            return {"suggestions": views.as_json(views.suggestions(s, _current(s, person_id)))}

    @app.post("/api/v1/suggestions/{suggestion_id}/confirm", summary="Confirm: the two identities are one customer")
    def confirmed(suggestion_id: int, agent: Agent = signed_in) -> Any:
        return _decide(confirm, suggestion_id, agent)

    @app.post("/api/v1/suggestions/{suggestion_id}/reject", summary="Reject: the claim is false")
    def rejected(suggestion_id: int, agent: Agent = signed_in) -> Any:
        return _decide(reject, suggestion_id, agent)

    def _decide(decide: DecideFn, suggestion_id: int, agent: Agent) -> Any:
        try:
            with store.transaction() as s:
                said = decide(s, suggestion_id, agent.actor)
        except OpsError as exc:
            raise HTTPException(409, str(exc)) from None
        log.info("link suggestion decided", suggestion=suggestion_id, crm=agent.crm)
        return {"result": said}

    @app.post("/api/v1/persons/{person_id}/replies", status_code=202,
              summary="Send a reply on the conversation's channel, once per Idempotency-Key")
    def reply(person_id: int, body: ReplyIn,
              idempotency_key: Annotated[str | None, Header(min_length=8, max_length=128)] = None,
              agent: Agent = signed_in) -> Any:
        idempotency_key = idempotency_key or body.idempotency_key
        if not idempotency_key:
            raise HTTPException(422, "send an Idempotency-Key header (or idempotency_key in the body): one per reply, "
                                     "so a retried request never sends it twice")
        crm = agent.crm if agent.crm in CRMS else body.crm
        if crm not in crms:
            raise HTTPException(422, f"crm: name the CRM whose case gets a note if the reply fails ({', '.join(crms)})")
        ref = reply_store.PANEL_REF + hashlib.sha256(f"{agent.crm}\0{agent.user}\0{idempotency_key}".encode()
                                                     ).hexdigest()[:40]
        with store.transaction() as s:
            current = _current(s, person_id)
            row = _queue_reply(s, current, body, crm, ref, agent, auth.clock())
            answer = {"id": row.id, "status": row.status, "channel": row.channel, "conversation": row.conversation_key}
            same = row.text == body.text and row.conversation_key == body.conversation
        if not same:
            raise HTTPException(409, "this Idempotency-Key was used for another reply; use a new key per reply")
        on_reply()
        log.info("panel reply queued", crm=crm, channel=answer["channel"])
        return JSONResponse(answer, status_code=202)

    @app.get("/api/v1/replies/{reply_id}", summary="A reply's delivery status")
    def reply_status(reply_id: int, agent: Agent = signed_in) -> Any:
        with store.transaction() as s:
            row = s.get(ReplyRow, reply_id)
            if row is None:
                raise HTTPException(404, "no such reply")
            return {"id": row.id, "status": row.status, "channel": row.channel, "error": row.last_error or "",
                    "sent_at": views.as_json(row.sent_at)}

    return app


def _current(session: Session, person_id: int) -> int:
    person = views.current_person(session, person_id)
    if person is None:
        raise HTTPException(404, "no such person")
    return person


def _queue_reply(session: Session, person: int, body: ReplyIn, crm: str, ref: str, agent: Agent,
                 now: datetime) -> ReplyRow:
    """Insert the reply once (a repeat with the same key finds the first) and return its row."""
    found = session.scalar(select(ReplyRow).where(ReplyRow.crm == crm, ReplyRow.reply_ref == ref))
    if found is not None:
        return found
    theirs = session.scalar(select(LedgerRow.id).where(LedgerRow.person_id == person,
                                                       LedgerRow.conversation_key == body.conversation).limit(1))
    if theirs is None:
        raise HTTPException(404, "the person has no such conversation")
    case_id = session.scalar(select(ThreadRow.record_id).where(ThreadRow.crm == crm,
                                                               ThreadRow.conversation_key == body.conversation))
    row = addressed_reply(session, body.conversation, crm=crm, reply_ref=ref, case_id=case_id or "", text=body.text,
                          author=agent.actor, written_at=now, now=now)
    if row is None:  # checked above: the ledger holds the conversation
        raise HTTPException(404, "the person has no such conversation")
    reply_store.insert(session, [row])
    found = session.scalar(select(ReplyRow).where(ReplyRow.crm == crm, ReplyRow.reply_ref == ref))
    assert found is not None
    return found
