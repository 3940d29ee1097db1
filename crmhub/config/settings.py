"""The models of `settings.yaml`: one frozen pydantic model per section.

Field names are the YAML keys; every model forbids unknown keys. Secrets
are `SecretRef`s (`env:NAME` / `file:PATH`), never inline values.
Requirements that span several keys (at least one CRM enabled, the fields
of the Salesforce password flow...) are checked by `crmhub.config._checks`,
which knows the YAML positions.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, ValidationInfo, create_model, field_validator, model_validator

from crmhub.channels import registry
from crmhub.config._model import BASE_URL_HELP, Model
from crmhub.config._types import is_loopback as _is_loopback
from crmhub.config._types import (
    CHANNELS,
    CRMS,
    Percent,
    Duration,
    LanguageCode,
    PositiveDuration,
    SecretRef,
    TextId,
    Url,
    format_duration,
    problem,
)

from crmhub.language import DEFAULT_MIN_CONFIDENCE

SANDBOX_HOST = "127.0.0.1"
# The sandbox emulators' fixed ports (crmhub.sandbox.DEFAULT_PORTS; a test keeps them equal).
SANDBOX_PORTS: dict[str, int] = {"salesforce": 8700, "zendesk": 8701, "hubspot": 8702, "twilio": 8703, "x": 8704,
                                 "meta": 8705, "mail": 8706, "mail-smtp": 8707, "mail-imap": 8708}
MIN_SANDBOX_PORT, MAX_PORT = 1024, 65535  # the sandbox never takes a privileged port


def base_port_problem(base: int) -> str | None:
    """Why the sandbox cannot use `base` as its first port (all its ports must fit in 1024..65535), or None."""
    last = MAX_PORT - len(SANDBOX_PORTS) + 1
    if MIN_SANDBOX_PORT <= base <= last:
        return None
    return (f"{base} does not fit: the {len(SANDBOX_PORTS)} sandbox ports {base}..{base + len(SANDBOX_PORTS) - 1} must lie in "
            f"{MIN_SANDBOX_PORT}..{MAX_PORT}; use a base port from {MIN_SANDBOX_PORT} to {last}")


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


# --- state, log, sandbox ---------------------------------------------------

class StateSettings(Model):
    """Where crmhub keeps its ledger, outbox, cursors and identity graph."""

    url: str = Field(
        "sqlite:///crmhub.db",
        description="SQLAlchemy URL of the state store: sqlite:///FILE (relative paths start at the settings "
                    "file's directory, or at $STATE_DIRECTORY when systemd sets it) or "
                    "postgresql+psycopg://USER@HOST:PORT/DB, without a password.",
        examples=["sqlite:///crmhub.db", "postgresql+psycopg://crmhub@db.internal:5432/crmhub"],
        validate_default=True,  # the default file is placed like a written one, not in whatever the cwd is
    )
    password: SecretRef | None = Field(
        None, description="Database password as a secret reference (PostgreSQL); kept out of the URL.",
        examples=["env:CRMHUB_DB_PASSWORD"])

    @field_validator("url", mode="plain")
    @classmethod
    def _check_url(cls, value: object, info: ValidationInfo) -> str:
        if not isinstance(value, str) or not value.strip():
            raise problem("state_url", "expected a database URL, e.g. sqlite:///crmhub.db or "
                                       "postgresql+psycopg://crmhub@localhost/crmhub")
        url = value.strip()
        scheme = url.partition("://")[0].lower() if "://" in url else ""
        if scheme == "sqlite":
            path = url[len("sqlite:///"):] if url.lower().startswith("sqlite:///") else ""
            if not path or path == ":memory:" or path.startswith("/"):
                return url
            base = Path((info.context or {}).get("base_dir", os.getcwd()))
            return "sqlite:///" + os.path.normpath(base / path)
        if scheme == "postgresql+psycopg":
            # The URL is never echoed: it may hold a password.
            if urlsplit(url).password is not None:
                raise problem("inline_db_password", "the URL holds a password (inline secret); remove it from the URL "
                                                    "and write state.password: env:VAR (e.g. env:CRMHUB_DB_PASSWORD)")
            return url
        if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
            raise problem("state_url", f"database URL scheme '{scheme}' is not supported; write postgresql+psycopg://... "
                                       "(crmhub ships the psycopg 3 driver)")
        shown_scheme = f"'{scheme}'" if scheme else "(none)"
        raise problem("state_url", f"unsupported database URL scheme {shown_scheme}; use sqlite:///crmhub.db "
                                   "or postgresql+psycopg://USER@HOST/DB")


class LogSettings(Model):
    """How crmhub logs (secrets and message bodies are never logged)."""

    level: Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)] = Field(
        "info", description="Lowest level written: debug, info, warning or error.")
    format: Annotated[Literal["console", "json"], BeforeValidator(_lower)] = Field(
        "console", description="console (for people) or json (one object per line, for log shippers).")


class SandboxSettings(Model):
    """Run against the local emulators instead of the real APIs."""

    enabled: bool = Field(
        False, description="When true, every base_url left empty points at the local sandbox emulator "
                           f"({SANDBOX_HOST}, ports 8700 salesforce, 8701 zendesk, 8702 hubspot, 8703 twilio, 8704 x, "
                           "8705 meta; 8706-8708 the mail server: control, SMTP, IMAP).")
    base_port: int | None = Field(
        None, description="First port of a sandbox started with `crmhub sandbox --base-port N` (salesforce N, "
                          "zendesk N+1, hubspot N+2, twilio N+3, x N+4, meta N+5, mail N+6, its SMTP N+7 and IMAP N+8). "
                          "Empty: 8700.")

    @field_validator("base_port")
    @classmethod
    def _five_ports_fit(cls, value: int | None) -> int | None:
        wrong = base_port_problem(value) if value is not None else None
        if wrong is not None:
            raise problem("port", wrong)
        return value

    def ports(self) -> dict[str, int]:
        """Each emulator's port: the fixed ones, or the same layout from `base_port`."""
        if self.base_port is None:
            return dict(SANDBOX_PORTS)
        return {api: self.base_port + i for i, api in enumerate(SANDBOX_PORTS)}


