"""Salesforce emulator (REST API v59.0, OAuth, SOAP login), laid out as in moto.

* `schema`  — the one table of objects and fields (describe, validation, SOQL)
* `soql`    — tokenizer, parser and evaluator of the SOQL subset
* `models`  — the backend: records, validation, cursors, sessions, allowance
* `errors`  — Salesforce's error shapes (REST, collections, OAuth, SOAP)
* `auth` / `responses` — handlers; `urls` — the route table
* `emulator` — `SalesforceEmulator`: the Emulator hooks and the seed API
"""

from __future__ import annotations

from crmhub.sandbox.salesforce.emulator import SalesforceEmulator
from crmhub.sandbox.salesforce.models import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    INTEGRATION_PASSWORD,
    INTEGRATION_USERNAME,
)
from crmhub.sandbox.salesforce.schema import API_VERSION

__all__ = [
    "API_VERSION", "DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "INTEGRATION_PASSWORD", "INTEGRATION_USERNAME",
    "SalesforceEmulator",
]
