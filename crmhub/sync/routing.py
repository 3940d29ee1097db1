"""Routing: ordered rules pick a queue per CRM; the first match wins.

Rules come from `mappings/routing.yaml` (built by `crmhub.app.build_router`). Each decision records the winning rule and, for every
rule tried before it, the first condition that failed, so `crmhub explain`
can say why an item went where it went.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crmhub.identities import fold
from crmhub.language import Detection, Hint, LanguageDetector, suggestion
from crmhub.model import Interaction, QueueTarget, RouteDecision


@dataclass(frozen=True)
class Rule:
    """One routing rule: conditions (None = any) and the targets per CRM."""

    name: str
    targets: Mapping[str, QueueTarget]
    channels: frozenset[str] | None = None
    direction: str | None = None
    text_pattern: re.Pattern[str] | None = None
    keywords: tuple[str, ...] = ()
    languages: frozenset[str] | None = None
    contact: Mapping[str, Any] = field(default_factory=dict)
    business_hours: bool | None = None
    case_open: bool | None = None

    def mismatch(self, item: Interaction, contact: Mapping[str, Any], *, case_open: bool,
                 in_hours: Callable[[datetime], bool], language: Detection | None = None) -> str | None:
        """Why this rule does not match, or None when it does."""
        if self.channels is not None and item.channel.value not in self.channels:
            return f"channel {item.channel.value} not in {sorted(self.channels)}"
        if self.direction is not None and item.direction.value != self.direction:
            return f"direction is {item.direction.value}, not {self.direction}"
        if self.text_pattern is not None and not self.text_pattern.search(item.text):
            return f"text does not match /{self.text_pattern.pattern}/"
        if self.keywords and not _has_keyword(item.text, self.keywords):
            return f"none of the keywords {list(self.keywords)} in the text"
        if self.languages is not None and (language is None or language.language not in self.languages):
            found = language.describe() if language is not None else "unknown (detection off)"
            return f"language {found} not in {sorted(self.languages)}"
        for name, wanted in self.contact.items():
            if contact.get(name) != wanted:
                return f"contact {name} is {contact.get(name)!r}, not {wanted!r}"
        if self.business_hours is not None and in_hours(item.occurred_at) != self.business_hours:
            return "inside business hours" if self.business_hours is False else "outside business hours"
        if self.case_open is not None and case_open != self.case_open:
            return "a case is already open" if case_open else "no case is open"
        return None


def _has_keyword(text: str, keywords: Sequence[str]) -> bool:
    """Whether a keyword is a word of `text`, compared caselessly in any script (`fold`)."""
    words = set(re.findall(r"\w+", fold(text)))
    return any(fold(k) in words for k in keywords)


@dataclass(frozen=True)
class Router:
    """The ordered rules, the default targets and the business hours."""

    rules: tuple[Rule, ...]
    default: Mapping[str, QueueTarget]
    in_business_hours: Callable[[datetime], bool] = lambda moment: True
    detector: LanguageDetector | None = None  # None: detection off (no expected languages, no rule names one)
    contact_language: tuple[str, ...] = ()  # contact fields holding the customer's language, the first set wins

    def languages(self, items: Sequence[Interaction], contacts: Sequence[Mapping[str, Any]],
                  earlier: Mapping[str, str]) -> list[Detection] | None:
        """The language of each item (None when detection is off), detected for the whole batch.

        `earlier` is each conversation's language so far; an item's own
        detection becomes its conversation's for the items after it.
        """
        if self.detector is None:
            return None
        known = dict(earlier)
        found: list[Detection] = []
        for item, contact in zip(items, contacts, strict=True):
            hints: list[Hint] = [("conversation", known.get(item.conversation_key)),
                                 ("contact", self.contact_hint(contact))]
            detection = self.detector.detect_many([item.text], [hints])[0]
            if detection.language is not None:
                known[item.conversation_key] = detection.language
            found.append(detection)
        return found

    def contact_hint(self, contact: Mapping[str, Any]) -> str | None:
        """The language the contact's CRM record states (`en`, `en_US`, `pt-BR` -> en, en, pt), if any."""
        for name in self.contact_language:
            value = contact.get(name)
            if isinstance(value, str) and (code := suggestion(value)) is not None:
                return code
        return None

    def decide(self, item: Interaction, contact: Mapping[str, Any], *, case_open: bool = False,
               language: Detection | None = None) -> RouteDecision:
        """The first matching rule's targets (CRMs it leaves out take the default).

        `language` is the item's detection (`languages`); without one, an item
        is detected alone here when detection is on (`crmhub dry-run`).
        """
        if language is None and self.detector is not None:
            language = self.detector.detect_many([item.text], [[("contact", self.contact_hint(contact))]])[0]
        tried: list[tuple[str, str]] = []
        for rule in self.rules:
            reason = rule.mismatch(item, contact, case_open=case_open, in_hours=self.in_business_hours,
                                   language=language)
            if reason is None:
                return RouteDecision(rule.name, {**self.default, **rule.targets}, tuple(tried))
            tried.append((rule.name, reason))
        return RouteDecision("default", dict(self.default), tuple(tried))