# --- CRMs ------------------------------------------------------------------

_BASE_URL = BASE_URL_HELP


class SalesforceAuth(Model):
    """OAuth 2.0 login of the connected app."""

    flow: Annotated[Literal["client_credentials", "password"], BeforeValidator(_lower)] = Field(
        "client_credentials", description="client_credentials (recommended) or password.")
    client_id: SecretRef = Field(description="Connected app consumer key.", examples=["env:SALESFORCE_CLIENT_ID"])
    client_secret: SecretRef = Field(description="Connected app consumer secret.",
                                     examples=["env:SALESFORCE_CLIENT_SECRET"])
    username: str | None = Field(None, description="Integration user (password flow only; plain text).",
                                 examples=["integration@acme.com"])
    password: SecretRef | None = Field(None, description="Integration user's password (password flow only; required then).",
                                       examples=["env:SALESFORCE_PASSWORD"])


class SalesforceBudget(Model):
    """How much of the org's API allowance crmhub may use."""

    daily_reserve: Percent = Field(
        0.2, description="Share of the org's rolling 24 h allowance left to other integrations: 20% or 0.2.")
    requests_per_minute: int = Field(600, ge=1, description="Pace crmhub's own calls to at most this many per minute "
                                     "(all daemons on one store together).")


class SalesforceSettings(Model):
    """One Salesforce org."""

    enabled: bool = Field(True, description="Set false to switch the CRM off and keep its settings "
                                            "(its secrets are then not read).")
    instance_url: Url = Field(description="The org's My Domain URL.", examples=["https://acme.my.salesforce.com"])
    base_url: Url | None = Field(None, description=_BASE_URL)
    api_version: TextId = Field("59.0", pattern=r"^\d{2,3}\.0$", description="REST API version, e.g. \"59.0\".")
    auth: SalesforceAuth = Field(description="OAuth login of the connected app.",
                                 examples=[{"client_id": "env:SALESFORCE_CLIENT_ID",
                                            "client_secret": "env:SALESFORCE_CLIENT_SECRET"}])
    batch_size: int = Field(200, ge=1, le=200, description="Records per sObject Collections call (1..200).")
    link_field: str = Field("Crmhub_Link__c", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,36}__c$",
                            description="Text custom field on Case where agents confirm or reject crmhub's link "
                                        "suggestions (\"confirm 12\" / \"reject 12\"; docs/identity.md).")
    budget: SalesforceBudget = Field(default_factory=SalesforceBudget, description="API allowance.")


