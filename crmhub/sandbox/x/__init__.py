"""X (Twitter) API v2 emulator; see docs/sandbox/x.md.

Layers, as in moto: `models` (state and domain operations), `responses`
(handlers), `urls` (route table with auth and rate limits per endpoint),
`errors` (X's problem bodies), plus `fields` (fields, expansions, paging),
`oauth` (OAuth 1.0a signatures), `limits` (rate-limit windows) and
`webhooks` (Account Activity style delivery). `emulator` glues them.
"""

from __future__ import annotations

from crmhub.sandbox.x.emulator import XEmulator
from crmhub.sandbox.x.models import (
    DEFAULT_ACCESS_TOKEN,
    DEFAULT_ACCESS_TOKEN_SECRET,
    DEFAULT_ACCOUNT,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_BEARER_TOKEN,
    DEFAULT_CONSUMER_KEY,
    DEFAULT_CONSUMER_SECRET,
)

__all__ = [
    "DEFAULT_ACCESS_TOKEN",
    "DEFAULT_ACCESS_TOKEN_SECRET",
    "DEFAULT_ACCOUNT",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_BEARER_TOKEN",
    "DEFAULT_CONSUMER_KEY",
    "DEFAULT_CONSUMER_SECRET",
    "XEmulator",
]
