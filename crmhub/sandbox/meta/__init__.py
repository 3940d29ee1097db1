"""Meta Graph API emulator (Messenger and Instagram messaging); see docs/sandbox/meta.md.

Layers, as in moto: `models` (state and domain operations, the messaging
windows), `graph` (the `fields` parameter and cursor paging), `webhooks`
(verification request and signed event delivery), and `emulator` (routes,
tokens, rate limits, seed actions).
"""

from __future__ import annotations

from crmhub.sandbox.meta.emulator import MetaEmulator
from crmhub.sandbox.meta.models import (
    DEFAULT_APP_SECRET,
    DEFAULT_IG_ID,
    DEFAULT_PAGE_ID,
    DEFAULT_PAGE_TOKEN,
    DEFAULT_VERIFY_TOKEN,
    GRAPH_VERSION,
)
from crmhub.sandbox.meta.webhooks import sign

__all__ = ["DEFAULT_APP_SECRET", "DEFAULT_IG_ID", "DEFAULT_PAGE_ID", "DEFAULT_PAGE_TOKEN", "DEFAULT_VERIFY_TOKEN",
           "GRAPH_VERSION", "MetaEmulator", "sign"]
