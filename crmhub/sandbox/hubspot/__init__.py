"""Loopback emulator of HubSpot's CRM API v3 and associations v4 (see docs/sandbox/hubspot.md).

Layout, as in moto: `catalog` (HubSpot's static facts), `models` (backend:
state and domain operations), `search` (the search language), `limits`
(rate limits), `errors` (vendor error bodies), `responses` (handlers), `urls`
(route table) and `emulator` (the `Emulator` subclass with the seed API).
"""

from __future__ import annotations

from crmhub.sandbox.hubspot.emulator import HubSpotEmulator

__all__ = ["HubSpotEmulator"]
