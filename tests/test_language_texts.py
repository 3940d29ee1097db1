"""Texts crmhub writes itself speak the conversation's language, else the configured default (issue 19)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket

from crmhub.app import build_hub
from crmhub.config import load_config
from crmhub.connectors._http import build_session
from crmhub.sandbox import EmulatorServer
from tests.test_replies import settings_for

OURS = "+14155550100"


@pytest.fixture
def notes(zendesk_sandbox: EmulatorServer, twilio_sandbox: EmulatorServer, tmp_path: Path) -> Iterator[Any]:
    """Two opted-out customers (STOP, then a message: Russian; Chinese, which has no note text), an agent's reply
    to each; yields the private notes."""
    zd: Any = zendesk_sandbox.emulator
    tw: Any = twilio_sandbox.emulator
    zd.add_agent("alice@acme.test", "Alice", token="alice-token")
    zd.clock.advance(120)
    tw.add_number(OURS)
    start = datetime.now(UTC) - timedelta(hours=1)
    for n, (customer, text) in enumerate((("+14155550151", "Где мой заказ? Прошла уже неделя."),
                                          ("+14155550152", "我想取消订阅"))):
        tw.receive_message(customer, OURS, "STOP", at=start + timedelta(minutes=2 * n))
        tw.receive_message(customer, OURS, text, at=start + timedelta(minutes=2 * n + 1))
    settings = settings_for(tmp_path, {"zendesk": zendesk_sandbox.url, "twilio": twilio_sandbox.url},
                            ("zendesk", "twilio"))
    settings.write_text(settings.read_text() + "languages:\n  expected: [en, ru, es, zh]\n  default: es\n")
    with build_hub(load_config(settings)) as hub:
        for connector in hub.crms.values():
            connector.job_poll_first = 0.05  # type: ignore[union-attr]  # Zendesk jobs finish on the first read
        hub.sync_once()
        agent = Zenpy(subdomain="sandbox", email="alice@acme.test", token="alice-token",
                      session=build_session(base_url=zendesk_sandbox.url))
        for ticket in zd.tickets():
            agent.tickets.update(Ticket(id=ticket["id"], comment=Comment(body="Завтра / mañana", public=True)))
        zd.clock.advance(61)
        hub.sync_once()
    yield {t["requester_id"]: [c["body"] for c in zd.comments(t["id"]) if c["body"].startswith("crmhub")]
           for t in zd.tickets()}


def test_the_note_after_a_failed_reply_speaks_the_conversations_language_else_the_default(notes: Any) -> None:
    bodies = sorted(body for found in notes.values() for body in found)
    assert len(bodies) == 2, bodies
    [russian] = [b for b in bodies if b.startswith("crmhub: ответ выше не был отправлен")]
    [spanish] = [b for b in bodies if b.startswith("crmhub: la respuesta anterior no se envió")]
    assert "+14155550151" in russian and "+14155550152" in spanish
