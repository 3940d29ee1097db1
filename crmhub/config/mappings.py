"""The models of `mappings/identities.yaml`, `routing.yaml` and `history.yaml`.

Checks that need another key or file (a route's queue is declared, a CRM is
enabled in settings.yaml, rule names are unique) live in
`crmhub.config._checks`, which reports them at their YAML position.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, time, timedelta
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field, model_validator

from crmhub.config._types import (
    CHANNEL_KINDS,
    CODE_CHANNELS,
    DAYS,
    PHONE_REGION,
    IdentityValue,
    PositiveDuration,
    LanguageCode,
    Regex,
    Region,
    Scalar,
    Template,
    TextId,
    TimeOfDay,
    TimeZoneName,
    CodeText,
    check_region,
    one_or_many,
    problem,
)
from crmhub.config.settings import Model

IdentityKindName = Literal["phone", "email", "x_handle", "whatsapp_user"]
ChannelKind = Literal[CHANNEL_KINDS]  # type: ignore[valid-type]  # the registry's channel values
CodeChannel = Literal[CODE_CHANNELS]  # type: ignore[valid-type]  # the channels one-time codes go out on
_FULL_DAYS = {"monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu", "friday": "fri",
              "saturday": "sat", "sunday": "sun"}


def _day(value: object) -> object:
    if isinstance(value, str):
        text = value.strip().lower()
        return _FULL_DAYS.get(text, text)
    return value


Day = Annotated[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], BeforeValidator(_day)]
FieldName = Annotated[str, Field(min_length=1)]



# --- identities.yaml -------------------------------------------------------

class Blocked(Model):
    """Identity values shared by many people, never used to link persons."""

    values: list[IdentityValue] = Field(
        [], description="Phones (any format, E.164 after load), emails and @handles.",
        examples=[["+10000000000", "support@acme.com"]])
    patterns: list[Regex] = Field([], description="Regular expressions matched against the normalised value.",
                                  examples=[["^noreply@", "^\\+1555000"]])


class MatchFields(Model):
    """Which fields of one CRM object hold which identity kind."""

    keyed_by: ClassVar[str] = "identity kind"

    phone: list[FieldName] = Field([], description="Fields holding phone numbers.", examples=[["Phone", "MobilePhone"]])
    email: list[FieldName] = Field([], description="Fields holding email addresses.", examples=[["Email"]])
    x_handle: list[FieldName] = Field([], description="Fields holding X handles.", examples=[["X_Handle__c"]])
    whatsapp_user: list[FieldName] = Field(
        [], description="Fields holding WhatsApp business-scoped user ids (a user known by username, no phone).",
        examples=[["WhatsApp_User__c"]])

    def by_kind(self) -> dict[str, tuple[str, ...]]:
        """`{"phone": ("Phone", "MobilePhone"), ...}` for the kinds with fields."""
        return {kind: tuple(getattr(self, kind)) for kind in ("phone", "email", "x_handle", "whatsapp_user")
                if getattr(self, kind)}


class SalesforceObjects(Model):
    """Salesforce objects searched for a person."""

    Contact: MatchFields | None = Field(None, description="Contact fields.")
    Lead: MatchFields | None = Field(None, description="Lead fields.")


class ZendeskObjects(Model):
    """Zendesk objects searched for a person."""

    user: MatchFields | None = Field(None, description="User fields (custom ones as user_fields.NAME).")


class HubSpotObjects(Model):
    """HubSpot objects searched for a person."""

    contacts: MatchFields | None = Field(None, description="Contact properties.")


def _objects(match: Model) -> dict[str, MatchFields]:
    return {name: fields for name in type(match).model_fields if (fields := getattr(match, name)) is not None}


class SalesforceIdentity(Model):
    """How to find (and create) a person in Salesforce."""

    match: SalesforceObjects = Field(description="Per object, which fields hold which identity kind.",
                                     examples=[{"Contact": {"phone": ["Phone", "MobilePhone"], "email": ["Email"]}}])
    create_when_unmatched: Literal["none", "Contact", "Lead"] = Field(
        "none", description="Create this object for an unknown person (one of match's objects), or none.")

    def objects(self) -> dict[str, MatchFields]:
        """The matched objects by name."""
        return _objects(self.match)


class ZendeskIdentity(Model):
    """How to find (and create) a person in Zendesk."""

    match: ZendeskObjects = Field(description="Which user fields hold which identity kind.",
                                  examples=[{"user": {"phone": ["phone"], "email": ["email"]}}])
    create_when_unmatched: Literal["none", "user"] = Field("none", description="none or user.")

    def objects(self) -> dict[str, MatchFields]:
        """The matched objects by name."""
        return _objects(self.match)


class HubSpotIdentity(Model):
    """How to find (and create) a person in HubSpot."""

    match: HubSpotObjects = Field(description="Which contact properties hold which identity kind.",
                                  examples=[{"contacts": {"phone": ["phone", "mobilephone"], "email": ["email"]}}])
    create_when_unmatched: Literal["none", "contacts"] = Field("none", description="none or contacts.")

    def objects(self) -> dict[str, MatchFields]:
        """The matched objects by name."""
        return _objects(self.match)


class IdentityCrms(Model):
    """Matching per CRM (only CRMs enabled in settings.yaml)."""

    keyed_by: ClassVar[str] = "CRM"

    salesforce: SalesforceIdentity | None = Field(None, description="Salesforce matching.")
    zendesk: ZendeskIdentity | None = Field(None, description="Zendesk matching.")
    hubspot: HubSpotIdentity | None = Field(None, description="HubSpot matching.")


StatementAction = Literal["suggest", "confirm_by_code", "ignore", "join"]
STATEMENT_ACTIONS: tuple[str, ...] = ("suggest", "confirm_by_code", "ignore", "join")


class StatementCodes(Model):
    """One-time codes of `statements: confirm_by_code`."""

    expire_after: PositiveDuration = Field(timedelta(minutes=15), description="How long a code may be answered.")
    max_tries: int = Field(5, ge=1, le=20, description="Wrong answers from the claimed phone or address before its "
                                                       "code is void.")
    max_per_claim: int = Field(3, ge=1, le=10, description="Codes sent at most for one claim (the claim repeated "
                                                           "after a code expired sends another).")
    texts: dict[CodeChannel, CodeText] = Field(
        {}, description="The code's message per channel it goes out on, with {code} where the code goes; a channel "
                        "not named keeps its own text (English).",
        examples=[{"sms": "Your code is {code}. Reply with it from this phone to link it.",
                   "email": "Your code is {code}. Reply to this email with it to link this address."}])


class Statements(Model):
    """What an identity a customer states in a message does, per identity kind."""

    keyed_by: ClassVar[str] = "identity kind"

    phone: StatementAction = Field("suggest", description="A phone number written in a message.")
    email: StatementAction = Field("suggest", description="An email address written in a message.")
    x_handle: StatementAction = Field("suggest", description="An @handle after \"I'm\", \"my handle is\"... "
                                                              "in a message.")


def _every_kind(value: object) -> object:
    """`statements: suggest` is short for the same action for every kind."""
    if isinstance(value, str):
        if value not in STATEMENT_ACTIONS:
            raise problem("statement", f"unknown value {value!r}; use one of: {', '.join(STATEMENT_ACTIONS)}, or one "
                                       "per kind: {phone: suggest, email: suggest, x_handle: suggest}")
        return {kind: value for kind in Statements.model_fields}
    return value


StatementsOrOne = Annotated[Statements, BeforeValidator(_every_kind,
                                                        json_schema_input_type=StatementAction | Statements)]


class IdentityMappings(Model):
    """`mappings/identities.yaml`."""

    default_region: Region = Field("US", description="Region for phone numbers written without +country code, "
                                                     "here and in the CRMs' fields.")
    blocked: Blocked = Field(default_factory=Blocked, description="Values and patterns never used to link persons.")
    other_regions: list[Region] = Field([], description="Regions also tried, in order, for a number without "
                                                       "+country code that is not valid in default_region (a UK "
                                                       "`(0121) 496 0745` in a US org).", examples=[["GB"]])
    max_identities_per_kind: int = Field(5, ge=1, description="A person with more identities of one kind stops "
                                                              "growing and is flagged for review.")
    statements: StatementsOrOne = Field(
        default_factory=Statements,
        description="What an identity a customer states in a message (\"btw my number is ...\") does: suggest (a "
                    "link for an agent or admin to confirm, `crmhub links`), confirm_by_code (a suggestion, and a "
                    "one-time code sent to a claimed phone by SMS or a claimed email by email, where that channel is "
                    "enabled: answered from it, it confirms; X handles stay suggestions), ignore, or join "
                    "(unchecked: anyone could claim anyone's identity). One value for every kind, or one per kind.",
        examples=["suggest", {"phone": "confirm_by_code", "email": "suggest", "x_handle": "ignore"}])
    codes: StatementCodes = Field(default_factory=StatementCodes,
                                  description="One-time codes of statements: confirm_by_code.")
    crms: IdentityCrms = Field(default_factory=IdentityCrms, description="Per CRM, where identities live.")

    @model_validator(mode="wrap")
    @classmethod
    def _phone_region(cls, data: Any, handler: Any) -> Any:
        # Blocked phones are parsed in this file's default_region, a field of
        # the parent model, so it is handed down for the time of validation.
        region = check_region(data.get("default_region", "US")) if isinstance(data, Mapping) else "US"
        token = PHONE_REGION.set(region)
        try:
            return handler(data)
        finally:
            PHONE_REGION.reset(token)


# --- routing.yaml ----------------------------------------------------------

class BusinessHours(Model):
    """When the team works, in `timezone`."""

    days: list[Day] = Field(["mon", "tue", "wed", "thu", "fri"], description="Working days: mon..sun.")
    start: TimeOfDay = Field(time(8, 0), description="Opening time, HH:MM.")
    end: TimeOfDay = Field(time(18, 0), description="Closing time, HH:MM (after start).")


class SalesforceQueue(Model):
    """A Salesforce queue: the Case owner."""

    queue: str = Field(min_length=1, description="The queue's Group DeveloperName.", examples=["Support_Queue"])


class ZendeskQueue(Model):
    """A Zendesk group (and default priority)."""

    group: str = Field(min_length=1, description="Group name.", examples=["Support"])
    priority: Literal["low", "normal", "high", "urgent"] | None = Field(None, description="low, normal, high or urgent.")


class HubSpotQueue(Model):
    """A HubSpot pipeline stage (and owner)."""

    pipeline: TextId = Field(min_length=1, description="Ticket pipeline id.", examples=["0"])
    stage: TextId = Field(min_length=1, description="Pipeline stage id.", examples=["1"])
    owner: TextId | None = Field(None, description="Owner id, or null.")


class Queues(Model):
    """Queue names per CRM; rules may only use names declared here."""

    keyed_by: ClassVar[str] = "CRM"

    salesforce: dict[str, SalesforceQueue] = Field({}, description="Salesforce queues by name.",
                                                   examples=[{"support": {"queue": "Support_Queue"}}])
    zendesk: dict[str, ZendeskQueue] = Field({}, description="Zendesk groups by name.",
                                             examples=[{"support": {"group": "Support"}}])
    hubspot: dict[str, HubSpotQueue] = Field({}, description="HubSpot pipeline stages by name.",
                                             examples=[{"support": {"pipeline": "0", "stage": "1"}}])


class SalesforceRoute(Model):
    """Where an item goes in Salesforce."""

    queue: str = Field(description="A name declared under queues.salesforce.", examples=["support"])
    priority: str | None = Field(None, description="Case Priority picklist value (e.g. High).")


class ZendeskRoute(Model):
    """Where an item goes in Zendesk."""

    queue: str = Field(description="A name declared under queues.zendesk.", examples=["support"])
    priority: Literal["low", "normal", "high", "urgent"] | None = Field(None, description="Overrides the queue's priority.")
    tags: list[str] = Field([], description="Ticket tags to add.")


class HubSpotRoute(Model):
    """Where an item goes in HubSpot."""

    queue: str = Field(description="A name declared under queues.hubspot.", examples=["support"])
    priority: str | None = Field(None, description="hs_ticket_priority value (LOW, MEDIUM, HIGH).")


class Routes(Model):
    """One target per CRM (a CRM left out falls back to default)."""

    keyed_by: ClassVar[str] = "CRM"

    salesforce: SalesforceRoute | None = Field(None, description="Salesforce target.")
    zendesk: ZendeskRoute | None = Field(None, description="Zendesk target.")
    hubspot: HubSpotRoute | None = Field(None, description="HubSpot target.")

    def targets(self) -> dict[str, SalesforceRoute | ZendeskRoute | HubSpotRoute]:
        """The targets by CRM name."""
        return {name: route for name in type(self).model_fields if (route := getattr(self, name)) is not None}


class When(Model):
    """Conditions of a rule; all must hold (a list means any of its values)."""

    channel: one_or_many(ChannelKind) | None = Field(None, description=", ".join(CHANNEL_KINDS) + ".")
    direction: Literal["inbound", "outbound"] | None = Field(None, description="inbound or outbound.")
    text_matches: Regex | None = Field(None, description="Regular expression searched in the text.",
                                       examples=["(?i)refund|chargeback"])
    keywords: one_or_many(str) = Field([], description="Any of these words in the text (case-insensitive).")
    language: one_or_many(LanguageCode) | None = Field(
        None, description="ISO 639-1 codes of the detected language (settings `languages`).", examples=[["en", "es"]])
    contact: dict[str, Scalar] = Field({}, description="Contact fields (from the CRM mirror) and the value each must "
                                                       "have.", examples=[{"Tier__c": "gold"}])
    business_hours: bool | None = Field(None, description="true: only inside business hours; false: only outside.")
    case_open: bool | None = Field(None, description="true: only when a case/ticket is open; false: only when none is.")


class Rule(Model):
    """One routing rule."""

    name: str = Field(min_length=1, description="Unique name, shown by crmhub explain.", examples=["vip-customers"])
    when: When = Field(default_factory=When, description="Conditions (none: every item).")
    route: Routes = Field(description="Targets per CRM.", examples=[{"salesforce": {"queue": "vip"}}])
    tags: list[str] = Field([], description="Labels recorded with the decision.")


class RoutingRules(Model):
    """`mappings/routing.yaml`."""

    timezone: TimeZoneName = Field("UTC", description="IANA time zone of the business hours.")
    business_hours: BusinessHours = Field(default_factory=BusinessHours, description="Working days and hours.")
    queues: Queues = Field(default_factory=Queues, description="Queue names per CRM.")
    rules: list[Rule] = Field([], description="Ordered; the first match wins.")
    default: Routes = Field(description="Where everything else goes (every enabled CRM).",
                            examples=[{"salesforce": {"queue": "support"}}])
    contact_language: one_or_many(str) = Field(
        [], description="Contact fields (from the CRM mirror) holding the customer's language (en, en_US, pt-BR...); "
                        "the first one set breaks a tie when a message's own language is unclear.",
        examples=[["Language__c", "hs_language", "locale"]])

    @property
    def tzinfo(self) -> ZoneInfo:
        """The time zone of the business hours."""
        return ZoneInfo(self.timezone)

    def in_business_hours(self, moment: datetime) -> bool:
        """Whether `moment` (timezone-aware) falls inside the business hours."""
        local = moment.astimezone(self.tzinfo)
        hours = self.business_hours
        return DAYS[local.weekday()] in hours.days and hours.start <= local.time() < hours.end

    def contact_fields(self) -> frozenset[str]:
        """Contact fields the rules look at (the CRM mirrors must copy them)."""
        return frozenset(name for rule in self.rules for name in rule.when.contact) | frozenset(self.contact_language)


# --- history.yaml ----------------------------------------------------------

TemplateFields = dict[str, Template]


class SalesforceHistory(Model):
    """What crmhub writes into Salesforce (field API name -> template)."""

    task: TemplateFields = Field({"Subject": "{channel_label} {direction} from {sender}", "Description": "{text}"},
                                 description="The Task logged per interaction.")
    case: TemplateFields = Field({"Subject": "{channel_label} conversation with {sender}", "Origin": "{channel_label}"},
                                 description="The Case opened per conversation.")


class ZendeskHistory(Model):
    """What crmhub writes into Zendesk."""

    ticket: TemplateFields = Field({"subject": "{channel_label} conversation with {sender}"},
                                   description="The ticket opened per conversation.")


class HubSpotHistory(Model):
    """What crmhub writes into HubSpot."""

    ticket: TemplateFields = Field({"subject": "{channel_label} conversation with {sender}"},
                                   description="The ticket opened per conversation.")


class HistoryMappings(Model):
    """`mappings/history.yaml`: templates with {placeholders}."""

    keyed_by: ClassVar[str] = "CRM"

    salesforce: SalesforceHistory = Field(default_factory=SalesforceHistory, description="Salesforce records.")
    zendesk: ZendeskHistory = Field(default_factory=ZendeskHistory, description="Zendesk records.")
    hubspot: HubSpotHistory = Field(default_factory=HubSpotHistory, description="HubSpot records.")

    def render(self, crm: str, record: str, values: Mapping[str, object]) -> dict[str, str]:
        """The fields of `record` (task, case, ticket) of `crm`, templates filled from `values`.

        Placeholders without a value become empty text.
        """
        templates: dict[str, str] = getattr(getattr(self, crm), record)
        filled = _Blank({k: "" if v is None else str(v) for k, v in values.items()})
        return {field: template.format_map(filled) for field, template in templates.items()}


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


__all__ = [
    "Blocked", "BusinessHours", "HistoryMappings", "HubSpotHistory", "HubSpotIdentity", "HubSpotObjects",
    "HubSpotQueue", "HubSpotRoute", "IdentityCrms", "IdentityMappings", "MatchFields", "Queues", "Routes",
    "RoutingRules", "Rule", "SalesforceHistory", "SalesforceIdentity", "SalesforceObjects", "SalesforceQueue",
    "SalesforceRoute", "When", "ZendeskHistory", "ZendeskIdentity", "ZendeskObjects", "ZendeskQueue", "ZendeskRoute",
]