class ZendeskAuth(Model):
    """API token (email + token) or OAuth token."""

    email: str | None = Field(None, description="Agent email the API token belongs to.", examples=["agent@acme.com"])
    token: SecretRef | None = Field(None, description="API token (with email).", examples=["env:ZENDESK_TOKEN"])
    oauth_token: SecretRef | None = Field(None, description="OAuth access token (instead of email + token).",
                                          examples=["env:ZENDESK_OAUTH_TOKEN"])


class ZendeskBudget(Model):
    """How much of the account's allowance crmhub may use."""

    requests_per_minute: int = Field(400, ge=1, description="Pace crmhub's calls to at most this many per minute "
                                     "(all daemons on one store together).")


class ZendeskSurveyFields(Model):
    """The custom ticket fields crmhub sets survey scores in (an admin creates them: Admin Center > Ticket fields)."""

    csat: int | None = Field(None, gt=0, description="Id of the Number ticket field for CSAT (1-5); null: none.")
    nps: int | None = Field(None, gt=0, description="Id of the Number ticket field for NPS (0-10); null: none.")


class ZendeskSettings(Model):
    """One Zendesk Support account."""

    enabled: bool = Field(True, description="Set false to switch the CRM off and keep its settings.")
    subdomain: str = Field(pattern=r"^[a-z0-9-]+$", description="The account's subdomain (acme for acme.zendesk.com).",
                           examples=["acme"])
    base_url: Url | None = Field(None, description=_BASE_URL)
    auth: ZendeskAuth = Field(description="email + token, or oauth_token.",
                              examples=[{"email": "agent@acme.com", "token": "env:ZENDESK_TOKEN"}])
    batch_size: int = Field(100, ge=1, le=100, description="Items per create_many/update_many job (1..100).")
    link_tag_prefix: str = Field("crmhub_", pattern=r"^[a-z0-9_]{1,40}$",
                                 description="Agents confirm or reject crmhub's link suggestion 12 with the ticket "
                                             "tag <prefix>confirm_12 / <prefix>reject_12 (docs/identity.md).")
    budget: ZendeskBudget = Field(default_factory=ZendeskBudget, description="API allowance.")
    survey_fields: ZendeskSurveyFields = Field(default_factory=lambda: ZendeskSurveyFields(), description=(
        "Ticket fields (Number type) that receive survey answers, by id: Zendesk's own satisfaction rating is "
        "good/bad and only the requester may set it."))


class HubSpotAuth(Model):
    """Private app access token."""

    access_token: SecretRef = Field(description="Private app access token.", examples=["env:HUBSPOT_TOKEN"])


class HubSpotBudget(Model):
    """How much of the app's and account's allowance crmhub may use."""

    requests_per_10s: int = Field(100, ge=1, description="Burst limit: calls per 10 seconds "
                                  "(all daemons on one store together).")
    daily: int = Field(250_000, ge=1, description="Calls per day (HubSpot's X-HubSpot-RateLimit-Daily header, "
                                                  "when sent, wins).")
    daily_reserve: Percent = Field(
        0.2, description="Share of the daily allowance left to other integrations: 20% or 0.2.")


