"""Turning pydantic's validation errors into lines for people.

Each error's `loc` is a key path in the YAML file; it gives the position
(via `_yaml.locate`) and the `<key path>:` prefix. Error types are mapped to
sentences that say what is wrong and what to write instead; our own
validators already raise final text (`crmhub_*` types). Values of secret
fields are never part of a message.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from crmhub.config._types import CHANNEL_KINDS, CHANNELS, CRMS, did_you_mean, kind_of, shown
from crmhub.config._yaml import Document, Loc, Problem

# What each kind of mapping key lists as valid names.
_KEYED_NAMES = {"CRM": CRMS, "channel": CHANNELS, "identity kind": ()}  # identity kinds: the section's own keys

# Fields whose pattern is best explained in words (the value is not echoed
# for account_sid: people paste the auth token there by mistake).
_PATTERN_HINTS = {
    "account_sid": ("the value is not a Twilio account SID", "write AC followed by 32 hex digits, from the Twilio console"),
    "content_sid": ("{value} is not a Twilio Content SID", "write HX followed by 32 hex digits, from the Content "
                                                          "Template Builder (Messaging > Content Template Builder)"),
    "subdomain": ("{value} is not a Zendesk subdomain", "write only the first part of acme.zendesk.com: lower-case letters, "
                                                        "digits and -"),
    "account": ("{value} is not an X handle", "write up to 15 letters, digits or _, without @"),
    "api_version": ("{value} is not a Salesforce API version", "write it quoted, e.g. \"59.0\""),
    "language": ("{value} is not a language code", "write an ISO 639-1 code in lower case, e.g. en, es"),
}

# Keys that moved to another file: (model, key) -> where they live now.
_MOVED = {
    ("RoutingRules", "reopen_window"): "it moved to settings.yaml; remove it here and write threads: "
                                       "{ reopen_window: 3d } in settings.yaml",
    ("IdentityMappings", "join_stated"): "statements replaced it, and a statement in a message no longer joins by "
                                         "itself; remove it and write statements: suggest (the default: an agent or "
                                         "admin confirms each claim), or statements: join to keep joining unchecked",
}


def key_path(loc: Sequence[str | int]) -> str:
    """`('rules', 2, 'route')` -> `rules[2].route`."""
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            out += ("." if out else "") + str(step)
    return out


def suggested_env_var(loc: Sequence[str | int]) -> str:
    """`crms.salesforce.auth.client_secret` -> `SALESFORCE_CLIENT_SECRET`."""
    words = [str(s) for s in loc if isinstance(s, str) and s not in ("crms", "channels", "auth")]
    return "_".join(words).upper() or "SECRET"


def with_path(loc: Sequence[str | int], text: str) -> str:
    """`<key path>: text` (just `text` at the top level)."""
    path = key_path(loc)
    return f"{path}: {text}" if path else text


def from_validation_error(exc: ValidationError, doc: Document, model: type[BaseModel]) -> list[Problem]:
    """One problem per pydantic error, positioned in `doc`."""
    problems = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(step for step in error["loc"] if step != "[key]")
        at: Literal["key", "value"] = "key" if error["type"] == "extra_forbidden" or "[key]" in error["loc"] else "value"
        problems.append(doc.problem(_sentence(error, loc, model), loc, at=at))
    return problems


def _sentence(error: Any, loc: Loc, model: type[BaseModel]) -> str:
    kind: str = error["type"]
    name = loc[-1] if loc else ""
    parent = loc[:-1]
    if kind == "extra_forbidden":
        return _unknown_key(str(name), parent, model)
    if kind == "missing":
        return with_path(loc, _missing(str(name), parent, model))
    if kind == "crmhub_inline_secret":
        return with_path(loc, f"inline secret; write env:VAR or file:PATH (e.g. env:{suggested_env_var(loc)}) "
                              "instead of the value")
    if kind == "crmhub_bad_env_ref":
        return with_path(loc, f"bad env: reference; write env: and a variable name of letters, digits and _, "
                              f"e.g. env:{suggested_env_var(loc)}")
    if kind.startswith("crmhub_"):
        return with_path(loc, str(error["ctx"]["message"]))
    return with_path(loc, _standard(error, loc, model))


def _unknown_key(name: str, parent: Loc, model: type[BaseModel]) -> str:
    holder = _model_at(model, parent)
    valid = list(holder.model_fields) if holder is not None else []
    where = f"in {key_path(parent)}" if parent else "at the top level"
    moved = _MOVED.get((holder.__name__ if holder is not None else "", name))
    if moved:
        return f"unknown key '{name}' {where}: {moved}"
    keyed_by = getattr(holder, "keyed_by", "") if holder is not None else ""
    if keyed_by in _KEYED_NAMES:
        names = _KEYED_NAMES[keyed_by] or tuple(valid)  # match fields take whatsapp_user, statements do not
        return (f"unknown {keyed_by} '{name}' {where}{did_you_mean(name, names)}; "
                f"crmhub supports {', '.join(names)}")
    hint = did_you_mean(name, valid)
    if hint:
        return f"unknown key '{name}' {where}{hint}"
    return f"unknown key '{name}' {where}; valid keys here: {', '.join(valid)}" if valid else \
        f"unknown key '{name}' {where}; remove it"


def _missing(name: str, parent: Loc, model: type[BaseModel]) -> str:
    where = f"under {key_path(parent)}" if parent else "at the top level"
    info = _field_at(model, (*parent, name))
    example = ""
    if info is not None and info.examples:
        example = f", e.g. {name}: {_flow(info.examples[0])}"
    return f"required key is missing; add it {where}{example}"


def _standard(error: Any, loc: Loc, model: type[BaseModel]) -> str:
    kind: str = error["type"]
    value = error.get("input")
    ctx: dict[str, Any] = error.get("ctx") or {}
    got = kind_of(value)
    if kind in ("string_type",):
        return f"expected text, got {got}; write a value in quotes"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"expected a list, got {got}; write [a, b] or one '- item' per line"
    if kind in ("dict_type", "model_type", "model_attributes_type", "mapping_type"):
        return f"expected a mapping of keys, got {got}"
    if kind in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        noun = "channel" if set(choices) == set(CHANNEL_KINDS) else "value"
        return f"unknown {noun} {shown(value)}{did_you_mean(str(value), choices)}; use one of: {', '.join(choices)}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{shown(value)} is out of range; {range_hint(loc, model, ctx)}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} item(s)"
    if kind == "too_long":
        return f"has too many items; at most {ctx.get('max_length')}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"is too long; at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(str(loc[-1]) if not isinstance(loc[-1], int) else str(loc[-2]))
        if hint:
            return f"{hint[0].format(value=shown(value))}; {hint[1]}"
        return f"{shown(value)} does not have the expected form ({ctx.get('pattern')})"
    # No sentence of ours for this type: pydantic's own.
    return f"{error['msg']} (got {got})"


def range_hint(loc: Loc, model: type[BaseModel], ctx: dict[str, Any], *, digits: int | None = None) -> str:
    """`use a number from 1 to 200`, from the field's bounds; `digits`: the loader's own bound on the length."""
    low = high = above = None
    info = _field_at(model, loc)
    for meta in info.metadata if info is not None else []:
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            above = meta.gt
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
    low = ctx.get("ge", low)
    high = ctx.get("le", high)
    above = ctx.get("gt", above)
    if above is not None:
        return f"use a number above {above:g}" + (f" and at most {high}" if high is not None else "")
    if low is not None and high is not None:
        return f"use a number from {low} to {high}"
    if low is not None:
        return f"use a number of at least {low}" + (f" (at most {digits} digits)" if digits else "")
    if high is not None:
        return f"use a number of at most {high}"
    return f"use a number of at most {digits} digits, or quote it if it is text" if digits else \
        "use a smaller or larger number"


def _flow(example: Any) -> str:
    """An example value in YAML flow style."""
    if isinstance(example, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in example.items()) + "}"
    if isinstance(example, list):
        return "[" + ", ".join(_flow(v) for v in example) + "]"
    if isinstance(example, str) and (example.startswith(("+", "{", "[")) or example.replace(".", "").isdigit()):
        return f'"{example}"'
    return str(example)


# --- finding the model and field a key path belongs to ---------------------

def unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional: `Annotated[X | None, ...]` -> X."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, _UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


_UnionType = type(int | None)


def _child(tp: Any, step: str | int) -> Any:
    tp = unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        info = tp.model_fields.get(str(step))
        return info.annotation if info is not None else None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (list, tuple, set, frozenset) and args:
        return args[0]
    return None


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    tp: Any = model
    for step in loc:
        tp = _child(tp, step)
        if tp is None:
            return None
    tp = unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _field_at(model: type[BaseModel], loc: Loc) -> FieldInfo | None:
    """The field a key path ends in (for list items: the list's field)."""
    steps = list(loc)
    while steps and isinstance(steps[-1], int):
        steps.pop()
    if not steps:
        return None
    holder = _model_at(model, tuple(steps[:-1]))
    return holder.model_fields.get(str(steps[-1])) if holder is not None else None


