"""How an agent confirms or rejects a link suggestion inside the CRM: a value crmhub reads back with the case.

The same words in every CRM, so the note can say them once: `confirm 12`
or `reject 12` (12 is the suggestion's id, as `crmhub links list` shows it),
in a text field of the case (Salesforce `Crmhub_Link__c`, the HubSpot
ticket property `crmhub_link`), or as a tag where tags are what agents set
in one click (Zendesk `crmhub_confirm_12`). Several may stand together
("confirm 12, reject 13"). Anything else in the field is ignored: a typo
joins nobody.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MARK = re.compile(r"(?<![A-Za-z])(confirm|reject)\s*[:#]?\s*(\d{1,12})(?!\d)", re.IGNORECASE)


def read_field(value: object) -> list[tuple[int, bool]]:
    """(suggestion id, confirm?) for each `confirm N` / `reject N` in a field's text; the last word on an id wins."""
    if not isinstance(value, str) or not value:
        return []
    marks = {int(number): verb.lower() == "confirm" for verb, number in MARK.findall(value[:1000])}
    return list(marks.items())


def read_tags(tags: Iterable[object], prefix: str) -> list[tuple[int, bool]]:
    """(suggestion id, confirm?) for each `<prefix>confirm_N` / `<prefix>reject_N` tag; a reject wins over a confirm."""
    pattern = re.compile(re.escape(prefix.lower()) + r"(confirm|reject)_(\d{1,12})")
    marks: dict[int, bool] = {}
    for tag in tags:
        found = pattern.fullmatch(str(tag).lower())
        if found:
            number = int(found.group(2))
            marks[number] = marks.get(number, True) and found.group(1) == "confirm"
    return list(marks.items())