class HubSpotSettings(Model):
    """One HubSpot account."""

    enabled: bool = Field(True, description="Set false to switch the CRM off and keep its settings.")
    base_url: Url | None = Field(None, description=_BASE_URL)
    auth: HubSpotAuth = Field(description="Private app token.", examples=[{"access_token": "env:HUBSPOT_TOKEN"}])
    batch_size: int = Field(100, ge=1, le=100, description="Inputs per batch call (1..100).")
    link_property: str = Field("crmhub_link", pattern=r"^[a-z][a-z0-9_]{0,99}$",
                               description="Ticket text property (created if missing) where agents confirm or reject "
                                           "crmhub's link suggestions (\"confirm 12\" / \"reject 12\"; "
                                           "docs/identity.md).")
    budget: HubSpotBudget = Field(default_factory=HubSpotBudget, description="API allowance.")


class CrmSettings(Model):
    """The CRMs crmhub writes to, by name."""

    keyed_by: ClassVar[str] = "CRM"

    salesforce: SalesforceSettings | None = Field(None, description="Salesforce org.")
    zendesk: ZendeskSettings | None = Field(None, description="Zendesk account.")
    hubspot: HubSpotSettings | None = Field(None, description="HubSpot account.")

    def enabled_names(self) -> tuple[str, ...]:
        """Names of the CRMs present and enabled, in a fixed order."""
        return tuple(name for name in CRMS if (s := getattr(self, name)) is not None and s.enabled)


# --- channels --------------------------------------------------------------

def _channel_settings() -> type[_ChannelBase]:
    """`channels:`: one optional block per channel module, its model declared by the module (the registry)."""
    fields: dict[str, Any] = {
        name: (registry.settings_model(name) | None,
               Field(None, description=(registry.settings_model(name).__doc__ or "").strip().splitlines()[0]))
        for name in registry.names()}
    return create_model("ChannelSettings", __base__=_ChannelBase, __doc__=_ChannelBase.__doc__, **fields)


class _ChannelBase(Model):
    """The channels crmhub reads from and replies on, by name."""

    keyed_by: ClassVar[str] = "channel"

    if TYPE_CHECKING:
        def __getattr__(self, name: str) -> Any: ...  # a channel module's block (None when absent)

    def enabled_names(self) -> tuple[str, ...]:
        """Names of the channels present and enabled, in the registry's order."""
        return tuple(name for name in CHANNELS if (s := getattr(self, name)) is not None and s.enabled)


if TYPE_CHECKING:
    ChannelSettings = _ChannelBase  # each block is `Any` to the type checker: its model is the module's
else:
    ChannelSettings = _channel_settings()


# --- service ---------------------------------------------------------------

class WebhookSettings(Model):
    """The HTTP server receiving Twilio and X webhooks."""

    enabled: bool = Field(True, description="Serve webhooks (polling still reconciles anything missed).")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=1, le=65535, description="Port to listen on.")
    public_url: Url | None = Field(None, description="The URL the vendors call (behind your proxy); signatures are "
                                                     "checked against it.", examples=["https://hooks.acme.com"])


class OpsSettings(Model):
    """The ops listener: /metrics and /healthz, apart from the webhook port that vendors (and anyone) reach."""

    enabled: bool = Field(True, description="Serve /metrics and /healthz (with or without webhooks). Turn it off "
                                            "only where another crmhub process on this host serves them.")
    host: str = Field("127.0.0.1", description="Address to listen on. Another than loopback needs a token.")
    port: int = Field(9464, ge=0, le=65535, description="Port to listen on (0: any free port, logged at start).")
    token: SecretRef | None = Field(None, description="When set, requests need 'Authorization: Bearer <token>' "
                                                      "(401 otherwise). Required off loopback.",
                                    examples=["env:CRMHUB_OPS_TOKEN"])

    @model_validator(mode="after")
    def _token_off_loopback(self) -> OpsSettings:
        if self.enabled and self.token is None and not _is_loopback(self.host):
            raise problem("ops_exposed", f"host {self.host} is reachable from other machines and no token is set; "
                                         "set ops.token: env:CRMHUB_OPS_TOKEN, or ops.host: 127.0.0.1 "
                                         "(Prometheus on this host, or through a proxy)")
        return self


