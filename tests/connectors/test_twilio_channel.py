"""The Twilio channel against the emulator: paging, translation, errors through the one retry layer."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from crmhub.connectors._retry import Retrier, RetryPolicy
from crmhub.connectors.twilio import TwilioChannel
from crmhub.errors import AuthError
from crmhub.model import Channel, Direction, IdentityKind
from crmhub.sandbox import EmulatorServer, Fault
from crmhub.sandbox.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN

OURS = "+14155550100"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def channel(server: EmulatorServer, waits: list[float], token: str = DEFAULT_AUTH_TOKEN) -> TwilioChannel:
    retrier = Retrier(RetryPolicy(max_attempts=4), sleep=waits.append, rng=random.Random(1))
    return TwilioChannel(account_sid=DEFAULT_ACCOUNT_SID, auth_token=token, base_url=server.url,
                         page_size=2, retrier=retrier)


@pytest.fixture
def twilio(twilio_sandbox: EmulatorServer) -> Any:
    emulator: Any = twilio_sandbox.emulator
    emulator.add_number(OURS)
    for i in range(5):
        emulator.receive_message(f"+1415555012{i}", OURS, f"message {i}", at=START + timedelta(minutes=i))
    emulator.receive_message("whatsapp:+14155550130", f"whatsapp:{OURS}", "", media_urls=["https://x.test/a.jpg"],
                             at=START + timedelta(minutes=9))
    return emulator


def test_pages_translate_every_message_and_report_the_newest_time(twilio: Any, twilio_sandbox: EmulatorServer) -> None:
    pages = list(channel(twilio_sandbox, []).message_pages(None))
    assert [len(p.interactions) for p in pages] == [2, 2, 2]
    assert [p.last for p in pages] == [False, False, True]
    items = [i for p in pages for i in p.interactions]
    whatsapp = next(i for i in items if i.channel is Channel.WHATSAPP)
    assert (whatsapp.sender.kind, whatsapp.sender.value) == (IdentityKind.PHONE, "+14155550130")
    assert whatsapp.direction is Direction.INBOUND and len(whatsapp.media) == 1
    assert whatsapp.conversation_key == f"whatsapp:{OURS}:+14155550130"
    assert pages[-1].cursor == (START + timedelta(minutes=9)).isoformat()


def test_a_429_on_a_page_is_waited_out_then_the_poll_goes_on(twilio: Any, twilio_sandbox: EmulatorServer) -> None:
    twilio.faults.add(Fault("rate_limit", path="Messages", retry_after=7, times=1, skip=1))
    waits: list[float] = []
    pages = list(channel(twilio_sandbox, waits).message_pages(None))
    assert sum(len(p.interactions) for p in pages) == 6
    assert len(waits) == 1 and waits[0] >= 7


def test_a_reset_connection_is_retried(twilio: Any, twilio_sandbox: EmulatorServer) -> None:
    twilio.faults.add(Fault("reset", path="Messages", times=2))
    waits: list[float] = []
    assert sum(len(p.interactions) for p in channel(twilio_sandbox, waits).message_pages(None)) == 6
    assert len(waits) == 2


def test_wrong_credentials_are_an_auth_error_at_once(twilio: Any, twilio_sandbox: EmulatorServer) -> None:
    waits: list[float] = []
    with pytest.raises(AuthError, match="HTTP 401 code 20003"):
        list(channel(twilio_sandbox, waits, token="wrong").message_pages(None))
    assert waits == []
