"""The Twilio emulator's Content Templates on Messages.json (`ContentSid`, `ContentVariables`), through the SDK.

As Twilio's reference has it: a template renders with the variables given
(its samples for the rest); an approved WhatsApp template goes out of the
24-hour window where free text fails with 63016; a ContentSid not of the
`HX` + 32 hex form, unknown or another account's is 21655; ContentVariables
that are not a JSON object of non-empty strings are 21656; variables
without a ContentSid are 21654.
"""

from __future__ import annotations

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from crmhub.sandbox import EmulatorServer
from crmhub.sandbox.twilio import TwilioEmulator
from tests.sandbox.test_twilio_conformance import sdk_client

OURS = "whatsapp:+14155550177"
CUSTOMER = "whatsapp:+14155550166"


@pytest.fixture
def emulator(twilio_sandbox: EmulatorServer) -> TwilioEmulator:
    em: TwilioEmulator = twilio_sandbox.emulator  # type: ignore[assignment]  # the twilio fixture
    em.add_number(OURS.removeprefix("whatsapp:"))
    return em


@pytest.fixture
def client(twilio_sandbox: EmulatorServer, emulator: TwilioEmulator) -> Client:
    return sdk_client(twilio_sandbox.url)


def test_an_approved_template_renders_and_goes_out_of_the_window_where_free_text_fails(
        emulator: TwilioEmulator, client: Client) -> None:
    sid = emulator.add_content("waiting", "Hi {{1}}, case {{2}} has an answer.", {"1": "there", "2": "0"})
    sent = client.messages.create(to=CUSTOMER, from_=OURS, content_sid=sid, content_variables='{"2": "4242"}')
    free = client.messages.create(to=CUSTOMER, from_=OURS, body="Any news?")
    assert sent.body == "Hi there, case 4242 has an answer."
    assert client.messages(sent.sid).fetch().status == "delivered"
    failed = client.messages(free.sid).fetch()
    assert (failed.status, failed.error_code) == ("failed", 63016)


def test_an_unapproved_template_is_free_text_to_whatsapp(emulator: TwilioEmulator, client: Client) -> None:
    sid = emulator.add_content("draft", "Hello {{1}}", {"1": "you"}, whatsapp_approved=False)
    sent = client.messages.create(to=CUSTOMER, from_=OURS, content_sid=sid)
    assert (client.messages(sent.sid).fetch().status, client.messages(sent.sid).fetch().error_code) == ("failed", 63016)


@pytest.mark.parametrize(("fields", "code"), [
    ({"content_sid": "HX123"}, 21655),
    ({"content_sid": "HX" + "0" * 32}, 21655),
    ({"content_variables": '{"1": "x"}'}, 21654),
    ({"content_sid": "OTHER", "content_variables": "not json"}, 21656),
    ({"content_sid": "OTHER", "content_variables": '{"1": ""}'}, 21656),
    ({"content_sid": "OTHER", "content_variables": '["x"]'}, 21656),
])
def test_bad_template_parameters_are_refused_as_twilio_does(emulator: TwilioEmulator, client: Client,
                                                            fields: dict[str, str], code: int) -> None:
    if fields.get("content_sid") == "OTHER":
        fields = fields | {"content_sid": emulator.add_content("ok", "Hi {{1}}", {"1": "you"})}
    with pytest.raises(TwilioRestException) as refused:
        client.messages.create(to=CUSTOMER, from_=OURS, **fields)
    assert (refused.value.status, refused.value.code) == (400, code)
    assert emulator.snapshot()["messages"] == {} or all(
        m["to"] != CUSTOMER or m["direction"] != "outbound-api" for m in emulator.snapshot()["messages"].values())