class ZendeskAppSettings(Model):
    """The crmhub sidebar app installed in Zendesk Support (plugins/zendesk)."""

    public_key: SecretRef = Field(description="The app's public key (PEM), which checks its signed-URL tokens: "
                                              "GET /api/v2/apps/{app_id}/public_key.pem.",
                                  examples=["file:/etc/crmhub/zendesk-app.pem"])
    installation_id: int = Field(ge=1, description="The app installation's id (Admin Center > Apps, or "
                                                   "GET /api/v2/apps/installations.json); tokens name it.")


class HubSpotAppSettings(Model):
    """The crmhub app card installed in HubSpot (plugins/hubspot)."""

    client_secret: SecretRef = Field(description="The app's client secret, which signs its cards' requests "
                                                 "(X-HubSpot-Signature-v3).", examples=["env:HUBSPOT_APP_SECRET"])


class SalesforceAppSettings(Model):
    """The crmhub component in Salesforce (plugins/salesforce), signed as a Canvas app."""

    consumer_secret: SecretRef = Field(description="The connected app's consumer secret, which signs Canvas "
                                                   "requests.", examples=["env:SALESFORCE_CANVAS_SECRET"])
    organization_id: str | None = Field(None, pattern=r"^00D[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$",
                                        description="Only requests from this org (15 or 18 characters).",
                                        examples=["00D5g000004XyZaEAK"])


class AgentApiSettings(Model):
    """The agents' API behind the CRM plugins, served on the webhook port under /agent (docs/agent-api.md)."""

    enabled: bool = Field(False, description="Serve /agent on the webhook receiver (needs webhooks.enabled).")
    token: SecretRef | None = Field(None, description="An ops API token: requests with 'Authorization: Bearer "
                                                      "<token>' act as ops (scripts, tests).",
                                    examples=["env:CRMHUB_AGENT_API_TOKEN"])
    session_secret: SecretRef | None = Field(None, description="Signs the sessions a verified plugin launch gets. "
                                                               "Unset: a new one per process (a restart signs "
                                                               "plugins out). Set it when several daemons serve.",
                                             examples=["env:CRMHUB_SESSION_SECRET"])
    session_ttl: PositiveDuration = Field(timedelta(hours=8), description="How long a plugin session lasts.")
    frame_ancestors: list[Annotated[str, Field(pattern=r"^https?://[^\s;,']+$")]] = Field(
        default_factory=list, description="Origins whose pages may frame the plugin pages. Empty: the enabled "
                                          "apps' CRMs (https://<subdomain>.zendesk.com, Salesforce's Lightning "
                                          "and Visualforce domains).",
        examples=[["https://acme.zendesk.com"]])
    zendesk: ZendeskAppSettings | None = Field(None, description="The Zendesk sidebar app.")
    hubspot: HubSpotAppSettings | None = Field(None, description="The HubSpot app card.")
    salesforce: SalesforceAppSettings | None = Field(None, description="The Salesforce component (Canvas).")

    @model_validator(mode="after")
    def _a_way_in(self) -> AgentApiSettings:
        if self.enabled and not (self.token or self.zendesk or self.hubspot or self.salesforce):
            raise problem("agent_api_closed", "enabled, but nobody can sign in: configure agent_api.zendesk, "
                                              "hubspot or salesforce for the plugins, or agent_api.token")
        return self




class CallsPerInteraction(Model):
    """Per CRM, the API calls per interaction a delivery worker aims at (`delivery.calls_per_interaction`)."""

    keyed_by: ClassVar[str] = "CRM"

    salesforce: float = Field(0.025, gt=0, le=10, description="Salesforce's target (0.025: a batch of 40 for one "
                                                               "call).")
    zendesk: float = Field(0.04, gt=0, le=10, description="Zendesk's target.")
    hubspot: float = Field(0.04, gt=0, le=10, description="HubSpot's target.")


