"""Normalising identities, so one customer matches however a system wrote them.

Phones become E.164 through Google's libphonenumber rules (`phonenumbers`),
so `(415) 555-0100`, `+1 415.555.0100` and `whatsapp:+14155550100` are one
identity, in any digits (Arabic-Indic, Persian, fullwidth); emails are
compared as the mail providers and the three CRMs compare them (`email`); X
accounts are keyed by their numeric user id (handles change), with the
handle kept for display and for matching CRM fields that hold only a handle.
A WhatsApp user who adopted a username and hides their number writes from a
business-scoped user id (BSUID, e.g. `US.13491208655302741918`): an identity
of its own kind, kept exactly as WhatsApp gave it and never read as a phone.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import phonenumbers

from crmhub.model import Identity, IdentityKind

WHATSAPP_PREFIX = "whatsapp:"
# Meta's business-scoped user id: an ISO country code, a period, up to 128 letters and digits ("ENT." for a
# parent BSUID shared by a business's portfolios), e.g. US.13491208655302741918 or US.ENT.11815799212886844830.
BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")


class InvalidIdentity(ValueError):
    """The value cannot be a phone, email or X account."""


def phone(raw: str, default_region: str = "US", other_regions: Sequence[str] = ()) -> Identity:
    """Parse a phone number written any common way into an E.164 identity.

    A number without a country code is read in `default_region`; where it is
    not a valid number there, the `other_regions` are tried in order (a UK
    `(0121) 496 0745` in a US org's CRM), and the first that fits wins.

    Raises:
        InvalidIdentity: the text is not a possible phone number.
    """
    text = raw.strip()
    if text.lower().startswith(WHATSAPP_PREFIX):
        text = text[len(WHATSAPP_PREFIX):].strip()
    return Identity(IdentityKind.PHONE, _e164(text, default_region.upper(), tuple(other_regions)), display=text)


@functools.lru_cache(maxsize=50_000)
def _e164(text: str, default_region: str, other_regions: tuple[str, ...]) -> str:
    """The E.164 form of `text` (see `phone`); cached, as a contact centre's numbers come again and again
    (every page of messages and contacts) and parsing is the dearest step of reading them."""
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        parsed = _in_other_regions(text, other_regions)
        if parsed is None:
            raise InvalidIdentity(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(parsed) and not text.startswith("+"):
        parsed = _in_other_regions(text, other_regions) or parsed
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidIdentity("not a possible phone number")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def _in_other_regions(text: str, regions: Sequence[str]) -> phonenumbers.PhoneNumber | None:
    for region in regions:
        try:
            parsed = phonenumbers.parse(text, region.upper())
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return parsed
    return None


def whatsapp_user(raw: str, display: str = "") -> Identity:
    """A WhatsApp sender known by a business-scoped user id (`whatsapp:` prefix optional), kept as given.

    Raises:
        InvalidIdentity: the text is not a BSUID.
    """
    text = raw.strip()
    if text.lower().startswith(WHATSAPP_PREFIX):
        text = text[len(WHATSAPP_PREFIX):].strip()
    if not BSUID.fullmatch(text):
        raise InvalidIdentity("not a WhatsApp business-scoped user id")
    return Identity(IdentityKind.WHATSAPP_USER, text, display=display or text)


def is_whatsapp_user(raw: str) -> bool:
    """Whether a `whatsapp:` address names a BSUID rather than a phone number."""
    text = raw.strip()
    if text.lower().startswith(WHATSAPP_PREFIX):
        text = text[len(WHATSAPP_PREFIX):].strip()
    return BSUID.fullmatch(text) is not None


def try_phone(raw: str | None, default_region: str = "US", other_regions: Sequence[str] = ()) -> Identity | None:
    """`phone()` for messy CRM fields: None when empty or unparsable."""
    if not raw or not raw.strip():
        return None
    try:
        return phone(raw, default_region, other_regions)
    except InvalidIdentity:
        return None


def email(raw: str) -> Identity:
    """An email identity in the form every service compares it in.

    The domain is case-insensitive (DNS) and may be written in Unicode or as
    its IDNA `xn--` form: both become the lower-case Unicode name. The local
    part is the mailbox provider's to interpret (RFC 5321), but the major
    providers and Salesforce, Zendesk and HubSpot all match it
    case-insensitively, so it is lower-cased too (not case-folded: `ß` and
    `ss` are different mailboxes), after NFC, so a name typed with combining
    accents is the same address as one typed precomposed.

    Raises:
        InvalidIdentity: the text has no single '@' between non-empty parts.
    """
    text = unicodedata.normalize("NFC", raw.strip())
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or " " in text:
        raise InvalidIdentity("not an email address")
    return Identity(IdentityKind.EMAIL, f"{local.lower()}@{_domain(domain)}", display=raw.strip())


def _domain(domain: str) -> str:
    """`Exämple.COM` and `xn--exmple-cua.com` -> `exämple.com`."""
    lowered = domain.lower().rstrip(".")
    if "xn--" in lowered:
        try:
            return unicodedata.normalize("NFC", lowered.encode("ascii").decode("idna"))
        except UnicodeError:  # not valid IDNA: compare it as written
            return lowered
    return lowered


def try_email(raw: str | None) -> Identity | None:
    """`email()` for messy CRM fields: None when empty or invalid."""
    if not raw or not raw.strip():
        return None
    try:
        return email(raw)
    except InvalidIdentity:
        return None


def x_account(user_id: str, handle: str = "") -> Identity:
    """An X identity keyed by the numeric user id, the handle kept for display."""
    if not user_id.isdigit():
        raise InvalidIdentity("an X user id is a string of digits")
    return Identity(IdentityKind.X, user_id, display=normal_handle(handle))


def normal_handle(handle: str) -> str:
    """`@Jane_Doe ` -> `jane_doe`: how X handles compare (case-insensitively; handles are ASCII, so a
    fullwidth `＠Ｊａｎｅ` typed on a CJK keyboard is NFKC-folded to the same handle)."""
    return unicodedata.normalize("NFKC", handle).strip().lstrip("@").lower()


def fold(text: str) -> str:
    """`text` for caseless matching in any script (keywords): NFKC, then Unicode case folding.

    Turkish and Azerbaijani `İ` folds to `i` plus a combining dot; the dot is
    dropped so `İADE` matches `iade` (and `ı` stays its own letter).
    """
    return unicodedata.normalize("NFKC", text).casefold().replace("i\u0307", "i")


def from_crm_field(kind: str, value: object, default_region: str = "US",
                   other_regions: Sequence[str] = ()) -> Identity | None:
    """An identity from a CRM field mapped to `kind` (phone, email, x_handle); None when empty or invalid.

    CRM fields are messy and admin-typed, so a bad value is skipped, not an error.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    if kind == "phone":
        return try_phone(value, default_region, other_regions)
    if kind == "email":
        return try_email(value)
    if kind == "x_handle":
        return Identity(IdentityKind.X_HANDLE, normal_handle(value), display=value)
    if kind == "whatsapp_user":
        try:
            return whatsapp_user(value)
        except InvalidIdentity:
            return None
    return None


def mapping_kind(kind: IdentityKind) -> str:
    """The identities.yaml key (phone, email, x_handle, whatsapp_user) whose fields hold identities of `kind`."""
    if kind is IdentityKind.WHATSAPP_USER:
        return "whatsapp_user"
    return "x_handle" if kind in (IdentityKind.X, IdentityKind.X_HANDLE) else kind.value
