"""Checks that span keys or files, run on the YAML trees themselves.

pydantic checks each value; these check how values relate (a route's queue
is declared, a mapping names a CRM that settings.yaml enables, rule names
are unique...). They read the raw trees defensively, so they run even when
a file has other problems, and every problem is reported at the position of
the key or value that holds the reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from crmhub.config._messages import range_hint, with_path
from crmhub.channels import registry
from crmhub.config._types import CHANNELS, CRMS, format_duration, parse_duration, parse_time_of_day, shown
from crmhub.config._yaml import MAX_DIGITS, MAX_TEXT, Document, LargeNumber, Loc, Problem, find, locate, scalars

_BOOL = TypeAdapter(bool)
_CREATABLE = {"salesforce": ("Contact", "Lead"), "zendesk": ("user",), "hubspot": ("contacts",)}
_ROUTE_EXAMPLE = "{queue: support}"


def is_enabled(section: object) -> bool:
    """Whether a CRM/channel section counts as enabled (`enabled` defaults to true)."""
    if not isinstance(section, Mapping):
        return section is not None
    try:
        return bool(_BOOL.validate_python(section.get("enabled", True)))
    except ValidationError:
        return True  # reported by pydantic; assume on so mappings are still checked


def enabled_names(tree: Any, group: str, names: Iterable[str], *, include_disabled: bool = False
                  ) -> tuple[str, ...] | None:
    """Enabled CRMs (group="crms") or channels of a settings tree; None when unknown.

    With `include_disabled`, every one configured there: mappings may keep
    entries for a CRM switched off with `enabled: false`, so it can be
    switched back on without rewriting them.
    """
    section = find(tree, (group,))
    if not isinstance(section, Mapping):
        return None
    return tuple(name for name in names
                 if name in section and (include_disabled or is_enabled(section[name])))


def _problem(doc: Document, loc: Loc, text: str, *, at_key: bool = False) -> Problem:
    return doc.problem(with_path(loc, text), loc, at="key" if at_key else "value")


# --- any file --------------------------------------------------------------

# C0 and C1 controls but tab, newline and carriage return; lone surrogates
# ("\ud800" in double quotes), which no file, terminal or API can encode.
_BAD_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def refused_values(doc: Document, model: type[BaseModel]) -> list[Problem]:
    """Keys and values no check should see: control characters, lone surrogates, overlong text, huge numbers.

    They break printing, paths and number conversions further on, so the
    file is refused before validation, like a syntax error; each problem
    names its key, and a huge number is measured against its key's range.
    """
    out: list[Problem] = []
    for loc, is_key, value, line, col in scalars(doc.tree):
        text = _refusal(value, loc, model, is_key)
        if text:
            out.append(Problem(doc.order, line, col, doc.display, with_path(loc, text)))
    return out


def _refusal(value: Any, loc: Loc, model: type[BaseModel], is_key: bool) -> str | None:
    what = "a key " if is_key else ""
    if isinstance(value, LargeNumber):
        if is_key:
            return f"key {shown(value.text)} is a number of more than {MAX_DIGITS} digits; quote it"
        return f"{shown(value.text)} is out of range; {range_hint(loc, model, {}, digits=MAX_DIGITS)}"
    if not isinstance(value, str):
        return None
    if len(value) > MAX_TEXT:
        return f"{what}is {len(value)} characters long; write at most {MAX_TEXT}"
    bad = _BAD_CHARACTER.search(value)
    if bad is None:
        return None
    code = ord(bad[0])
    if 0xD800 <= code <= 0xDFFF:
        return (f"{what}holds \\u{code:04x}, half of a UTF-16 surrogate pair; "
                "write the character itself or one \\U escape (e.g. \\U0001F600)")
    return f"{what}holds the control character U+{code:04X}; remove it"


# --- settings.yaml ---------------------------------------------------------

def check_settings(doc: Document) -> list[Problem]:
    """Cross-key checks of settings.yaml."""
    tree = doc.tree
    out: list[Problem] = []
    for group, names, noun in (("crms", CRMS, "CRM"), ("channels", CHANNELS, "channel")):
        if enabled_names(tree, group, names) == ():
            out.append(_problem(doc, (group,), f"no {noun} is enabled; enable at least one of {', '.join(names)} "
                                               "(enabled: true is the default)"))
    out += _salesforce_auth(doc)
    out += _zendesk_auth(doc)
    for name in CHANNELS:  # each channel module's own cross-key checks of its block
        block = find(tree, ("channels", name))
        if isinstance(block, Mapping) and is_enabled(block):
            for loc, text in registry.load(name).block_problems(block):
                out.append(_problem(doc, ("channels", name, *loc), text))
    initial, longest = _duration(tree, ("retry", "initial_wait"), "1s"), _duration(tree, ("retry", "max_wait"), "5m")
    if initial is not None and longest is not None and longest < initial:
        out.append(_problem(doc, ("retry", "max_wait"), f"{format_duration(longest)} is shorter than retry.initial_wait "
                                                        f"({format_duration(initial)}); make it at least that long"))
    budget, stretch = (_duration(tree, ("delivery", "latency_budget"), "1s"),
                       _duration(tree, ("delivery", "max_wait"), "15s"))
    if budget is not None and stretch is not None and stretch < budget:
        out.append(_problem(doc, ("delivery", "max_wait"),
                            f"{format_duration(stretch)} is shorter than delivery.latency_budget "
                            f"({format_duration(budget)}); make it at least that long"))
    return out


def _duration(tree: Any, loc: Loc, default: str) -> Any:
    section = find(tree, loc[:-1])
    raw = section.get(loc[-1], default) if isinstance(section, Mapping) else default
    try:
        return parse_duration(raw)
    except ValueError:
        return None


def _salesforce_auth(doc: Document) -> list[Problem]:
    base: Loc = ("crms", "salesforce", "auth")
    auth = find(doc.tree, base)
    if not isinstance(auth, Mapping):
        return []
    flow = auth.get("flow", "client_credentials")
    out = []
    if isinstance(flow, str) and flow.strip().lower() == "password":
        for key, example in (("username", "integration@acme.com"), ("password", "env:SALESFORCE_PASSWORD")):
            if auth.get(key) is None:
                out.append(_problem(doc, (*base, key), f"required by flow: password; add it, e.g. {key}: {example}"))
    elif isinstance(flow, str) and flow.strip().lower() == "client_credentials":
        for key in ("username", "password"):
            if auth.get(key) is not None:
                out.append(_problem(doc, (*base, key), "only used by flow: password; remove it or set flow: password",
                                    at_key=True))
    return out


def _zendesk_auth(doc: Document) -> list[Problem]:
    base: Loc = ("crms", "zendesk", "auth")
    auth = find(doc.tree, base)
    if not isinstance(auth, Mapping):
        return []
    email, token, oauth = (auth.get(k) is not None for k in ("email", "token", "oauth_token"))
    if oauth and (email or token):
        return [_problem(doc, (*base, "oauth_token"), "use either email + token or oauth_token, not both; "
                                                      "remove one", at_key=True)]
    if email and not token:
        return [_problem(doc, (*base, "token"), "required with email; add it, e.g. token: env:ZENDESK_TOKEN")]
    if token and not email:
        return [_problem(doc, (*base, "email"), "required with token; add the agent's email, e.g. email: agent@acme.com")]
    if not (email or token or oauth):
        return [_problem(doc, base, "no credentials; add email and token: env:ZENDESK_TOKEN, "
                                    "or oauth_token: env:ZENDESK_OAUTH_TOKEN")]
    return []


# --- identities.yaml -------------------------------------------------------

def check_identities(doc: Document, enabled: tuple[str, ...] | None, settings_name: str,
                     configured: tuple[str, ...] | None = None) -> list[Problem]:
    """Cross-key checks of identities.yaml; `enabled` / `configured` CRMs from settings.yaml (None: unknown)."""
    out: list[Problem] = []
    crms = find(doc.tree, ("crms",))
    crms = crms if isinstance(crms, Mapping) else {}
    for name in CRMS:
        if name not in crms:
            if enabled is not None and name in enabled:
                out.append(_problem(doc, ("crms", name), f"{name} is enabled in {settings_name} but has no entry here; "
                                                         f"add crms.{name}.match so crmhub can find its contacts"))
            continue
        if configured is not None and name not in configured:
            out.append(_problem(doc, ("crms", name), f"{name} is not configured in {settings_name}; add it there "
                                                     f"(crms.{name}) or remove this entry", at_key=True))
            continue
        match = find(doc.tree, ("crms", name, "match"))
        objects = [k for k, v in match.items() if v is not None] if isinstance(match, Mapping) else None
        if objects == []:
            first = _CREATABLE[name][0]
            out.append(_problem(doc, ("crms", name, "match"), f"no objects to search; add e.g. {first}: "
                                                              "{phone: [...], email: [...]}"))
        create = find(doc.tree, ("crms", name, "create_when_unmatched"))
        if objects is not None and create in _CREATABLE[name] and create not in objects:
            choices = ", ".join(["none", *[o for o in objects if o in _CREATABLE[name]]])
            out.append(_problem(doc, ("crms", name, "create_when_unmatched"),
                                f"{create} has no entry under crms.{name}.match; add match.{create} "
                                f"or use one of: {choices}"))
    return out


# --- routing.yaml ----------------------------------------------------------

def check_routing(doc: Document, enabled: tuple[str, ...] | None, settings_name: str,
                  configured: tuple[str, ...] | None = None) -> list[Problem]:
    """Cross-key checks of routing.yaml; `enabled` / `configured` CRMs from settings.yaml (None: unknown).

    Routes may name any CRM configured in settings.yaml, even one switched off
    (so it can be switched back on without rewriting them); `default` must
    route every enabled one.
    """
    configured = enabled if configured is None else configured
    tree = doc.tree
    out: list[Problem] = []
    queues = find(tree, ("queues",))
    declared = {
        crm: [str(k) for k in queues[crm]] if isinstance(queues, Mapping) and isinstance(queues.get(crm), Mapping) else []
        for crm in CRMS
    }
    rules = find(tree, ("rules",))
    seen: dict[str, int] = {}
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, Mapping):
            continue
        name = rule.get("name")
        if isinstance(name, str):
            if name in seen:
                first = seen[name]
                line = locate(tree, ("rules", first, "name"))[0]
                out.append(_problem(doc, ("rules", i, "name"), f"duplicate rule name '{name}'; rules[{first}] (line "
                                                               f"{line}) already uses it; give each rule its own name"))
            else:
                seen[name] = i
        out += _route(doc, ("rules", i, "route"), declared, configured, settings_name)
    default = find(tree, ("default",))
    out += _route(doc, ("default",), declared, configured, settings_name)
    if isinstance(default, Mapping) and enabled is not None:
        for crm in enabled:
            if default.get(crm) is None:
                out.append(_problem(doc, ("default",), f"no route for {crm}, which is enabled in {settings_name}; "
                                                       f"add default.{crm}: {_ROUTE_EXAMPLE}"))
    out += _business_hours(doc)
    return out


def _route(doc: Document, base: Loc, declared: dict[str, list[str]], configured: tuple[str, ...] | None,
           settings_name: str) -> list[Problem]:
    route = find(doc.tree, base)
    if not isinstance(route, Mapping):
        return []
    if not any(route.get(crm) is not None for crm in CRMS) and not any(k not in CRMS for k in route):
        return [_problem(doc, base, f"no CRM to route to; add e.g. salesforce: {_ROUTE_EXAMPLE}")]
    out = []
    for crm in CRMS:
        if crm not in route:
            continue
        if configured is not None and crm not in configured:
            out.append(_problem(doc, (*base, crm), f"{crm} is not configured in {settings_name}; add it there "
                                                   f"(crms.{crm}) or remove this route", at_key=True))
            continue
        queue = find(doc.tree, (*base, crm, "queue"))
        if isinstance(queue, str) and queue not in declared[crm]:
            if declared[crm]:
                fix = f"declare it under queues.{crm} or use one of: {', '.join(declared[crm])}"
            else:
                fix = f"declare it under queues.{crm} (none are declared there yet)"
            out.append(_problem(doc, (*base, crm, "queue"), f"queue '{queue}' is not declared; {fix}"))
    return out


def _business_hours(doc: Document) -> list[Problem]:
    hours = find(doc.tree, ("business_hours",))
    if not isinstance(hours, Mapping):
        return []
    try:
        start = parse_time_of_day(hours.get("start", "08:00"))
        end = parse_time_of_day(hours.get("end", "18:00"))
    except PydanticCustomError:
        return []  # reported by pydantic
    if end <= start:
        return [_problem(doc, ("business_hours", "end"), f"{end:%H:%M} is not after start ({start:%H:%M}); business "
                                                         "hours are one span within a day, set end later than start")]
    return []