class DeliverySettings(Model):
    """The outbox worker writing to the CRMs."""

    every: PositiveDuration = Field(timedelta(seconds=10), description="How often each CRM's delivery worker "
                                    "runs without being woken: retries and backoff come due on it.")
    latency_budget: Duration = Field(timedelta(seconds=1), description="How long a woken delivery worker may wait "
                                     "for more routed items before it writes, counted from the oldest waiting "
                                     "item's arrival; a full batch goes at once. 0s writes on every wake. The "
                                     "shortest wait: a batch too small for calls_per_interaction waits longer, "
                                     "up to max_wait.")
    calls_per_interaction: CallsPerInteraction = Field(
        default_factory=CallsPerInteraction,
        description="Per CRM, the API calls per interaction to aim at: after latency_budget a worker waits on while "
                    "the due items times this stay below the calls a batch has been costing (halved while the "
                    "CRM's daily allowance is low). Leave room for the mirror's and read-back calls.")
    max_wait: Duration = Field(timedelta(seconds=15), description="The longest a woken delivery worker waits for "
                               "a batch worth its calls, from the oldest waiting item's arrival; at least "
                               "latency_budget (equal to it: never wait past the budget).")
    batch_size: int | None = Field(None, ge=1, le=1000, description="A cap on outbox rows per batch; by default "
                                   "each CRM's maximum (Salesforce 200, Zendesk 100, HubSpot 100).")
    max_attempts: int = Field(8, ge=1, description="Rounds before a row goes to the dead-letter table; only a try "
                              "that got an answer or timed out counts, not one the daemon died during.")
    max_claims: int = Field(10, ge=1, description="Claims of one outbox row or reply in a row that ended with the "
                            "daemon stopped (killed, crashed) before any answer; the next claim dead-letters it, "
                            "so a row that crashes the daemon cannot do so forever.")
    lease: PositiveDuration = Field(timedelta(minutes=5), description="How long a claimed batch is reserved for "
                                    "its daemon; a daemon killed mid-batch leaves it to others after this.")


class ThreadSettings(Model):
    """How follow-up messages thread into a conversation's case."""

    reopen_window: Duration = Field(
        timedelta(days=3), description="A message sent at most this long after its conversation's case was closed "
                                       "in the CRM reopens that case; a later one opens a new case. Measured from "
                                       "the close time the CRM reports to the message's own time.")
class ReplySettings(Model):
    """Agents' replies, read from the CRMs and sent back over the customers' channels."""

    enabled: bool = Field(True, description="Read agents' public replies on crmhub's cases and send them to the "
                                            "customer over the channel the conversation came from.")
    every: PositiveDuration = Field(timedelta(seconds=15), description="How often to read new replies, send them "
                                    "and follow their delivery.")


WRITABLE_CHANNELS = registry.writable_values()  # the channel kinds crmhub can send a survey on
SurveyChannel = Literal[WRITABLE_CHANNELS]  # type: ignore[valid-type]

CSAT_TEXTS = {
    "en": "How did we do? Reply with a number from 1 (bad) to 5 (great).",
    "es": "¿Qué tal lo hicimos? Responda con un número del 1 (mal) al 5 (excelente).",
    "fr": "Comment s'est passé notre échange ? Répondez par un chiffre de 1 (mauvais) à 5 (excellent).",
    "de": "Wie waren wir? Antworten Sie mit einer Zahl von 1 (schlecht) bis 5 (sehr gut).",
    "pt": "Como nos saímos? Responda com um número de 1 (ruim) a 5 (ótimo).",
    "tr": "Nasıldık? 1 (kötü) ile 5 (harika) arasında bir sayıyla yanıtlayın.",
    "ru": "Как мы справились? Ответьте числом от 1 (плохо) до 5 (отлично).",
}
NPS_TEXTS = {
    "en": "How likely are you to recommend us to a friend? Reply 0 (not at all) to 10 (very likely).",
    "es": "¿Qué probabilidad hay de que nos recomiende a un amigo? Responda de 0 (nada) a 10 (mucha).",
    "fr": "Quelle est la probabilité que vous nous recommandiez à un ami ? Répondez de 0 (aucune) à 10 (très forte).",
    "de": "Wie wahrscheinlich empfehlen Sie uns einem Freund? Antworten Sie von 0 (gar nicht) bis 10 (sehr).",
    "pt": "Qual a probabilidade de nos recomendar a um amigo? Responda de 0 (nenhuma) a 10 (muita).",
    "tr": "Bizi bir arkadaşınıza önerme olasılığınız nedir? 0 (hiç) ile 10 (çok yüksek) arasında yanıtlayın.",
    "ru": "Насколько вероятно, что вы порекомендуете нас другу? Ответьте от 0 (никак) до 10 (очень).",
}


