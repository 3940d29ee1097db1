"""Shapes and small pure helpers shared by the Zendesk backend modules.

Everything here is vendor vocabulary (field defaults, allowed values, the
timestamp format) with no state and no HTTP.
"""

from __future__ import annotations

import calendar
import html
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

Record = dict[str, Any]

SUBDOMAIN = "sandbox"
DEFAULT_AGENT_EMAIL = "agent@sandbox.zendesk.test"
DEFAULT_AGENT_NAME = "Sandbox Agent"
DEFAULT_API_TOKEN = "sandbox-token"
DEFAULT_GROUP_NAME = "Support"

STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_TYPES = ("problem", "incident", "question", "task")
ROLES = ("end-user", "agent", "admin")
IDENTITY_TYPES = ("email", "twitter", "facebook", "google", "phone_number", "agent_forwarding",
                  "any_channel", "foreign", "sdk", "messaging")
UNIQUE_IDENTITY_TYPES = ("email", "phone_number")
MAX_BATCH = 100

# Readable names of channels, as the ticket events export writes `via`.
VIA_NAMES = {"api": "Web service", "web": "Web form", "email": "Mail", "sms": "Text", "voice": "Voice",
             "twitter": "Twitter", "whatsapp": "WhatsApp", "native_messaging": "Messaging"}

USER_DEFAULTS: Record = {
    "alias": None, "active": True, "details": "", "notes": "", "locale": "en-US", "locale_id": 1,
    "time_zone": "Eastern Time (US & Canada)", "iana_time_zone": "America/New_York",
    "organization_id": None, "default_group_id": None, "photo": None, "shared": False,
    "shared_agent": False, "shared_phone_number": None, "signature": None, "suspended": False,
    "restricted_agent": False, "moderator": False, "only_private_comments": False,
    "ticket_restriction": None, "two_factor_auth_enabled": None, "verified": False,
    "role_type": None, "custom_role_id": None, "report_csv": False, "last_login_at": None,
    "external_id": None, "email": None, "phone": None, "tags": [], "user_fields": {},
}
USER_WRITABLE = frozenset({
    "name", "email", "phone", "external_id", "role", "tags", "user_fields", "alias", "details", "notes",
    "organization_id", "time_zone", "locale", "verified", "suspended", "signature",
    "shared_phone_number", "default_group_id", "moderator", "only_private_comments", "ticket_restriction",
})

TICKET_DEFAULTS: Record = {
    "external_id": None, "type": None, "subject": None, "raw_subject": None, "description": None,
    "priority": None, "status": "new", "recipient": None, "submitter_id": None, "assignee_id": None,
    "organization_id": None, "group_id": None, "collaborator_ids": [], "follower_ids": [],
    "email_cc_ids": [], "forum_topic_id": None, "problem_id": None, "has_incidents": False,
    "is_public": True, "due_at": None, "tags": [], "custom_fields": [], "satisfaction_rating": None,
    "sharing_agreement_ids": [], "custom_status_id": None, "fields": [], "followup_ids": [],
    "ticket_form_id": None, "brand_id": None, "allow_channelback": False, "allow_attachments": True,
    "from_messaging_channel": False,
}
# Fields a PUT may change, each recorded as a Change event in the audit.
TICKET_TRACKED = ("subject", "status", "priority", "type", "group_id", "assignee_id", "requester_id",
                  "external_id", "due_at", "problem_id", "organization_id", "brand_id", "ticket_form_id")
# Fields shown as Create events when a ticket is born.
TICKET_CREATE_EVENTS = ("subject", "status", "priority", "type", "requester_id", "group_id", "assignee_id")


def iso(epoch: float) -> str:
    """Zendesk's timestamp format: ISO 8601 UTC, whole seconds, `Z`."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def epoch(timestamp: str) -> int:
    """Unix seconds of a timestamp written by `iso`."""
    return calendar.timegm(time.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ"))


def api_url(path: str) -> str:
    """The canonical `url` field of a record, on the vendor's host."""
    return f"https://{SUBDOMAIN}.zendesk.com/api/v2/{path}"


def default_via() -> Record:
    return {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}}


def normalise_tags(tags: Iterable[object]) -> list[str]:
    """Zendesk tags are lower case without spaces; "a b" makes two tags."""
    seen: list[str] = []
    for tag in tags:
        for part in str(tag).lower().split():
            if part not in seen:
                seen.append(part)
    return seen


def digits(phone: object) -> str:
    """The digits of a phone number, so "+1 (555) 010-0100" matches "+15550100100"."""
    return re.sub(r"\D", "", str(phone or ""))


def comment_bodies(spec: Mapping[str, Any]) -> tuple[str, str, str]:
    """(body, html_body, plain_body) from a comment given as `body` or `html_body`."""
    if spec.get("html_body"):
        markup = str(spec["html_body"])
        plain = html.unescape(re.sub(r"<[^>]+>", "", markup)).strip()
        return plain, markup, plain
    body = str(spec.get("body") or "")
    markup = '<div class="zd-comment" dir="auto">{}</div>'.format(html.escape(body).replace("\n", "<br>"))
    return body, markup, body


def public_view(record: Mapping[str, Any]) -> Record:
    """A stored record without its private bookkeeping keys (those starting with `_`)."""
    return {key: value for key, value in record.items() if not key.startswith("_")}
