"""Zendesk Support API v2 emulator (see docs/sandbox/zendesk.md).

Layout, as in moto: `models.py` (records and domain operations), `jobs.py`
(bulk job state machine), `exports.py` (incremental exports), `search.py`
(the search language subset), `responses.py` (request handlers), `urls.py`
(route table), `errors.py` (vendor errors), `emulator.py` (auth, limits,
faults, seed API).
"""

from __future__ import annotations

from crmhub.sandbox.zendesk.emulator import ZendeskEmulator

__all__ = ["ZendeskEmulator"]