class CsatSettings(Model):
    """The satisfaction survey sent when a case closes (1-5)."""

    enabled: bool = Field(False, description="Ask the customer how it went when an agent closes their case.")
    channels: list[SurveyChannel] = Field(list(WRITABLE_CHANNELS), description="Channels a survey is sent on.")
    queues: list[str] | None = Field(None, description="Queues whose closed cases are surveyed (routing.yaml's "
                                                       "queue names); null: every queue.")
    texts: dict[LanguageCode, str] = Field(dict(CSAT_TEXTS), min_length=1, description=(
        "The question per language (the conversation's language, else `languages.default`, else any)."))
    window: PositiveDuration = Field(timedelta(days=3), description="How long after the survey an answer counts; "
                                     "a later message is an ordinary message.")


class NpsSettings(Model):
    """The net promoter question (0-10), asked of a person at most once per period, when one of their cases closes."""

    enabled: bool = Field(False, description="Ask the NPS question instead of the CSAT one when a person's case "
                                             "closes and they were not asked in the current period.")
    every: PositiveDuration = Field(timedelta(days=90), description="At most one NPS question per person in each "
                                    "period of this length (periods counted from 1970-01-01 UTC).")
    channels: list[SurveyChannel] = Field(list(WRITABLE_CHANNELS), description="Channels the question is sent on.")
    texts: dict[LanguageCode, str] = Field(dict(NPS_TEXTS), min_length=1, description="The question per language.")
    window: PositiveDuration = Field(timedelta(days=3), description="How long after the question an answer counts.")


class SurveySettings(Model):
    """CSAT and NPS surveys over the customer's own channel (issue 16)."""

    csat: CsatSettings = Field(default_factory=CsatSettings, description="Satisfaction survey on a case's close.")
    nps: NpsSettings = Field(default_factory=NpsSettings, description="Net promoter score, per person and period.")


class LanguageSettings(Model):
    """Which languages customers write in (detected per message) and the one crmhub falls back to."""

    expected: list[LanguageCode] = Field(
        [], description="Languages the detector chooses among (only these are considered; fewer is more accurate). "
                        "The languages routing.yaml's rules name are always added; detection is off when both are empty.",
        examples=[["en", "es", "tr", "az", "ru"]])
    min_confidence: float = Field(DEFAULT_MIN_CONFIDENCE, ge=0, le=1, description=(
        "Below this share of the expected languages' probability a message's language is unknown, unless the "
        "conversation's earlier messages or the contact's language field say which."))
    default: LanguageCode = Field("en", description="The language of texts crmhub sends when a conversation's "
                                                    "language is unknown or has no text of its own.")


class RetrySettings(Model):
    """The one retry layer around every API call."""

    max_attempts: int = Field(6, ge=1, description="Attempts per call, the first included.")
    initial_wait: PositiveDuration = Field(timedelta(seconds=1), description="Backoff before the second attempt "
                                                                             "(doubles each time, with jitter).")
    max_wait: PositiveDuration = Field(timedelta(minutes=5), description="Longest single wait.")
    max_total: PositiveDuration = Field(timedelta(minutes=15), description="Give up after this long in total.")


MAX_SHUTDOWN_GRACE = timedelta(minutes=10)


