"""The Twilio backend: accounts, numbers, messages, calls and recordings.

No HTTP here (moto's `models.py` layer): the handlers in `responses.py` parse
requests and call these operations; the seed API of `TwilioEmulator` calls
them directly. Everything lives in the emulator's `state` dict, in Twilio's
own wire shape (RFC 2822 dates, string counters, `uri`/`subresource_uris`),
plus a few private keys starting with `_` that `public()` strips.

Outbound messages move along a path of statuses (queued -> sending -> sent ->
delivered, or -> undelivered / failed for numbers marked undeliverable). The
`transitions` setting decides when a message takes its next step, as moto's
state manager does: `immediate` (right after creation), `reads` (one step
every N reads of the message through the API) or `manual` (only through
`advance_message`). Every step after creation POSTs the StatusCallback.
"""

from __future__ import annotations

import copy
import hmac
import json
import mimetypes
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from crmhub.sandbox._server import SandboxClock
from crmhub.sandbox.twilio import errors
from crmhub.sandbox.twilio.webhooks import Webhook, signature

API_VERSION = "2010-04-01"
ACCOUNTS_ROOT = f"/{API_VERSION}/Accounts"
API_HOST = "https://api.twilio.com"
DEFAULT_ACCOUNT_SID = "ACcafe0000000000000000000000000001"
DEFAULT_AUTH_TOKEN = "sandbox-auth-token"
DEFAULT_API_KEY_SECRET = "sandbox-api-secret"
WHATSAPP = "whatsapp"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# A WhatsApp user who hides their number behind a username: Meta's business-scoped user id (BSUID), which the
# sandbox takes as the `whatsapp:` address in place of the number (e.g. whatsapp:US.13491208655302741918).
CONTENT_SID = re.compile(r"^HX[0-9a-fA-F]{32}$")
PLACEHOLDER = re.compile(r"\{\{\s*([0-9A-Za-z_]+)\s*\}\}")
BSUID = re.compile(r"^[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}$")
MAX_BODY = 1600

TRANSITION_MODES = ("immediate", "reads", "manual")
MESSAGE_PATHS: dict[str, tuple[str, ...]] = {
    "delivered": ("queued", "sending", "sent", "delivered"),
    "undelivered": ("queued", "sending", "sent", "undelivered"),
    "failed": ("queued", "failed"),
}
DEFAULT_DELIVERY_ERROR = {"undelivered": 30003, "failed": 30008}
# Advanced Opt-Out keywords on SMS (https://help.twilio.com/articles/223134027): matched on the whole body.
OPT_OUT_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
WHATSAPP_WINDOW = timedelta(hours=24)  # free-form messages only within 24 h of the customer's last message
OUTSIDE_WINDOW = 63016
PRICES = {"sms": Decimal("0.00790"), "mms": Decimal("0.02000"), WHATSAPP: Decimal("0.00500")}
CALL_DIRECTIONS = ("inbound", "outbound-api", "outbound-dial")
CALL_STATUSES = ("queued", "ringing", "in-progress", "completed", "busy", "failed", "no-answer", "canceled")
CALL_PRICE_PER_MINUTE = Decimal("0.0085")
COUNTRY_CODES = {"+1": "US", "+44": "GB", "+33": "FR", "+34": "ES", "+49": "DE", "+52": "MX"}
# GSM 03.38 basic set: a body made only of these fits 160 characters a segment.
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)

Record = dict[str, Any]


# ---- small pure helpers -----------------------------------------------------
def new_sid(prefix: str) -> str:
    """A Twilio SID: two-letter prefix plus 32 hex digits."""
    return prefix + uuid.uuid4().hex


def rfc2822(moment: datetime) -> str:
    """Twilio's date format, e.g. "Mon, 16 Aug 2010 03:45:01 +0000"."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0))


def set_dates(record: Record, **moments: datetime | None) -> None:
    """Set date fields (RFC 2822, or null) and keep their epoch seconds privately in `_epoch`.

    Lists filter and sort on dates at every page read; comparing numbers keeps
    that cheap for 100k-record benchmarks, where parsing RFC 2822 would not.
    """
    epochs = record.setdefault("_epoch", {})
    for field, moment in moments.items():
        record[field] = rfc2822(moment) if moment is not None else None
        epochs[field] = moment.timestamp() if moment is not None else None


def utc(moment: datetime) -> datetime:
    """Aware UTC to the second (naive values are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0)


