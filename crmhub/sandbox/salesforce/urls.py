"""The route table: every emulated Salesforce endpoint, its handler and how it is billed.

`GET /_sandbox/routes` and docs/sandbox/salesforce.md are generated from /
checked against this table. `composite` marks the resources a Composite
subrequest may address.
"""

from __future__ import annotations

from dataclasses import dataclass

from crmhub.sandbox.salesforce.schema import API_PATH


@dataclass(frozen=True)
class Endpoint:
    methods: tuple[str, ...]
    rule: str
    handler: str  # method name on SalesforceEmulator
    billable: bool = True  # counts against DailyApiRequests (and needs a session)
    composite: bool = False  # allowed as a Composite subrequest


_P = API_PATH
ENDPOINTS: tuple[Endpoint, ...] = (
    # free and unauthenticated: versions, OAuth token, SOAP login
    Endpoint(("GET",), "/services/data/", "versions", billable=False),
    Endpoint(("POST",), "/services/oauth2/token", "oauth_token", billable=False),
    Endpoint(("POST",), "/services/Soap/u/<version>", "soap_login", billable=False),
    # REST API v59.0
    Endpoint(("GET",), f"{_P}/limits", "limits"),
    Endpoint(("GET",), f"{_P}/chatter/users/me", "chatter_me"),
    Endpoint(("GET",), f"{_P}/query", "query", composite=True),
    Endpoint(("GET",), f"{_P}/queryAll", "query_all", composite=True),
    Endpoint(("GET",), f"{_P}/query/<locator>", "query_more", composite=True),
    Endpoint(("GET",), f"{_P}/queryAll/<locator>", "query_more", composite=True),
    Endpoint(("GET",), f"{_P}/sobjects", "describe_global"),
    Endpoint(("GET",), f"{_P}/sobjects/<sobject>", "sobject_info"),
    Endpoint(("POST",), f"{_P}/sobjects/<sobject>", "create", composite=True),
    Endpoint(("GET",), f"{_P}/sobjects/<sobject>/describe", "describe"),
    Endpoint(("GET",), f"{_P}/sobjects/<sobject>/updated", "updated_ids"),
    Endpoint(("GET",), f"{_P}/sobjects/<sobject>/deleted", "deleted_records"),
    Endpoint(("GET",), f"{_P}/sobjects/<sobject>/<record_id>", "get_record", composite=True),
    Endpoint(("PATCH",), f"{_P}/sobjects/<sobject>/<record_id>", "update_record", composite=True),
    Endpoint(("DELETE",), f"{_P}/sobjects/<sobject>/<record_id>", "delete_record", composite=True),
    Endpoint(("GET",), f"{_P}/sobjects/<sobject>/<field>/<path:value>", "get_by_external_id", composite=True),
    Endpoint(("PATCH",), f"{_P}/sobjects/<sobject>/<field>/<path:value>", "upsert", composite=True),
    Endpoint(("POST",), f"{_P}/composite", "composite"),
    Endpoint(("POST",), f"{_P}/composite/sobjects", "collection_create", composite=True),
    Endpoint(("PATCH",), f"{_P}/composite/sobjects", "collection_update", composite=True),
    Endpoint(("DELETE",), f"{_P}/composite/sobjects", "collection_delete", composite=True),
    Endpoint(("GET", "POST"), f"{_P}/composite/sobjects/<sobject>", "collection_retrieve", composite=True),
    Endpoint(("PATCH",), f"{_P}/composite/sobjects/<sobject>/<field>", "collection_upsert", composite=True),
)
