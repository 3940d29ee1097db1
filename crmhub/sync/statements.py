"""Identities a customer states in a message ("btw my number is 020 7946 0018").

A customer writing from a new channel often says who they are elsewhere.
Such a statement is a claim, never proof: anyone can write anyone's address
(DESIGN.md, "Identity joins only on evidence"). What this module reads as a
claim, kept narrow so that ordinary text claims nothing:

* an email address anywhere in the text;
* a phone number: one written with a country code, or one in national
  format read in the sender's own region or the default region; a national
  number that fits no such region is taken only where, read in some other
  region, it is a number crmhub already knows (in the graph or a CRM);
* an X handle only as `@handle` right after a first-person phrase ("I'm
  @jane", "my handle is @jane", "c'est moi, @jane"), in `FIRST_PERSON`.
  A bare word never counts, nor an `@word` elsewhere ("my flight with
  @skyways"), nor one glued to other text (`vict%@example.org`).

What a claim then does (suggest a link, join, or nothing) is the admin's
`statements` policy, applied by `crmhub.sync.identity`.
Our own numbers and accounts never count: customers quote them all the time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable

import phonenumbers

from crmhub.identities import normal_handle, try_email
from crmhub.model import Identity, IdentityKind

EMAIL = re.compile(r"[\w.+%'-]+@[\w-]+(?:\.[\w-]+)+")

# Phrases after which an @handle is the writer's own, per language crmhub's routing
# knew before detection moved to `crmhub.language`; matched case-insensitively, at a word start.
FIRST_PERSON: dict[str, tuple[str, ...]] = {
    "en": (r"i['’]?m", r"i am", r"this is", r"it['’]?s me", r"it is me", r"same person as",
           r"my (?:x |twitter )?(?:handle|account|username|user name|profile)(?: on (?:x|twitter))? is",
           r"i['’]?m on (?:x|twitter) as", r"i am on (?:x|twitter) as",
           r"(?:reach|find|dm|message|contact) me (?:at|on|as)",
           r"i (?:wrote|messaged|dm['’]?ed|tweeted) (?:to )?you (?:before |earlier )?(?:from|as)"),
    "es": (r"soy", r"yo soy", r"soy yo", r"este es mi (?:usuario|perfil|cuenta)",
           r"mi (?:usuario|cuenta|perfil|nombre de usuario|arroba)(?: (?:en|de) (?:x|twitter))? es",
           r"(?:me pueden|me puedes|pueden|puedes) (?:escribir|contactar|encontrar)(?:me)? (?:a|en)"),
    "fr": (r"je suis", r"c['’]est (?:encore )?moi", r"moi c['’]est",
           r"mon (?:compte|pseudo|identifiant|profil)(?: (?:sur )?(?:x|twitter))? est",
           r"(?:me joindre|m['’]écrire|me contacter|me trouver) (?:à|sur|via)"),
    "de": (r"ich bin", r"ich bin['’]?s", r"hier ist", r"hier spricht",
           r"mein (?:handle|konto|account|profil|benutzername)(?: (?:auf|bei) (?:x|twitter))? ist",
           r"(?:erreichen|finden|kontaktieren) sie mich (?:unter|auf|über)",
           r"(?:erreichst|findest) du mich (?:unter|auf|über)"),
    "pt": (r"sou", r"eu sou", r"sou eu", r"aqui é",
           r"(?:o )?meu (?:usuário|perfil|arroba|nome de usuário|conta)(?: (?:no|na|do) (?:x|twitter))? é",
           r"(?:me encontrar|me achar|falar comigo|me escrever) (?:em|no|pelo)"),
    "it": (r"sono", r"io sono", r"sono io", r"qui è",
           r"(?:il )?mio (?:account|profilo|nome utente|utente)(?: (?:su|di) (?:x|twitter))? è",
           r"(?:trovarmi|contattarmi|scrivermi) (?:a|su|come)"),
}
_AGAIN = r"(?:also|again|still|actually|too|también|otra vez|aussi|encore|auch|wieder|também|de novo|anche|ancora)"
CLAIMED_HANDLE = re.compile(
    r"(?<![\w@])(?:" + "|".join(p for phrases in FIRST_PERSON.values() for p in phrases) + r")"
    rf"(?:\s+{_AGAIN})*[\s,:;–—-]+@([A-Za-z0-9_]{{1,15}})(?![\w@]|[.'’]\w|['’])",
    re.IGNORECASE)
ALL_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
MIN_PHONE_DIGITS = 3  # no valid number of any region has fewer (the shortest, e.g. Niue's, have four)

Known = Callable[[IdentityKind, list[str]], set[str]]
"""Which of these values crmhub knows as identities of this kind (graph or mirror)."""


def may_state(text: str) -> bool:
    """Whether `text` can state an identity at all: no email or handle without an @, no phone number without
    digits. Most messages stop here, before their sender's regions are worked out."""
    return bool(text) and ("@" in text or sum(c.isdigit() for c in text) >= MIN_PHONE_DIGITS)


def stated_identities(text: str, *, regions: Iterable[str], own: Collection[Identity], known: Known) -> list[Identity]:
    """The identities `text` states, in order of appearance, without our own."""
    if not may_state(text):
        return []
    found: list[Identity] = []
    without_emails = text
    for match in EMAIL.finditer(text):
        identity = try_email(match.group(0).rstrip("."))
        if identity is not None:
            found.append(identity)
        without_emails = without_emails.replace(match.group(0), " ")
    found += _phones(without_emails, list(dict.fromkeys(regions)), known)
    found += _handles(without_emails)
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


def _handles(text: str) -> list[Identity]:
    names = [normal_handle(m.group(1)) for m in CLAIMED_HANDLE.finditer(text)]
    return [Identity(IdentityKind.X_HANDLE, name, display=name) for name in dict.fromkeys(names)]