def split_address(address: str) -> tuple[str, str]:
    """("whatsapp", "+1415...") for "whatsapp:+1415...", ("sms", number) otherwise."""
    channel, sep, number = address.partition(":")
    return (channel, number) if sep else ("sms", address)


def segments(body: str) -> int:
    """How many SMS segments Twilio bills for `body` (GSM-7 or UCS-2)."""
    single, multi = (160, 153) if set(body) <= GSM7 else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // multi)


def display_number(number: str) -> str:
    """The `*_formatted` / friendly name form: "(415) 555-0100" in the NANP."""
    if re.fullmatch(r"\+1\d{10}", number):
        return f"({number[2:5]}) {number[5:8]}-{number[8:]}"
    return number


def country_of(number: str) -> str:
    return next((iso for prefix, iso in COUNTRY_CODES.items() if number.startswith(prefix)), "")


def public(record: Record) -> Record:
    """The record as the API shows it: private `_` keys removed."""
    return {key: value for key, value in record.items() if not key.startswith("_")}


def newest_first(rows: Iterable[Record], field: str) -> list[Record]:
    """Newest `field` first (else `date_created`; creation order breaks ties), as Twilio lists."""
    def key(row: Record) -> tuple[float, int]:
        epochs = row["_epoch"]
        return epochs.get(field) or epochs["date_created"], row["_seq"]

    return sorted(rows, key=key, reverse=True)


@dataclass(frozen=True)
class Bound:
    """One date filter value, as the first and last whole second it covers.

    "2026-01-05" covers that whole UTC day; "2026-01-05T08:00:00Z" one second.
    """

    first: float
    last: float

    @classmethod
    def day(cls, moment: datetime) -> Bound:
        start = datetime(moment.year, moment.month, moment.day, tzinfo=UTC).timestamp()
        return cls(start, start + 86399)

    @classmethod
    def instant(cls, moment: datetime) -> Bound:
        second = utc(moment).timestamp()
        return cls(second, second)


@dataclass(frozen=True)
class DateFilter:
    """`X`, `X<` and `X>` of a list (DateSent, StartTime...): on, on-or-before, on-or-after."""

    on: Bound | None = None
    before: Bound | None = None
    after: Bound | None = None

    def matches(self, epoch: float | None) -> bool:
        if epoch is None:
            return self.on is None and self.before is None and self.after is None  # e.g. not sent yet
        return ((self.on is None or self.on.first <= epoch <= self.on.last)
                and (self.before is None or epoch <= self.before.last)
                and (self.after is None or epoch >= self.after.first))


def initial_state(now: datetime) -> dict[str, Any]:
    """A fresh Twilio: the default sandbox account and nothing else."""
    state: dict[str, Any] = {
        "accounts": {}, "api_keys": {}, "numbers": {}, "services": {}, "messages": {}, "media": {},
        "calls": {}, "recordings": {}, "undeliverable": {}, "opted_out": {}, "whatsapp_sessions": {}, "contents": {},
        "webhooks": [], "seq": 0,
        "transitions": {"mode": "immediate", "reads": 1},
    }
    default = _account_record(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, "crmhub sandbox", now)
    state["accounts"][DEFAULT_ACCOUNT_SID] = default
    return state


def _account_record(sid: str, auth_token: str, friendly_name: str, now: datetime) -> Record:
    uri = f"{ACCOUNTS_ROOT}/{sid}"
    names = ("Messages", "Calls", "IncomingPhoneNumbers", "Recordings")
    return {
        "auth_token": auth_token, "date_created": rfc2822(now), "date_updated": rfc2822(now),
        "friendly_name": friendly_name, "owner_account_sid": sid, "sid": sid, "status": "active",
        "subresource_uris": {name.lower(): f"{uri}/{name}.json" for name in names},
        "type": "Full", "uri": f"{uri}.json",
    }


