"""Hostile mail never raises out of the parser: every message is an item, a skip or one dead letter."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from crmhub.connectors.email_parse import Read, Skipped, read_message
from crmhub.identities import email
from crmhub.model import Interaction, Malformed

OURS = email("support@crmhub.test")
HEADERS = ["From", "To", "Subject", "Message-ID", "In-Reply-To", "References", "Auto-Submitted", "Precedence",
           "Return-Path", "Content-Type", "Content-Transfer-Encoding", "Date", "X-Autoreply"]
VALUES = st.one_of(st.text(max_size=80), st.sampled_from([
    "<>", "no", "auto-replied", "bulk", "=?utf-8?q?=FF=FE?=", "multipart/report; report-type=delivery-status",
    "multipart/mixed; boundary=x", "text/html; charset=x-unknown", "base64", "quoted-printable",
    "Jane <jane@customers.test>", "\"a\\\" <b@c.d>\" <e@f.g>, ,,", "<a@b> <c@d", "@", "undisclosed-recipients:;"]))


def parse(raw: bytes) -> Read:
    return read_message(raw, ours=OURS, received=datetime.now(UTC), uid="1:1")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(HEADERS), VALUES), max_size=12), st.binary(max_size=400))
def test_any_headers_and_body_give_an_item_a_skip_or_a_dead_letter(headers: list[tuple[str, str]],
                                                                   body: bytes) -> None:
    raw = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("utf-8", "surrogateescape") + b"\r\n" + body
    result = parse(raw)
    assert isinstance(result, Interaction | Skipped | Malformed)
    if isinstance(result, Interaction):
        assert len(result.external_id) <= 128 and len(result.conversation_key) <= 255
        assert "\x00" not in result.sender.display


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_at_all(raw: bytes) -> None:
    assert isinstance(parse(raw), Interaction | Skipped | Malformed)


def test_a_huge_message_id_is_hashed_to_fit() -> None:
    raw = (f"From: jane@customers.test\r\nMessage-ID: <{'x' * 900}@customers.test>\r\n"
           f"References: <{'y' * 900}@customers.test>\r\n\r\nhi").encode()
    item = parse(raw)
    assert isinstance(item, Interaction)
    assert item.external_id.startswith("sha256:") and item.conversation_key.startswith("email:sha256:")
