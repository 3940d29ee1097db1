"""The CRM search language: filterGroups, sorts and query (pure functions).

From "Search the CRM": groups are ORed, filters inside a group are ANDed;
at most 5 groups, 6 filters per group and 18 filters in all; one sort rule;
results by creation date (oldest first) unless sorted; the pseudo-property
`associations.{objectType}` finds records associated with a given id.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from typing import Any

from crmhub.sandbox.hubspot import catalog
from crmhub.sandbox.hubspot.errors import invalid_input
from crmhub.sandbox.hubspot.values import comparable

Record = dict[str, Any]
Associated = Callable[[str, str], set[str]]
"""associated(record_id, to_type) -> ids of `to_type` records associated with it."""

_VALUE_OPERATORS = {"EQ", "NEQ", "LT", "LTE", "GT", "GTE", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}
_LIST_OPERATORS = {"IN", "NOT_IN"}
_PRESENCE_OPERATORS = {"HAS_PROPERTY", "NOT_HAS_PROPERTY"}
_OPERATORS = _VALUE_OPERATORS | _LIST_OPERATORS | _PRESENCE_OPERATORS | {"BETWEEN"}
_TOKEN_SPLIT = re.compile(r"[\s,;:!?()\[\]{}\"']+")


def validate(body: dict[str, Any], kinds: dict[str, str]) -> list[list[dict[str, Any]]]:
    """The request's filter groups, checked against HubSpot's limits; raises 400."""
    groups = [g.get("filters") or [] for g in body.get("filterGroups") or []]
    if len(groups) > catalog.SEARCH_MAX_GROUPS:
        raise invalid_input(f"Too many filter groups: {len(groups)}. The maximum is {catalog.SEARCH_MAX_GROUPS}.")
    if any(len(g) > catalog.SEARCH_MAX_FILTERS_PER_GROUP for g in groups) or \
            sum(len(g) for g in groups) > catalog.SEARCH_MAX_FILTERS:
        raise invalid_input(f"Too many filters: at most {catalog.SEARCH_MAX_FILTERS_PER_GROUP} per group and "
                            f"{catalog.SEARCH_MAX_FILTERS} in all.")
    for flt in (f for g in groups for f in g):
        _check_filter(flt, kinds)
    return groups


def _check_filter(flt: dict[str, Any], kinds: dict[str, str]) -> None:
    name, operator = flt.get("propertyName"), flt.get("operator")
    if operator not in _OPERATORS:
        raise invalid_input(f"Invalid operator {operator!r} for property {name!r}.")
    if not isinstance(name, str) or not (name in kinds or name.startswith("associations.")):
        raise invalid_input(f"Unable to search by property {name!r}: it does not exist.")
    if operator in _LIST_OPERATORS and not isinstance(flt.get("values"), list):
        raise invalid_input(f"Operator {operator} requires a 'values' list.")
    if operator in _VALUE_OPERATORS | {"BETWEEN"} and flt.get("value") is None:
        raise invalid_input(f"Operator {operator} requires a 'value'.")
    if operator == "BETWEEN" and flt.get("highValue") is None:
        raise invalid_input("Operator BETWEEN requires a 'highValue'.")


def select(records: Sequence[Record], groups: list[list[dict[str, Any]]], query: str | None, *,
           otype: catalog.ObjectType, kinds: dict[str, str], associated: Associated) -> list[Record]:
    """The records matching any group (all of its filters) and the free-text query."""
    def keep(record: Record) -> bool:
        if query and not _matches_query(record, query, otype):
            return False
        return not groups or any(all(_matches(record, f, kinds, associated) for f in g) for g in groups)

    return [r for r in records if keep(r)]


def _matches_query(record: Record, query: str, otype: catalog.ObjectType) -> bool:
    needle = query.lower().strip("*")
    return any(needle in (record["properties"].get(p) or "").lower() for p in otype.searchable)


def _matches(record: Record, flt: dict[str, Any], kinds: dict[str, str], associated: Associated) -> bool:
    name: str = flt["propertyName"]
    operator: str = flt["operator"]
    if name.startswith("associations."):
        to_type = catalog.ALIASES.get(name.split(".", 1)[1], "")
        linked = associated(record["id"], to_type)
        wanted = {str(v) for v in flt.get("values") or [flt.get("value")]}
        hit = bool(linked & wanted)
        return not hit if operator in ("NEQ", "NOT_IN") else hit
    raw: str | None = record["properties"].get(name)
    if operator in _PRESENCE_OPERATORS:
        return (raw is not None) == (operator == "HAS_PROPERTY")
    if operator.startswith("NOT_") or operator == "NEQ":
        positive = {"NEQ": "EQ", "NOT_IN": "IN", "NOT_CONTAINS_TOKEN": "CONTAINS_TOKEN"}[operator]
        return not _matches(record, {**flt, "operator": positive}, kinds, associated)
    if raw is None:
        return False
    return _compare(raw, flt, kinds.get(name, "string"))


def _compare(raw: str, flt: dict[str, Any], kind: str) -> bool:
    operator = flt["operator"]
    if operator == "IN":
        # HubSpot matches IN on strings against lower-case values (the values must be lower case)
        text = raw if kind == "enumeration" else raw.lower()
        return text in [str(v) for v in flt["values"]]
    if operator == "CONTAINS_TOKEN":
        return _contains_token(raw, str(flt["value"]))
    have, want = comparable(raw, kind), comparable(str(flt["value"]), kind)
    if operator == "BETWEEN":
        high = comparable(str(flt["highValue"]), kind)
        return _ordered(want, have) and _ordered(have, high)
    if operator == "EQ":
        return have == want
    return _order_test(operator, have, want)


def _ordered(low: float | str, high: float | str) -> bool:
    if type(low) is not type(high):
        return str(low) <= str(high)
    return low <= high  # type: ignore[operator]  # same type checked above


def _order_test(operator: str, have: float | str, want: float | str) -> bool:
    if operator == "LT":
        return _ordered(have, want) and have != want
    if operator == "LTE":
        return _ordered(have, want)
    if operator == "GT":
        return _ordered(want, have) and have != want
    return _ordered(want, have)  # GTE


def _contains_token(raw: str, value: str) -> bool:
    text = raw.lower()
    pattern = value.lower()
    tokens = [text, *(t for t in _TOKEN_SPLIT.split(text) if t)]
    if "*" in pattern:
        return any(fnmatch.fnmatchcase(t, pattern) for t in tokens)
    return pattern in tokens


def sort(records: list[Record], sorts: list[Any], otype: catalog.ObjectType, kinds: dict[str, str]) -> list[Record]:
    """Order by the first sort rule (HubSpot applies one), else by creation, oldest first.

    A rule is "prop" / "-prop" (the SDK's string form) or
    {"propertyName", "direction": "ASCENDING" | "DESCENDING"}. Records without
    the property come last either way; ties keep id order.
    """
    name, descending = otype.created, False
    if sorts:
        rule = sorts[0]
        if isinstance(rule, str):
            name, descending = rule.lstrip("-"), rule.startswith("-")
        elif isinstance(rule, dict):
            name, descending = str(rule.get("propertyName")), rule.get("direction") == "DESCENDING"
    by_id = sorted(records, key=lambda r: int(r["id"]))
    present = [r for r in by_id if r["properties"].get(name) is not None]
    missing = [r for r in by_id if r["properties"].get(name) is None]
    kind = kinds.get(name, "string")
    present.sort(key=lambda r: _sort_key(r["properties"][name], kind), reverse=descending)
    return present + missing


def _sort_key(value: str, kind: str) -> tuple[int, float | str]:
    key = comparable(value, kind)
    return (0, key) if isinstance(key, float) else (1, key)