class TwilioBackend:
    """Domain operations on the emulator's state; callers hold the emulator lock."""

    def __init__(
        self, state: Callable[[], dict[str, Any]], clock: SandboxClock, send: Callable[[Webhook], object],
    ) -> None:
        self._state = state
        self._clock = clock
        self._send = send

    @property
    def state(self) -> dict[str, Any]:
        return self._state()

    def now(self) -> datetime:
        return utc(self._clock.now())

    def _next_seq(self) -> int:
        self.state["seq"] += 1
        return int(self.state["seq"])

    def _owned(self, collection: str, account_sid: str, sid: str) -> Record | None:
        row: Record | None = self.state[collection].get(sid)
        return row if row is not None and row["account_sid"] == account_sid else None

    def _rows(self, collection: str, account_sid: str, **equal: str | None) -> list[Record]:
        """Rows of the account whose fields equal every filter that was given."""
        wanted = {field: value for field, value in equal.items() if value is not None}
        return [row for row in self.state[collection].values()
                if row["account_sid"] == account_sid and all(row.get(f) == v for f, v in wanted.items())]

    # ---- accounts and credentials -------------------------------------------
    def add_account(self, sid: str | None, auth_token: str | None, friendly_name: str) -> str:
        sid = sid or new_sid("AC")
        if not re.fullmatch(r"AC[0-9a-fA-F]{32}", sid):
            raise ValueError(f"an account SID is AC plus 32 hex digits, got {sid!r}")
        self.state["accounts"][sid] = _account_record(sid, auth_token or uuid.uuid4().hex, friendly_name, self.now())
        return sid

    def add_api_key(self, account_sid: str, secret: str) -> str:
        self._account(account_sid)
        sid = new_sid("SK")
        self.state["api_keys"][sid] = {"sid": sid, "secret": secret, "account_sid": account_sid}
        return sid

    def auth_token(self, account_sid: str) -> str:
        return str(self._account(account_sid)["auth_token"])

    def get_account(self, sid: str) -> Record | None:
        account: Record | None = self.state["accounts"].get(sid)
        return account

    def _account(self, sid: str) -> Record:
        account = self.get_account(sid)
        if account is None:
            raise ValueError(f"no account {sid}; add_account() it first")
        return account

    def authorized(self, username: str, password: str, account_sid: str) -> bool:
        """Account SID + auth token, or API key SID + secret of the path's account."""
        account = self.state["accounts"].get(username)
        if account is not None:
            return username == account_sid and _same(account["auth_token"], password)
        key = self.state["api_keys"].get(username)
        return key is not None and key["account_sid"] == account_sid and _same(key["secret"], password)

    def rotate_credentials(self) -> None:
        """Every auth token and API key secret is replaced, as when a secondary token is promoted."""
        for account in self.state["accounts"].values():
            account["auth_token"] = uuid.uuid4().hex
        for key in self.state["api_keys"].values():
            key["secret"] = uuid.uuid4().hex

    # ---- numbers and messaging services -------------------------------------
    def add_number(self, phone: str, sms_url: str | None, voice_status_url: str | None, account_sid: str) -> str:
        if not E164.match(phone):
            raise ValueError(f"an IncomingPhoneNumber is E.164 like +14155550100, got {phone!r}")
        if self.find_number(phone) is not None:
            raise ValueError(f"{phone} is already an IncomingPhoneNumber")
        self._account(account_sid)
        sid, now = new_sid("PN"), rfc2822(self.now())
        uri = f"{ACCOUNTS_ROOT}/{account_sid}/IncomingPhoneNumbers/{sid}"
        self.state["numbers"][sid] = {
            "account_sid": account_sid, "address_requirements": "none", "address_sid": None, "api_version": API_VERSION,
            "beta": False, "bundle_sid": None, "capabilities": {"voice": True, "sms": True, "mms": True, "fax": False},
            "date_created": now, "date_updated": now, "emergency_address_sid": None,
            "emergency_address_status": "unregistered", "emergency_status": "Inactive",
            "friendly_name": display_number(phone), "identity_sid": None, "origin": "twilio", "phone_number": phone,
            "sid": sid, "sms_application_sid": "", "sms_fallback_method": "POST", "sms_fallback_url": "",
            "sms_method": "POST", "sms_url": sms_url or "", "status": "in-use",
            "status_callback": voice_status_url or "", "status_callback_method": "POST",
            "subresource_uris": {"assigned_add_ons": f"{uri}/AssignedAddOns.json"}, "trunk_sid": None,
            "uri": f"{uri}.json", "voice_application_sid": "", "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST", "voice_fallback_url": "", "voice_method": "POST",
            "voice_receive_mode": "voice", "voice_url": "", "_seq": self._next_seq(),
        }
        return sid

    def find_number(self, address: str) -> Record | None:
        """The IncomingPhoneNumber behind an address (a "whatsapp:" prefix is ignored)."""
        number = split_address(address)[1]
        return next((row for row in self.state["numbers"].values() if row["phone_number"] == number), None)

    def list_numbers(self, account_sid: str, phone_number: str | None, friendly_name: str | None) -> list[Record]:
        """PhoneNumber matches partially, `*` standing for any digit (as Twilio documents)."""
        pattern = re.compile(re.escape(phone_number).replace(r"\*", r"\d")) if phone_number else None
        rows = [row for row in self._rows("numbers", account_sid, friendly_name=friendly_name)
                if pattern is None or pattern.search(row["phone_number"])]
        return sorted(rows, key=lambda row: int(row["_seq"]))

    def get_number(self, account_sid: str, sid: str) -> Record | None:
        return self._owned("numbers", account_sid, sid)

    def add_messaging_service(self, numbers: Sequence[str], account_sid: str, friendly_name: str) -> str:
        sid = new_sid("MG")
        self.state["services"][sid] = {"sid": sid, "account_sid": account_sid, "friendly_name": friendly_name,
                                       "numbers": list(numbers)}
        return sid

    def mark_undeliverable(self, number: str, status: str, error_code: int | None) -> None:
        if status not in DEFAULT_DELIVERY_ERROR:
            raise ValueError(f"status must be one of {sorted(DEFAULT_DELIVERY_ERROR)}, got {status!r}")
        code = error_code or DEFAULT_DELIVERY_ERROR[status]
        if code not in errors.DELIVERY_ERRORS:
            raise ValueError(f"error_code must be one of {sorted(errors.DELIVERY_ERRORS)}")
        self.state["undeliverable"][split_address(number)[1]] = {"status": status, "error_code": code}

    # ---- outbound messages --------------------------------------------------
    def add_content(self, friendly_name: str, body: str, variables: dict[str, str] | None = None, *,
                    language: str = "en", whatsapp_approved: bool = True, account_sid: str = DEFAULT_ACCOUNT_SID) -> str:
        """A Content Template (HX...) as the Content Template Builder makes it: `body` with {{1}} placeholders,
        `variables` their sample values; `whatsapp_approved` as WhatsApp's review left it."""
        sid = new_sid("HX")
        self.state.setdefault("contents", {})[sid] = {
            "sid": sid, "account_sid": account_sid, "friendly_name": friendly_name, "language": language,
            "variables": dict(variables or {}), "types": {"twilio/text": {"body": body}},
            "whatsapp_approved": whatsapp_approved}
        return sid

    def create_message(
        self, account_sid: str, *, to: str, from_: str, service_sid: str, body: str,
        media_urls: Sequence[str], status_callback: str, content_sid: str = "", content_variables: str | None = None,
    ) -> Record:
        """POST Messages.json: validate as Twilio does, store, return the created record."""
        sender = self._check_outbound(account_sid, to, from_, service_sid, body or content_sid or content_variables or "",
                                      media_urls)  # a template needs no Body
        template = None
        if content_sid or content_variables is not None:
            template = self._content(account_sid, content_sid, content_variables)
            body = template["body"]
        outcome = self.state["undeliverable"].get(split_address(to)[1], {"status": "delivered", "error_code": None})
        approved = template is not None and template["whatsapp_approved"]
        if split_address(to)[0] == WHATSAPP and not approved and not self._in_whatsapp_window(to, sender):
            outcome = {"status": "failed", "error_code": OUTSIDE_WINDOW}  # accepted, then failed (asynchronous)
        path = (["accepted"] if service_sid else []) + list(MESSAGE_PATHS[outcome["status"]])
        message = self._new_message(account_sid, sender, to, body, "outbound-api", path[0], self.now(), media_urls)
        message.update({"messaging_service_sid": service_sid or None, "_path": path, "_reads": 0,
                        "_callback": status_callback or None, "_error": outcome["error_code"]})
        created = copy.deepcopy(message)
        if self.state["transitions"]["mode"] == "immediate":
            while self._step(message):
                pass
        return created

    def _check_outbound(self, account_sid: str, to: str, from_: str, service_sid: str, body: str,
                        media_urls: Sequence[str]) -> str:
        """Twilio's checks, in Twilio's order; returns the sender address to use."""
        if not to:
            raise errors.to_required()
        if not from_ and not service_sid:
            raise errors.from_required()
        if not body and not media_urls:
            raise errors.body_required()
        if len(body) > MAX_BODY:
            raise errors.body_too_long()
        channel, number = split_address(to)
        if not (E164.match(number) or (channel == WHATSAPP and BSUID.match(number))):
            raise errors.invalid_to(to)
        sender = from_ or self._pool_sender(account_sid, service_sid, channel)
        self._check_sender(account_sid, sender, channel)
        if channel != WHATSAPP and _pair(number, sender) in self.state.setdefault("opted_out", {}):
            raise errors.unsubscribed()
        return sender

    def _content(self, account_sid: str, content_sid: str, content_variables: str | None) -> dict[str, Any]:
        """The Content Template a message names, rendered with its ContentVariables (Twilio's 21654/21655/21656)."""
        if not content_sid:
            raise errors.content_sid_required()
        content = self.state.setdefault("contents", {}).get(content_sid)
        if not CONTENT_SID.match(content_sid) or content is None or content["account_sid"] != account_sid:
            raise errors.invalid_content_sid()
        values = dict(content["variables"])
        if content_variables is not None:
            try:
                given = json.loads(content_variables)
            except ValueError:
                raise errors.invalid_content_variables() from None
            if not isinstance(given, dict) or any(not isinstance(v, str) or not v for v in given.values()):
                raise errors.invalid_content_variables()
            values.update({str(k): v for k, v in given.items()})
        text = content["types"]["twilio/text"]["body"]
        rendered = PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)
        if PLACEHOLDER.search(rendered):  # a placeholder with no value at all
            raise errors.invalid_content_variables()
        return {"body": rendered, "whatsapp_approved": content["whatsapp_approved"]}

    def _in_whatsapp_window(self, to: str, sender: str) -> bool:
        """Whether the customer wrote to this sender in the last 24 h (WhatsApp's customer service window)."""
        last = self.state.setdefault("whatsapp_sessions", {}).get(_pair(split_address(to)[1], sender))
        return last is not None and self.now().timestamp() - float(last) <= WHATSAPP_WINDOW.total_seconds()

    def _note_inbound(self, from_: str, to: str, body: str, when: datetime) -> None:
        """What an inbound message changes for later sends: SMS opt-out keywords, the WhatsApp window."""
        channel, customer = split_address(from_)
        pair = _pair(customer, to)
        if channel == WHATSAPP:
            sessions = self.state.setdefault("whatsapp_sessions", {})
            sessions[pair] = max(float(sessions.get(pair, 0)), when.timestamp())
            return
        word = body.strip().upper()
        opted_out = self.state.setdefault("opted_out", {})
        if word in OPT_OUT_WORDS:
            opted_out[pair] = when.isoformat()
        elif word in OPT_IN_WORDS:
            opted_out.pop(pair, None)

    def _pool_sender(self, account_sid: str, service_sid: str, channel: str) -> str:
        """The sender a Messaging Service picks: the first number of its pool."""
        service = self.state["services"].get(service_sid)
        if service is None or service["account_sid"] != account_sid:
            raise errors.invalid_messaging_service(service_sid)
        if not service["numbers"]:
            raise errors.from_required()
        number = service["numbers"][0]
        return f"{WHATSAPP}:{number}" if channel == WHATSAPP else number

    def _check_sender(self, account_sid: str, sender: str, channel: str) -> None:
        from_channel, number = split_address(sender)
        if from_channel != channel:
            raise errors.channel_mismatch()
        owned = self.find_number(number)
        if owned is not None and owned["account_sid"] == account_sid:
            return
        if from_channel == WHATSAPP:
            raise errors.no_whatsapp_channel()
        raise errors.not_our_number(sender) if E164.match(number) else errors.invalid_from(sender)

    def _new_message(self, account_sid: str, from_: str, to: str, body: str, direction: str, status: str,
                     when: datetime, media_urls: Sequence[str]) -> Record:
        sid = new_sid("MM" if media_urls else "SM")
        uri = f"{ACCOUNTS_ROOT}/{account_sid}/Messages/{sid}"
        channel = split_address(to if direction != "inbound" else from_)[0]
        message: Record = {
            "account_sid": account_sid, "api_version": API_VERSION, "body": body, "date_created": None,
            "date_sent": None, "date_updated": None, "direction": direction, "error_code": None,
            "error_message": None, "from": from_, "messaging_service_sid": None, "num_media": str(len(media_urls)),
            "num_segments": str(segments(body)), "price": None, "price_unit": "USD", "sid": sid, "status": status,
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": to, "uri": f"{uri}.json", "_seq": self._next_seq(),
            "_kind": WHATSAPP if channel == WHATSAPP else "mms" if media_urls else "sms",
        }
        set_dates(message, date_created=when, date_updated=when, date_sent=None)
        self.state["messages"][sid] = message
        self._add_media(message, media_urls, when)
        return message

    def _add_media(self, message: Record, urls: Sequence[str], when: datetime) -> None:
        for url in urls:
            sid = new_sid("ME")
            media: Record = {
                "account_sid": message["account_sid"], "content_type": _content_type(url),
                "date_created": None, "date_updated": None, "parent_sid": message["sid"],
                "sid": sid, "uri": f"{message['uri'][:-len('.json')]}/Media/{sid}.json",
                "_source_url": url, "_seq": self._next_seq(),
            }
            set_dates(media, date_created=when, date_updated=when)
            self.state["media"][sid] = media

    def _price(self, message: Record) -> str:
        count = int(message["num_segments"]) if message["_kind"] == "sms" else 1
        return f"-{PRICES[message['_kind']] * count:.5f}"

    # ---- status transitions -------------------------------------------------
    def set_transitions(self, mode: str, reads: int = 1) -> None:
        if mode not in TRANSITION_MODES or reads < 1:
            raise ValueError(f"mode must be one of {TRANSITION_MODES} and reads >= 1")
        self.state["transitions"] = {"mode": mode, "reads": reads}

    def note_reads(self, messages: Iterable[Record]) -> None:
        """In `reads` mode, every N reads of an outbound message move it one step."""
        transitions = self.state["transitions"]
        if transitions["mode"] != "reads":
            return
        for message in messages:
            if "_path" not in message:
                continue
            message["_reads"] += 1
            if message["_reads"] >= transitions["reads"]:
                message["_reads"] = 0
                self._step(message)

    def advance_message(self, sid: str, status: str | None = None) -> str:
        """One step along the path, or every step up to `status` (which may be failed/undelivered)."""
        message = self.state["messages"].get(sid)
        if message is None or "_path" not in message:
            raise ValueError(f"no outbound message {sid}")
        if status is None:
            self._step(message)
            return str(message["status"])
        self._reroute(message, status)
        while message["status"] != status:
            self._step(message)
        return status

    def _reroute(self, message: Record, status: str) -> None:
        """Make `status` lie ahead on the path; a status never moves backwards."""
        path, here = message["_path"], message["_path"].index(message["status"])
        if status in path[here + 1:]:
            return
        if status not in DEFAULT_DELIVERY_ERROR or status in path[: here + 1] or here == len(path) - 1:
            raise ValueError(f"message {message['sid']} is {message['status']}; it cannot become {status}")
        message["_path"] = [*path[: here + 1], status]
        message["_error"] = message["_error"] or DEFAULT_DELIVERY_ERROR[status]

    def _step(self, message: Record) -> bool:
        path = message["_path"]
        here = path.index(message["status"])
        if here + 1 >= len(path):
            return False
        status, now = path[here + 1], self.now()
        message["status"] = status
        set_dates(message, date_updated=now)
        if status == "sent":
            set_dates(message, date_sent=now)
            message["price"] = self._price(message)
        if status in DEFAULT_DELIVERY_ERROR:
            code = message["_error"] or DEFAULT_DELIVERY_ERROR[status]
            message.update(error_code=code, error_message=errors.DELIVERY_ERRORS[code])
        if message["_callback"]:
            self._webhook("message-status", message, message["_callback"], self._status_params(message))
        return True

    def _status_params(self, message: Record) -> dict[str, str]:
        params = {
            "AccountSid": message["account_sid"], "ApiVersion": API_VERSION, "From": message["from"],
            "To": message["to"], "MessageSid": message["sid"], "MessageStatus": message["status"],
            "SmsSid": message["sid"], "SmsStatus": message["status"],
        }
        if message["messaging_service_sid"]:
            params["MessagingServiceSid"] = message["messaging_service_sid"]
        if message["error_code"] is not None:
            params["ErrorCode"] = str(message["error_code"])
        return params

    def _webhook(self, kind: str, resource: Record, url: str, params: dict[str, str]) -> None:
        """Sign with the owning account's auth token and hand over for delivery."""
        token = self.auth_token(resource["account_sid"])
        self._send(Webhook(kind, resource["sid"], url, params, signature(url, params, token)))

    # ---- reading messages and media -----------------------------------------
    def get_message(self, account_sid: str, sid: str) -> Record | None:
        return self._owned("messages", account_sid, sid)

    def list_messages(self, account_sid: str, to: str | None, from_: str | None, sent: DateFilter) -> list[Record]:
        rows = [row for row in self._rows("messages", account_sid, to=to, **{"from": from_})
                if sent.matches(row["_epoch"]["date_sent"])]
        return newest_first(rows, "date_sent")

    def list_media(self, account_sid: str, message_sid: str, created: DateFilter) -> list[Record]:
        rows = [row for row in self._rows("media", account_sid, parent_sid=message_sid)
                if created.matches(row["_epoch"]["date_created"])]
        return newest_first(rows, "date_created")

    def get_media(self, account_sid: str, message_sid: str, sid: str) -> Record | None:
        media = self._owned("media", account_sid, sid)
        return media if media is not None and media["parent_sid"] == message_sid else None

    # ---- inbound messages ---------------------------------------------------
    def receive_message(self, from_: str, to: str, body: str, media_urls: Sequence[str], at: datetime | None,
                        profile_name: str | None) -> str:
        """Store an inbound message and POST the number's sms_url, as a real SMS/WhatsApp would."""
        number = self.find_number(to)
        if number is None:
            raise ValueError(f"{to} is not an IncomingPhoneNumber of any account; add_number() it first")
        channel, address = split_address(from_)
        if not (E164.match(address) or (channel == WHATSAPP and BSUID.match(address))):
            raise ValueError(f"the sender must be E.164 (optionally whatsapp:), or whatsapp:<BSUID>, got {from_!r}")
        when = utc(at) if at is not None else self.now()
        message = self._new_message(number["account_sid"], from_, to, body, "inbound", "received", when, media_urls)
        self._note_inbound(from_, to, body, when)
        set_dates(message, date_sent=when)
        message["price"] = self._price(message)
        if number["sms_url"]:
            self._webhook("incoming-message", message, number["sms_url"], self._inbound_params(message, profile_name))
        return str(message["sid"])

    def _inbound_params(self, message: Record, profile_name: str | None) -> dict[str, str]:
        sid = message["sid"]
        params = {
            "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": message["account_sid"],
            "From": message["from"], "To": message["to"], "Body": message["body"], "NumMedia": message["num_media"],
            "NumSegments": message["num_segments"], "SmsStatus": "received", "ApiVersion": API_VERSION,
        }
        for index, media in enumerate(self.list_media(message["account_sid"], sid, DateFilter())[::-1]):
            params[f"MediaUrl{index}"] = API_HOST + media["uri"][: -len(".json")]
            params[f"MediaContentType{index}"] = media["content_type"]
        channel, sender = split_address(message["from"])
        if channel == WHATSAPP:  # a username-only user (BSUID) has no WhatsApp phone id to give
            params.update(ProfileName=profile_name or "")
            if E164.match(sender):
                params.update(WaId=sender.lstrip("+"))
        else:
            params.update(_geo("From", sender) | _geo("To", split_address(message["to"])[1]))
        return params

    # ---- calls and recordings -----------------------------------------------
    def add_call(self, from_: str, to: str, direction: str, status: str, duration: int, start: datetime | None,
                 recording: bool) -> str:
        """Store a finished (or ongoing) call and POST the number's voice status callback."""
        if direction not in CALL_DIRECTIONS or status not in CALL_STATUSES:
            raise ValueError(f"direction must be in {CALL_DIRECTIONS} and status in {CALL_STATUSES}")
        number = self.find_number(to if direction == "inbound" else from_)
        account_sid = number["account_sid"] if number else DEFAULT_ACCOUNT_SID
        begin = utc(start or self.now())
        call = self._new_call(account_sid, from_, to, direction, status, duration, begin, number)
        record = self._add_recording(call, begin, duration) if recording and status == "completed" else None
        if number is not None and number["status_callback"]:
            self._webhook("call-status", call, number["status_callback"], self._call_params(call, record))
        return str(call["sid"])

    def _new_call(self, account_sid: str, from_: str, to: str, direction: str, status: str, duration: int,
                  start: datetime, number: Record | None) -> Record:
        sid, done = new_sid("CA"), status == "completed"
        end = start + timedelta(seconds=duration) if done else None
        uri = f"{ACCOUNTS_ROOT}/{account_sid}/Calls/{sid}"
        names = ("Notifications", "Recordings", "Payments", "Events", "Siprec", "Streams", "Transcriptions",
                 "UserDefinedMessageSubscriptions", "UserDefinedMessages")
        call: Record = {
            "account_sid": account_sid, "annotation": None, "answered_by": None, "api_version": API_VERSION,
            "caller_name": None, "date_created": None, "date_updated": None,
            "direction": direction, "duration": str(duration) if done else None,
            "end_time": None, "forwarded_from": None, "from": from_,
            "from_formatted": display_number(from_), "group_sid": None, "parent_call_sid": None,
            "phone_number_sid": number["sid"] if number else None,
            "price": f"-{CALL_PRICE_PER_MINUTE * -(-duration // 60):.5f}" if done else None, "price_unit": "USD",
            "queue_time": "0", "sid": sid, "start_time": None, "status": status,
            "subresource_uris": {_snake(name): f"{uri}/{name}.json" for name in names},
            "to": to, "to_formatted": display_number(to), "trunk_sid": None, "uri": f"{uri}.json",
            "_seq": self._next_seq(),
        }
        set_dates(call, date_created=start, date_updated=end or start, start_time=start, end_time=end)
        self.state["calls"][sid] = call
        return call

    def _add_recording(self, call: Record, start: datetime, duration: int) -> Record:
        sid = new_sid("RE")
        uri = f"{ACCOUNTS_ROOT}/{call['account_sid']}/Recordings/{sid}"
        recording: Record = {
            "account_sid": call["account_sid"], "api_version": API_VERSION, "call_sid": call["sid"],
            "channels": 1, "conference_sid": None, "date_created": None,
            "date_updated": None, "duration": str(duration), "encryption_details": None,
            "error_code": None, "media_url": API_HOST + uri, "price": "-0.00250", "price_unit": "USD", "sid": sid,
            "source": "RecordVerb", "start_time": None, "status": "completed", "track": "both",
            "subresource_uris": {"add_on_results": f"{uri}/AddOnResults.json",
                                 "transcriptions": f"{uri}/Transcriptions.json"},
            "uri": f"{uri}.json", "_seq": self._next_seq(),
        }
        set_dates(recording, date_created=start, date_updated=start + timedelta(seconds=duration), start_time=start)
        self.state["recordings"][sid] = recording
        return recording

    def _call_params(self, call: Record, recording: Record | None) -> dict[str, str]:
        params = {
            "AccountSid": call["account_sid"], "ApiVersion": API_VERSION, "CallSid": call["sid"],
            "CallStatus": call["status"], "Called": call["to"], "Caller": call["from"],
            "Direction": call["direction"], "From": call["from"], "To": call["to"],
            "Timestamp": call["date_updated"], "CallbackSource": "call-progress-events", "SequenceNumber": "0",
        }
        if call["duration"] is not None:
            params["CallDuration"] = call["duration"]
        if recording is not None:
            params.update(RecordingUrl=recording["media_url"], RecordingSid=recording["sid"],
                          RecordingDuration=recording["duration"])
        return params

    def get_call(self, account_sid: str, sid: str) -> Record | None:
        return self._owned("calls", account_sid, sid)

    def list_calls(self, account_sid: str, *, to: str | None, from_: str | None, status: str | None,
                   parent_call_sid: str | None, started: DateFilter, ended: DateFilter) -> list[Record]:
        rows = [row for row in self._rows("calls", account_sid, to=to, status=status, parent_call_sid=parent_call_sid,
                                          **{"from": from_})
                if started.matches(row["_epoch"]["start_time"]) and ended.matches(row["_epoch"]["end_time"])]
        return newest_first(rows, "start_time")

    def get_recording(self, account_sid: str, sid: str, call_sid: str | None = None) -> Record | None:
        recording = self._owned("recordings", account_sid, sid)
        return recording if recording is not None and call_sid in (None, recording["call_sid"]) else None

    def list_recordings(self, account_sid: str, call_sid: str | None, created: DateFilter) -> list[Record]:
        rows = [row for row in self._rows("recordings", account_sid, call_sid=call_sid)
                if created.matches(row["_epoch"]["date_created"])]
        return newest_first(rows, "date_created")


def _pair(customer: str, ours: str) -> str:
    """Key of a (customer, our number) pair, whatever `whatsapp:` prefixes either address has."""
    return f"{split_address(customer)[1]}|{split_address(ours)[1]}"


def _same(secret: str, given: str) -> bool:
    """Constant-time comparison (as bytes: compare_digest refuses non-ASCII str)."""
    return hmac.compare_digest(secret.encode(), given.encode())


def _content_type(url: str) -> str:
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed or "image/jpeg"


def _geo(prefix: str, number: str) -> dict[str, str]:
    """Twilio's FromCity/FromState/FromZip/FromCountry (empty when unknown)."""
    return {f"{prefix}City": "", f"{prefix}State": "", f"{prefix}Zip": "", f"{prefix}Country": country_of(number)}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