class RunSettings(Model):
    """The daemon (`crmhub run`)."""

    shutdown_grace: Duration = Field(
        timedelta(seconds=30),
        description="On SIGTERM/SIGINT, how long running jobs may take to finish their current batch before "
                    "crmhub exits anyway (0s: at once; at most 10m). Keep it below the service manager's stop "
                    "timeout (systemd TimeoutStopSec).")

    @field_validator("shutdown_grace")
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        if value > MAX_SHUTDOWN_GRACE:
            raise problem("duration", f"{format_duration(value)} is too long; use at most "
                                      f"{format_duration(MAX_SHUTDOWN_GRACE)} (e.g. 30s)")
        return value


class Settings(Model):
    """`settings.yaml`."""

    # Built by validation, like a written `state:`, so a default SQLite file is placed as a written one is.
    state: StateSettings = Field(default_factory=dict, validate_default=True,  # type: ignore[arg-type]
                                 description="State store.")
    log: LogSettings = Field(default_factory=LogSettings, description="Logging.")
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings, description="Local emulators.")
    crms: CrmSettings = Field(description="The CRMs (at least one enabled).",
                              examples=[{"salesforce": {"instance_url": "https://acme.my.salesforce.com"}}])
    channels: ChannelSettings = Field(description="The channels (at least one enabled).",
                                      examples=[{"twilio": {"account_sid": "AC...", "numbers": ["+14155550100"]}}])
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings, description="Webhook server.")
    ops: OpsSettings = Field(default_factory=OpsSettings, description="Ops listener (/metrics, /healthz).")
    agent_api: AgentApiSettings = Field(default_factory=AgentApiSettings,
                                        description="The agents' API for the CRM plugins (under /agent).")
    delivery: DeliverySettings = Field(default_factory=DeliverySettings, description="Outbox delivery.")
    threads: ThreadSettings = Field(default_factory=ThreadSettings, description="Threading into cases.")
    replies: ReplySettings = Field(default_factory=ReplySettings, description="Agents' replies back to customers.")
    languages: LanguageSettings = Field(default_factory=LanguageSettings, description="Customers' languages.")
    surveys: SurveySettings = Field(default_factory=SurveySettings, description="CSAT and NPS surveys.")
    retry: RetrySettings = Field(default_factory=RetrySettings, description="Retries of API calls.")
    run: RunSettings = Field(default_factory=RunSettings, description="The daemon.")
    mappings: str = Field("mappings/", min_length=1, description="Directory of identities.yaml, routing.yaml and "
                                                                 "history.yaml, relative to the settings file.")

    @model_validator(mode="after")
    def _agent_api_on_webhooks(self) -> Settings:
        if self.agent_api.enabled and not self.webhooks.enabled:
            raise problem("agent_api_unserved", "agent_api is enabled but it is served on the webhook receiver, "
                                                "which is off: set webhooks.enabled: true, or agent_api.enabled: "
                                                "false")
        return self

    def with_sandbox_urls(self) -> Settings:
        """A copy where, when `sandbox.enabled`, every empty base_url points at its local emulator.

        A block that reaches its sandbox otherwise than by one base URL (email: IMAP and SMTP ports) has
        an `in_sandbox(host, ports)` method returning the block pointed at `ports` (SandboxSettings.ports()).
        """
        if not self.sandbox.enabled:
            return self
        groups: dict[str, Any] = {}
        ports = self.sandbox.ports()
        for group in ("crms", "channels"):
            section = getattr(self, group)
            changed = {}
            for name in type(section).model_fields:
                block = getattr(section, name)
                in_sandbox = getattr(block, "in_sandbox", None)
                if in_sandbox is not None:
                    changed[name] = in_sandbox(SANDBOX_HOST, ports)
                elif block is not None and getattr(block, "base_url", "") is None:
                    changed[name] = block.model_copy(update={"base_url": f"http://{SANDBOX_HOST}:{ports[name]}"})
            groups[group] = section.model_copy(update=changed)
        return self.model_copy(update=groups)
