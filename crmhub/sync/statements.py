"""Identities a customer states in a message ("btw my number is 020 7946 0018").

A customer writing from a new channel often says who they are elsewhere.
Such a statement is a fact that joins two identities of one person, so the
history of both ends up on one record. What counts as a statement:

* an email address anywhere in the text;
* a phone number: one written with a country code, or one in national
  format read in the sender's own region or the default region; a national
  number that fits no such region is taken only where, read in some other
  region, it is a number crmhub already knows (in the graph or a CRM);
* an X handle written as `@handle`, or a bare word that is exactly a handle
  crmhub already knows (at least `MIN_BARE_HANDLE` characters).

Our own numbers and accounts never count: customers quote them all the time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable

import phonenumbers

from crmhub.identities import normal_handle, try_email
from crmhub.model import Identity, IdentityKind

EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
AT_HANDLE = re.compile(r"(?<![\w@.])@(\w{1,15})\b")
WORD = re.compile(r"(?<![\w@.])(\w{1,15})\b")
MIN_BARE_HANDLE = 5
ALL_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)

Known = Callable[[IdentityKind, list[str]], set[str]]
"""Which of these values crmhub knows as identities of this kind (graph or mirror)."""


def stated_identities(text: str, *, regions: Iterable[str], own: Collection[Identity], known: Known) -> list[Identity]:
    """The identities `text` states, in order of appearance, without our own."""
    if not text:
        return []
    found: list[Identity] = []
    without_emails = text
    for match in EMAIL.finditer(text):
        identity = try_email(match.group(0).rstrip("."))
        if identity is not None:
            found.append(identity)
        without_emails = without_emails.replace(match.group(0), " ")
    found += _phones(without_emails, list(dict.fromkeys(regions)), known)
    found += _handles(without_emails, known)
    own_keys = {(i.kind, i.value) for i in own}
    unique = {(i.kind, i.value): i for i in found if (i.kind, i.value) not in own_keys}
    return list(unique.values())


def _phones(text: str, regions: list[str], known: Known) -> list[Identity]:
    found: list[Identity] = []
    for region in regions[:1] or ["US"]:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            found.append(_phone(match.number, match.raw_string))
    for region in regions[1:]:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            identity = _phone(match.number, match.raw_string)
            if all(f.value != identity.value for f in found):
                found.append(identity)
    if not found:  # a national number of a region we did not think of: only one crmhub already knows
        leftovers = [m.group(0) for m in re.finditer(r"[\d(][\d ().-]{6,}\d", text)]
        candidates: dict[str, str] = {}
        for raw in leftovers:
            for region in ALL_REGIONS:
                try:
                    number = phonenumbers.parse(raw, region)
                except phonenumbers.NumberParseException:
                    continue
                if phonenumbers.is_valid_number(number):
                    candidates.setdefault(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
                                          raw)
        for value in sorted(known(IdentityKind.PHONE, sorted(candidates))):
            found.append(Identity(IdentityKind.PHONE, value, display=candidates[value].strip()))
    return found


def _phone(number: phonenumbers.PhoneNumber, raw: str) -> Identity:
    return Identity(IdentityKind.PHONE, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
                    display=raw)


def _handles(text: str, known: Known) -> list[Identity]:
    at = [normal_handle(m.group(1)) for m in AT_HANDLE.finditer(text)]
    bare = sorted({w.lower() for w in WORD.findall(text) if len(w) >= MIN_BARE_HANDLE and not w.isdigit()} - set(at))
    names = at + sorted(known(IdentityKind.X_HANDLE, bare))
    return [Identity(IdentityKind.X_HANDLE, name, display=name) for name in dict.fromkeys(names)]
