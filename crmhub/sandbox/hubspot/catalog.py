"""Static facts of HubSpot's CRM that the emulator reproduces (data, no logic).

Everything here is taken from HubSpot's public API reference: object type ids
("Understanding the CRM"), the properties each object has out of the box, the
properties search and list return by default ("Search the CRM"), the
HubSpot-defined association type ids ("Associations v4", type id tables) and
the default ticket pipeline. Keeping them in one table makes the emulator's
behaviour easy to check against the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

PORTAL_ID = 24681357
APP_ID = 3141592  # the private app whose token is DEFAULT_TOKEN: the source of its writes in property history
DEFAULT_TOKEN = "sandbox-token"
BATCH_MAX_INPUTS = 100
LIST_DEFAULT_LIMIT = 10
LIST_MAX_LIMIT = 100
SEARCH_DEFAULT_LIMIT = 10
SEARCH_MAX_LIMIT = 200
SEARCH_MAX_RESULTS = 10_000
SEARCH_MAX_GROUPS = 5
SEARCH_MAX_FILTERS_PER_GROUP = 6
SEARCH_MAX_FILTERS = 18
ASSOCIATIONS_PAGE_LIMIT = 500
OWNERS_DEFAULT_LIMIT = 100
OWNERS_MAX_LIMIT = 500

# Rate limits of a private app with the API add-on (settable per sandbox).
TEN_SECOND_MAX = 190
DAILY_MAX = 1_000_000
SEARCH_PER_SECOND = 5
INTERVAL_MS = 10_000


@dataclass(frozen=True)
class ObjectType:
    """One CRM object type and the names HubSpot accepts for it in paths."""

    name: str  # plural API name, e.g. "contacts"
    singular: str  # "contact" (v4 paths, v3 association type names)
    type_id: str  # "0-1"
    label: str  # "CONTACT", as in HubSpot's batch error messages
    created: str  # property holding the creation time
    modified: str  # property holding the last modification time
    defaults: tuple[str, ...]  # properties returned when none are asked for
    searchable: tuple[str, ...]  # properties a search `query` looks into
    required: tuple[str, ...] = ()  # properties a create must carry

    @property
    def aliases(self) -> tuple[str, ...]:
        return (self.name, self.singular, self.type_id)

    @property
    def meta(self) -> tuple[str, ...]:
        """Properties HubSpot returns with every record, asked for or not."""
        return (self.created, self.modified, "hs_object_id")


_ENGAGEMENT_DEFAULTS = ("hs_createdate", "hs_lastmodifieddate", "hs_object_id")

OBJECT_TYPES: dict[str, ObjectType] = {
    t.name: t
    for t in (
        ObjectType("contacts", "contact", "0-1", "CONTACT", "createdate", "lastmodifieddate",
                   ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
                   ("firstname", "lastname", "email", "phone", "mobilephone", "company", "hs_additional_emails")),
        ObjectType("companies", "company", "0-2", "COMPANY", "createdate", "hs_lastmodifieddate",
                   ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
                   ("website", "phone", "name", "domain")),
        ObjectType("tickets", "ticket", "0-5", "TICKET", "createdate", "hs_lastmodifieddate",
                   ("content", "createdate", "hs_lastmodifieddate", "hs_object_id", "hs_pipeline",
                    "hs_pipeline_stage", "hs_ticket_category", "hs_ticket_priority", "subject"),
                   ("subject", "content", "hs_pipeline_stage", "hs_ticket_category"), ("hs_pipeline_stage",)),
        ObjectType("communications", "communication", "0-18", "COMMUNICATION", "hs_createdate",
                   "hs_lastmodifieddate", _ENGAGEMENT_DEFAULTS, ("hs_communication_body",),
                   ("hs_timestamp", "hs_communication_channel_type", "hs_communication_logged_from")),
        ObjectType("calls", "call", "0-48", "CALL", "hs_createdate", "hs_lastmodifieddate",
                   _ENGAGEMENT_DEFAULTS, ("hs_call_title", "hs_call_body"), ("hs_timestamp",)),
        ObjectType("notes", "note", "0-46", "NOTE", "hs_createdate", "hs_lastmodifieddate",
                   _ENGAGEMENT_DEFAULTS, ("hs_note_body",), ("hs_timestamp",)),
        ObjectType("emails", "email", "0-49", "EMAIL", "hs_createdate", "hs_lastmodifieddate",
                   _ENGAGEMENT_DEFAULTS, ("hs_email_subject", "hs_email_text"), ("hs_timestamp",)),
    )
}

ALIASES: dict[str, str] = {alias: t.name for t in OBJECT_TYPES.values() for alias in t.aliases}


def object_type(alias: str) -> ObjectType:
    """The object type named by a path segment ("contacts", "contact" or "0-1")."""
    return OBJECT_TYPES[ALIASES[alias]]


# ---- properties --------------------------------------------------------------
# (name, label, type, fieldType, options, hasUniqueValue, readOnlyValue)
PropertySpec = tuple[str, str, str, str, tuple[str, ...], bool, bool]

_DT = ("datetime", "date")
_READ_ONLY_META: tuple[PropertySpec, ...] = (
    ("hs_object_id", "Record ID", "number", "number", (), False, True),
    ("hs_lastmodifieddate", "Last modified date", *_DT, (), False, True),
)
_OWNER: PropertySpec = ("hubspot_owner_id", "Owner", "enumeration", "select", (), False, False)
_ENGAGEMENT_COMMON: tuple[PropertySpec, ...] = (
    ("hs_timestamp", "Activity date", *_DT, (), False, False),
    ("hs_createdate", "Create date", *_DT, (), False, True),
    _OWNER,
    *_READ_ONLY_META,
)

DEFAULT_PROPERTIES: dict[str, tuple[PropertySpec, ...]] = {
    "contacts": (
        ("email", "Email", "string", "text", (), True, False),
        ("firstname", "First name", "string", "text", (), False, False),
        ("lastname", "Last name", "string", "text", (), False, False),
        ("phone", "Phone number", "string", "phonenumber", (), False, False),
        ("mobilephone", "Mobile phone number", "string", "phonenumber", (), False, False),
        ("hs_whatsapp_phone_number", "WhatsApp phone number", "string", "phonenumber", (), False, False),
        ("twitterhandle", "Twitter username", "string", "text", (), False, False),
        ("company", "Company name", "string", "text", (), False, False),
        ("hs_additional_emails", "Additional email addresses", "string", "text", (), False, False),
        ("lifecyclestage", "Lifecycle stage", "enumeration", "radio",
         ("subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
          "evangelist", "other"), False, False),
        ("createdate", "Create date", *_DT, (), False, False),
        ("lastmodifieddate", "Last modified date", *_DT, (), False, True),
        ("hs_merged_object_ids", "Merged record IDs", "enumeration", "checkbox", (), False, True),
        _OWNER,
        *_READ_ONLY_META,
    ),
    "companies": (
        ("name", "Company name", "string", "text", (), False, False),
        ("domain", "Company domain name", "string", "text", (), False, False),
        ("phone", "Phone number", "string", "phonenumber", (), False, False),
        ("website", "Website URL", "string", "text", (), False, False),
        ("createdate", "Create date", *_DT, (), False, False),
        _OWNER,
        *_READ_ONLY_META,
    ),
    "tickets": (
        ("subject", "Ticket name", "string", "text", (), False, False),
        ("content", "Ticket description", "string", "textarea", (), False, False),
        ("hs_pipeline", "Pipeline", "enumeration", "select", (), False, False),
        ("hs_pipeline_stage", "Ticket status", "enumeration", "select", (), False, False),
        ("hs_ticket_priority", "Priority", "enumeration", "select", ("LOW", "MEDIUM", "HIGH", "URGENT"), False, False),
        ("hs_ticket_category", "Category", "enumeration", "checkbox",
         ("PRODUCT_ISSUE", "BILLING_ISSUE", "FEATURE_REQUEST", "GENERAL_INQUIRY"), False, False),
        ("source_type", "Source", "enumeration", "select", ("CHAT", "EMAIL", "FORM", "PHONE"), False, False),
        ("closed_date", "Close date", *_DT, (), False, False),
        ("createdate", "Create date", *_DT, (), False, False),
        _OWNER,
        *_READ_ONLY_META,
    ),
    "communications": (
        ("hs_communication_channel_type", "Channel type", "enumeration", "select",
         ("SMS", "WHATS_APP", "LINKEDIN_MESSAGE"), False, False),
        ("hs_communication_logged_from", "Logged from", "enumeration", "select", ("CRM",), False, False),
        ("hs_communication_body", "Body", "string", "textarea", (), False, False),
        *_ENGAGEMENT_COMMON,
    ),
    "calls": (
        ("hs_call_title", "Call title", "string", "text", (), False, False),
        ("hs_call_body", "Call notes", "string", "html", (), False, False),
        ("hs_call_direction", "Call direction", "enumeration", "select", ("INBOUND", "OUTBOUND"), False, False),
        ("hs_call_duration", "Call duration", "number", "number", (), False, False),
        ("hs_call_from_number", "From number", "string", "text", (), False, False),
        ("hs_call_to_number", "To number", "string", "text", (), False, False),
        ("hs_call_status", "Call status", "enumeration", "select",
         ("BUSY", "CALLING_CRM_USER", "CANCELED", "COMPLETED", "CONNECTING", "FAILED", "IN_PROGRESS",
          "MISSED", "NO_ANSWER", "QUEUED", "RINGING"), False, False),
        ("hs_call_recording_url", "Recording URL", "string", "text", (), False, False),
        ("hs_call_disposition", "Call outcome", "enumeration", "select", (), False, False),
        *_ENGAGEMENT_COMMON,
    ),
    "notes": (
        ("hs_note_body", "Note body", "string", "html", (), False, False),
        *_ENGAGEMENT_COMMON,
    ),
    # The emails API guide: direction, status, subject, text, html, attachments and headers are written;
    # the sender's and recipients' fields are read-only, filled from `hs_email_headers` (EMAIL_HEADER_FIELDS).
    "emails": (
        ("hs_email_direction", "Email direction", "enumeration", "select",
         ("EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL"), False, False),
        ("hs_email_status", "Email send status", "enumeration", "select",
         ("BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT"), False, False),
        ("hs_email_subject", "Email subject", "string", "text", (), False, False),
        ("hs_email_text", "Email body", "string", "textarea", (), False, False),
        ("hs_email_html", "Email HTML body", "string", "html", (), False, False),
        ("hs_attachment_ids", "Attachment IDs", "string", "text", (), False, False),
        ("hs_email_headers", "Email headers", "string", "textarea", (), False, False),
        ("hs_email_from_email", "From email", "string", "text", (), False, True),
        ("hs_email_from_firstname", "From first name", "string", "text", (), False, True),
        ("hs_email_from_lastname", "From last name", "string", "text", (), False, True),
        ("hs_email_to_email", "To email", "string", "text", (), False, True),
        ("hs_email_to_firstname", "To first name", "string", "text", (), False, True),
        ("hs_email_to_lastname", "To last name", "string", "text", (), False, True),
        *_ENGAGEMENT_COMMON,
    ),
}

# Read-only email properties HubSpot fills from `hs_email_headers` (a JSON string: `from` is one address
# object, `to` a list of them, each {"email", "firstName", "lastName"}): property -> (header, field).
# Several recipients are joined with `;`, as HubSpot joins multi-valued properties.
EMAIL_HEADER_FIELDS: dict[str, tuple[str, str]] = {
    "hs_email_from_email": ("from", "email"), "hs_email_from_firstname": ("from", "firstName"),
    "hs_email_from_lastname": ("from", "lastName"), "hs_email_to_email": ("to", "email"),
    "hs_email_to_firstname": ("to", "firstName"), "hs_email_to_lastname": ("to", "lastName"),
}

GROUP_NAMES: dict[str, str] = {
    "contacts": "contactinformation", "companies": "companyinformation", "tickets": "ticketinformation",
    "communications": "communication", "calls": "call", "notes": "note", "emails": "email",
}


# ---- associations ------------------------------------------------------------
@dataclass(frozen=True)
class AssociationType:
    """One HubSpot-defined association type (a direction between two objects)."""

    type_id: int
    from_type: str
    to_type: str
    label: str | None
    inverse: int
    v3_name: str  # the `type` v3 reads show for it, e.g. "contact_to_ticket"


# (from, to, unlabeled type id, inverse) from the v4 "association type ID values" tables.
_UNLABELED: tuple[tuple[str, str, int, int], ...] = (
    ("contacts", "companies", 279, 280),
    ("contacts", "tickets", 15, 16),
    ("contacts", "calls", 193, 194),
    ("contacts", "notes", 201, 202),
    ("contacts", "communications", 82, 81),
    ("contacts", "emails", 197, 198),
    ("companies", "tickets", 340, 339),
    ("companies", "calls", 181, 182),
    ("companies", "notes", 189, 190),
    ("companies", "communications", 88, 87),
    ("companies", "emails", 185, 186),
    ("tickets", "calls", 219, 220),
    ("tickets", "notes", 227, 228),
    ("tickets", "communications", 84, 83),
    ("tickets", "emails", 223, 224),
)
# Labeled HubSpot-defined types: the "primary company" pairs.
_PRIMARY: tuple[tuple[str, str, int, int], ...] = (
    ("contacts", "companies", 1, 2),
    ("tickets", "companies", 26, 25),
)


def _v3_name(from_type: str, to_type: str, suffix: str = "") -> str:
    return f"{OBJECT_TYPES[from_type].singular}_to_{OBJECT_TYPES[to_type].singular}{suffix}"


def _association_types() -> dict[int, AssociationType]:
    table: dict[int, AssociationType] = {}
    primary_pairs = {frozenset((a, b)) for a, b, _, _ in _PRIMARY}
    for a, b, forward, backward in _UNLABELED:
        # where a "primary" label exists, v3 calls the plain one "..._unlabeled"
        suffix = "_unlabeled" if frozenset((a, b)) in primary_pairs else ""
        table[forward] = AssociationType(forward, a, b, None, backward, _v3_name(a, b, suffix))
        table[backward] = AssociationType(backward, b, a, None, forward, _v3_name(b, a, suffix))
    for a, b, forward, backward in _PRIMARY:
        table[forward] = AssociationType(forward, a, b, "Primary", backward, _v3_name(a, b))
        table[backward] = AssociationType(backward, b, a, "Primary", forward, _v3_name(b, a))
    return table


ASSOCIATION_TYPES: dict[int, AssociationType] = _association_types()


def default_association(from_type: str, to_type: str) -> AssociationType | None:
    """The unlabeled HubSpot-defined type from one object to another, if any."""
    for spec in ASSOCIATION_TYPES.values():
        if spec.from_type == from_type and spec.to_type == to_type and spec.label is None:
            return spec
    return None


# ---- pipelines ---------------------------------------------------------------
SUPPORT_PIPELINE_STAGES: tuple[tuple[str, str, str], ...] = (
    ("1", "New", "OPEN"),
    ("2", "Waiting on contact", "OPEN"),
    ("3", "Waiting on us", "OPEN"),
    ("4", "Closed", "CLOSED"),
)

AUTH_HELP = ("Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
             "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")
