"""X's CRC answer and event signature: one HMAC, so the CRC side signs only X-shaped tokens."""

from __future__ import annotations

import json
import secrets

import pytest

from crmhub.connectors.x_signing import BadCrcToken, crc_response, signature, verify
from crmhub.sandbox.x.webhooks import sign as emulator_sign

SECRET = "consumer-secret"


def test_x_shaped_tokens_are_answered_as_x_expects() -> None:
    for token in (secrets.token_urlsafe(24), "Zm9vYmFyYmF6cXV4+/==", "a" * 128):
        assert crc_response(SECRET, token) == emulator_sign(SECRET, token.encode())


@pytest.mark.parametrize("token", ["", "short", "a" * 129, '{"for_user_id":"1"}', "abc def ghi", "abcdefgh\n",
                                   "ééééééééé", "abcdefgh%7B", json.dumps({"a": 1})])
def test_other_tokens_are_refused(token: str) -> None:
    with pytest.raises(BadCrcToken):
        crc_response(SECRET, token)


def test_verify_takes_only_the_signature_of_this_body_with_this_secret() -> None:
    body = b'{"for_user_id":"1"}'
    good = signature(SECRET, body)
    assert good == emulator_sign(SECRET, body) and verify(SECRET, body, good)
    assert not verify(SECRET, body + b" ", good)
    assert not verify("another-secret", body, good)
    assert not verify(SECRET, body, None) and not verify(SECRET, body, "")
    assert not verify(SECRET, body, good.replace("sha256=", "sha1="))
    assert not verify(SECRET, body, good + "\u00e9")  # not ASCII: refused, not an error
