"""Value types of the configuration files, each with an error written for people.

Every validator here raises `problem(...)`: a pydantic error whose message is
already the final "problem; fix" text, so the loader can print it as is.
Values are never echoed for secrets; other values are echoed, shortened.
"""

from __future__ import annotations

import ipaddress

import difflib
import errno
import os
import re
import stat
import string
import zoneinfo
from contextvars import ContextVar
from collections.abc import Iterable, Mapping
from datetime import time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import phonenumbers
from pydantic import (
    BeforeValidator,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from crmhub.channels import registry
from crmhub.language import SUPPORTED, suggestion

CRMS = ("salesforce", "zendesk", "hubspot")
CHANNELS = registry.names()  # the channel modules (settings keys under `channels:`)
CHANNEL_KINDS = registry.all_channel_values()  # the `Channel` values (routing rules' `when.channel`)
CODE_CHANNELS = tuple(registry.code_channels())  # the `Channel` values one-time link codes go out on
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PLACEHOLDERS = (
    "channel", "channel_label", "direction", "sender", "recipient", "text", "occurred_at",
    "duration", "media_count", "conversation", "rule", "queue", "language",
)


def problem(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message is final text for people ("problem; fix")."""
    return PydanticCustomError(f"crmhub_{kind}", "{message}", {"message": message})


def shown(value: object, limit: int = 60) -> str:
    """`value` as people wrote it in YAML, quoted and shortened (never use on secrets)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = _number(value)
        return text if len(text) <= limit else text[: limit - 3] + "..."
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"'{text}'"


def _number(value: int | float) -> str:
    # Python refuses to print integers of more than 4300 digits (int_max_str_digits).
    try:
        return repr(value)
    except ValueError:
        return f"a number of about {int(abs(int(value)).bit_length() * 0.30103)} digits"


def did_you_mean(word: str, choices: Iterable[object], form: str = "'{}'") -> str:
    """' (did you mean 'x'?)' when one of `choices` is close to `word`, else ''."""
    names = [str(c) for c in choices]
    lowered = {n.lower(): n for n in names}
    if str(word).lower() in lowered:
        close = [lowered[str(word).lower()]]
    else:
        close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    return f" (did you mean {form.format(close[0])}?)" if close else ""


# --- durations -------------------------------------------------------------

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_DURATION = timedelta(days=3650)
"""No interval crmhub waits for is longer; beyond it, `timedelta` overflows soon after (1e308, 9999999999999d)."""
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?(ms|s|m|h|d))+\s*$|^\s*\d+(\.\d+)?\s*$"


def parse_duration(value: object) -> timedelta:
    """`500ms`, `30s`, `10m`, `1h`, `1d` (or `1h30m`), or a number of seconds.

    Raises:
        ValueError: with the message for people.
    """
    if isinstance(value, timedelta):
        return value
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:  # nan is not >= 0
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if re.fullmatch(r"\d+(\.\d+)?", text):
            seconds = float(text)
        elif parts and "".join(n + u for n, u in parts) == text:
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds is None:
        raise ValueError(f"bad duration {shown(value)}; write e.g. 30s, 10m, 1h")
    # Compared before `timedelta` is built: it overflows with a traceback, not a message.
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{shown(value)} is too long; use at most {format_duration(MAX_DURATION)} (10 years)")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest text `parse_duration` reads back: `1h30m`, `500ms`, `0s`."""
    millis = round(value.total_seconds() * 1000)
    if millis == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, millis = divmod(millis, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def _duration(value: object) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise problem("duration", str(exc)) from None


def _positive_duration(value: object) -> timedelta:
    result = _duration(value)
    if result <= timedelta(0):
        raise problem("duration", f"must be longer than 0s, got {shown(value)}; write e.g. 30s, 10m, 1h")
    return result


_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": DURATION_PATTERN},
        {"type": "number", "minimum": 0},
    ],
    "description": "A duration: 500ms, 30s, 10m, 1h, 1d (combinable: 1h30m) or a number of seconds.",
}

Duration = Annotated[
    timedelta,
    PlainValidator(_duration),
    PlainSerializer(format_duration),
    WithJsonSchema(_DURATION_SCHEMA),
]
"""A duration (0 allowed)."""

PositiveDuration = Annotated[
    timedelta,
    PlainValidator(_positive_duration),
    PlainSerializer(format_duration),
    WithJsonSchema(_DURATION_SCHEMA),
]
"""A duration longer than zero."""


# --- percentages -----------------------------------------------------------

PERCENT_PATTERN = r"^\s*\d+(\.\d+)?\s*%\s*$"


def parse_percent(value: object) -> float:
    """`20%` or `0.2` -> 0.2, between 0 and 1.

    Raises:
        ValueError: with the message for people.
    """
    result: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            result = float(value)
        except OverflowError:  # an int past 1e308
            result = None
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(PERCENT_PATTERN, text):
            result = float(text.rstrip("% ")) / 100
        elif re.fullmatch(r"\d+(\.\d+)?", text):
            result = float(text)
    if result is None or not 0 <= result <= 1:
        raise ValueError(f"bad percentage {shown(value)}; write e.g. 20% or 0.2 (from 0% to 100%)")
    return result


def _percent(value: object) -> float:
    try:
        return parse_percent(value)
    except ValueError as exc:
        raise problem("percent", str(exc)) from None


Percent = Annotated[
    float,
    PlainValidator(_percent),
    PlainSerializer(lambda v: f"{v * 100:g}%"),
    WithJsonSchema({
        "anyOf": [
            {"type": "string", "pattern": PERCENT_PATTERN},
            {"type": "number", "minimum": 0, "maximum": 1},
        ],
        "description": "A share: 20% or 0.2.",
    }),
]
"""A share from 0 to 1, written `20%` or `0.2`."""


# --- files -----------------------------------------------------------------

MAX_NAME_BYTES = 255  # NAME_MAX: one name in a path
MAX_PATH_BYTES = 4096  # PATH_MAX: a whole path
MAX_SECRET_BYTES = 64 * 1024


class FileRefused(Exception):
    """A file crmhub will not read; the message (without a fix) is for people.

    `kind` says which fix applies: "path" (no file can have it), "kind" (not a
    regular file) or "size" (too large).
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


def path_problem(path: str) -> str | None:
    """Why `path` cannot name a file (None: it can), found before the system is asked.

    The system's own answers are exceptions of several kinds (ValueError for
    a NUL, OSError for a long name, UnicodeEncodeError for a lone surrogate).
    """
    if "\0" in path:
        return "the path holds a NUL character"
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:
        return "the path holds a character no file name can hold"
    if len(raw) > MAX_PATH_BYTES:
        return f"the path is longer than {MAX_PATH_BYTES} bytes"
    if any(len(name) > MAX_NAME_BYTES for name in raw.split(os.fsencode(os.sep))):
        return f"a name in the path is longer than {MAX_NAME_BYTES} bytes"
    return None


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file `path`, refused past `limit` bytes.

    Devices and pipes are refused before they are opened, so `/dev/zero` or a
    FIFO with no writer cannot fill memory or block the loader.

    Raises:
        FileRefused: a path no file can have, not a regular file, or too large.
        OSError: the system's answer (FileNotFoundError, IsADirectoryError, PermissionError...).
    """
    reason = path_problem(str(path))
    if reason:
        raise FileRefused("path", reason)
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(mode):
        raise FileRefused("kind", "not a regular file")
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileRefused("size", f"larger than {limit // 1024} KiB")
    return data


# --- secrets ---------------------------------------------------------------

_ENV_REF = re.compile(r"env:([A-Za-z_][A-Za-z0-9_]*)")
_CREDENTIAL_REF = re.compile(r"credential:([A-Za-z0-9_][A-Za-z0-9_.-]*)")
SECRET_REF_PATTERN = r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+|credential:[A-Za-z0-9_][A-Za-z0-9_.-]*)$"


class SecretUnavailable(Exception):
    """A secret reference points at nothing readable; the message is for people."""


def _read_secret_file(path: Path) -> str:
    """A secret file's stripped text.

    Raises:
        SecretUnavailable: unreadable, not UTF-8, too large or empty (the message names the file, never its content).
    """
    try:
        value = read_bounded(path, MAX_SECRET_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError, FileRefused) as exc:
        if isinstance(exc, FileRefused):
            reason = str(exc)
        else:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise SecretUnavailable(
            f"cannot read secret file {display_path(path)} ({reason}); create it or fix the path "
            "(relative paths start at the settings file's directory)") from None
    if not value.strip():
        raise SecretUnavailable(f"secret file {display_path(path)} is empty; write the secret in it")
    return value.strip()


class SecretRef(SecretStr):
    """A secret written by reference, `env:NAME`, `file:PATH` or `credential:NAME`, resolved at load.

    `credential:NAME` is systemd's `LoadCredential=NAME:...`: the file NAME in
    `$CREDENTIALS_DIRECTORY`, readable by the service alone (deploy/crmhub.service).

    It is a `pydantic.SecretStr`: `get_secret_value()` returns the resolved
    value, while `repr`, `str` and dumps show only the reference. A value
    written inline in the YAML is refused at load, never stored.
    """

    def __init__(self, ref: str, value: str | None = None) -> None:
        super().__init__(value if value is not None else "")
        self._ref = ref
        self._resolved = value is not None

    @property
    def ref(self) -> str:
        """The reference as written: `env:NAME` or `file:PATH`."""
        return self._ref

    @property
    def source(self) -> str:
        """`env`, `file` or `credential`."""
        return self._ref.partition(":")[0]

    @property
    def target(self) -> str:
        """The variable name or the file path, as written."""
        return self._ref.partition(":")[2]

    @property
    def resolved(self) -> bool:
        """Whether the value was read (False after `load_config(resolve_secrets=False)`)."""
        return self._resolved

    def get_secret_value(self) -> str:
        """The secret itself; only hand it to the SDK that needs it.

        Raises:
            RuntimeError: the configuration was loaded with `resolve_secrets=False`.
        """
        if not self._resolved:
            raise RuntimeError(f"secret {self._ref} was not read: its CRM or channel is disabled, or the "
                               "configuration was loaded with resolve_secrets=False")
        return str(self._secret_value)

    def resolve(self, *, environ: Mapping[str, str], base_dir: Path) -> SecretRef:
        """A copy holding the value the reference points at.

        Raises:
            SecretUnavailable: the variable is unset or empty, the file unreadable or empty.
        """
        if self.source == "env":
            value = environ.get(self.target)
            if value is None:
                raise SecretUnavailable(
                    f"environment variable {self.target} is not set; export it or point to a file with file:PATH")
            if not value.strip():
                raise SecretUnavailable(
                    f"environment variable {self.target} is empty; export the secret in it or point to a file with file:PATH")
            return SecretRef(self._ref, value.strip())
        if self.source == "credential":
            directory = environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise SecretUnavailable(
                    f"credential {self.target}: $CREDENTIALS_DIRECTORY is not set (systemd sets it for a unit with "
                    f"LoadCredential={self.target}:PATH); run under that unit or use env:NAME or file:PATH")
            return SecretRef(self._ref, _read_secret_file(Path(directory) / self.target))
        return SecretRef(self._ref, _read_secret_file(self.path(base_dir)))

    def path(self, base_dir: Path) -> Path:
        """For `file:` references, the file (relative paths start at `base_dir`)."""
        return base_dir / Path(os.path.expanduser(self.target))

    def __repr__(self) -> str:
        return f"SecretRef({self._ref!r})"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretRef):
            return NotImplemented
        return (self._ref, self._resolved, self._secret_value) == (other._ref, other._resolved, other._secret_value)

    def __hash__(self) -> int:
        return hash(self._ref)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: v.ref),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": SECRET_REF_PATTERN,
            "description": "A secret reference: env:VARIABLE, file:PATH (relative to the settings file) or "
                           "credential:NAME (systemd's LoadCredential=). "
                           "Secret values are never written inline.",
        }

    @classmethod
    def _validate(cls, value: object) -> SecretRef:
        if isinstance(value, SecretRef):
            return value
        if isinstance(value, str):
            text = value.strip()
            if _ENV_REF.fullmatch(text):
                return cls(text)
            if text.startswith("file:") and text[5:].strip():
                target = text[5:].strip()
                # Checked before expanduser, which asks the system about `~name`.
                reason = path_problem(target) or path_problem(os.path.expanduser(target))
                if reason:  # the path is no secret: the key holds a reference
                    raise problem("secret_path", f"{reason}; fix the path after file:")
                return cls("file:" + text[5:].strip())
            if _CREDENTIAL_REF.fullmatch(text):
                return cls(text)
            if text.startswith("env:"):
                # Only the prefix is shown: whatever follows may be the secret itself.
                raise PydanticCustomError("crmhub_bad_env_ref", "bad env: reference", {})
        # The message is written by the loader, which knows the key path; the
        # value is never part of it.
        raise PydanticCustomError("crmhub_inline_secret", "inline secret", {})


# --- text with a shape -----------------------------------------------------

def _region(value: object) -> str:
    if isinstance(value, str) and value.strip().upper() in phonenumbers.SUPPORTED_REGIONS:
        return value.strip().upper()
    hint = did_you_mean(str(value).upper(), sorted(phonenumbers.SUPPORTED_REGIONS)) if isinstance(value, str) else ""
    raise problem("region", f"unknown region {shown(value)}{hint}; write an ISO 3166 alpha-2 code such as US, GB, DE")


Region = Annotated[
    str,
    PlainValidator(_region),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{2}$",
                    "description": "ISO 3166 alpha-2 region known to phonenumbers (US, GB, DE...)."}),
]
"""A region code for parsing phone numbers written without a country code."""


def _language(value: object) -> str:
    if isinstance(value, str) and value in SUPPORTED:
        return value
    close = suggestion(value) if isinstance(value, str) else None
    hint = f" (did you mean '{close}'?)" if close else ""
    raise problem("language", f"{shown(value)} is not a language the detector knows{hint}; write an ISO 639-1 code "
                              "in lower case from the list in docs/languages.md, e.g. en, es, tr, ru, zh")


LanguageCode = Annotated[
    str,
    PlainValidator(_language),
    WithJsonSchema({"type": "string", "pattern": "^[a-z]{2}$",
                    "description": "ISO 639-1 code the language detector supports (docs/languages.md)."}),
]
"""A language crmhub can detect, route by and write texts in."""


def normalize_phone(value: object, region: str) -> str:
    """A phone number written any common way -> E.164 (`+14155550100`).

    Raises:
        PydanticCustomError: not a possible phone number in `region`.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise problem("phone", f"phone number {shown(value)} must be quoted; write it as text, e.g. '+14155550100' "
                               "(unquoted, YAML reads it as a number and drops the +)")
    if not isinstance(value, str):
        raise problem("phone", f"expected a phone number as text, got {kind_of(value)}; write e.g. '+14155550100'")
    try:
        parsed = phonenumbers.parse(value.strip(), region)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_possible_number(parsed):
        raise problem("phone", f"{shown(value)} is not a valid phone number (region {region}); "
                               "write it in international form, e.g. +14155550100")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


# The region phone numbers are parsed in, for models whose region is not a
# sibling field (set by `region_scope`); None when that region is itself wrong.
PHONE_REGION: ContextVar[str | None] = ContextVar("crmhub_phone_region", default=None)


def check_region(value: object) -> str | None:
    """`value` as a region code, or None when it is not one."""
    try:
        return _region(value)
    except PydanticCustomError:
        return None


def _region_for(info: ValidationInfo) -> str | None:
    if "default_region" in info.data:
        return str(info.data["default_region"])
    return PHONE_REGION.get()


def _phone(value: object, info: ValidationInfo) -> object:
    region = _region_for(info)
    if region is None:  # the region is wrong: that is the problem reported
        return value
    return normalize_phone(value, region)


Phone = Annotated[str, PlainValidator(_phone), WithJsonSchema({"type": "string", "examples": ["+14155550100"]})]
"""A phone number in any format parsable in the model's `default_region`, stored as E.164."""


def _identity_value(value: object, info: ValidationInfo) -> object:
    if isinstance(value, str) and value.strip().startswith("@"):
        handle = value.strip()[1:].lower()
        if re.fullmatch(r"[a-z0-9_]{1,15}", handle):
            return "@" + handle
        raise problem("identity", f"{shown(value)} is not an X handle; write @ and up to 15 letters, digits or _")
    if isinstance(value, str) and "@" in value:
        local, _, domain = value.strip().lower().rpartition("@")
        if local and "." in domain and " " not in value.strip():
            return f"{local}@{domain}"
        raise problem("identity", f"{shown(value)} is not an email address; write e.g. team@acme.com")
    region = _region_for(info)
    if region is None:
        return value
    try:
        return normalize_phone(value, region)
    except PydanticCustomError as exc:
        if isinstance(value, str) and not any(ch.isdigit() for ch in value):
            raise problem("identity", f"{shown(value)} is neither a phone number, an email address nor an @handle; "
                                      "write e.g. +14155550100, team@acme.com or @acme") from None
        raise exc from None


IdentityValue = Annotated[str, PlainValidator(_identity_value), WithJsonSchema({
    "type": "string",
    "description": "A phone number (E.164 after load), an email address (lower-cased) or an X @handle (lower-cased).",
})]
"""A phone, email or X handle, normalised like crmhub's identities."""


def _regex(value: object) -> str:
    if not isinstance(value, str):
        raise problem("regex", f"expected a regular expression as text, got {kind_of(value)}; quote it")
    try:
        re.compile(value)
    except re.error as exc:
        column = (exc.pos or 0) + 1
        raise problem("regex", f"invalid regular expression {shown(value)}: {exc.msg} at column {column} of the pattern; "
                               "fix the pattern (Python re syntax; in double quotes write \\\\ for one backslash)") from None
    return value


Regex = Annotated[str, PlainValidator(_regex), WithJsonSchema({"type": "string", "format": "regex"})]
"""A Python regular expression, checked at load."""


def _url(value: object) -> str:
    if isinstance(value, str):
        parts = urlsplit(value.strip())
        if parts.scheme in ("http", "https") and parts.netloc:
            if parts.password:
                raise problem("url", "the URL holds a password; leave credentials out of URLs and use the secret keys")
            return value.strip().rstrip("/")
    raise problem("url", f"{shown(value)} is not an http(s) URL; write the full URL, e.g. https://example.com")


Url = Annotated[str, PlainValidator(_url), WithJsonSchema({"type": "string", "format": "uri", "pattern": "^https?://"})]
"""An http:// or https:// URL (a trailing slash is dropped)."""


def _text_id(value: object) -> object:
    # `pipeline: 0` and `api_version: 59.0` are ids written unquoted.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.1f}" if isinstance(value, float) else str(value)
    return value


TextId = Annotated[str, BeforeValidator(_text_id)]
"""Text that may be written as an unquoted number (`pipeline: 0`)."""


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


def one_or_many(item: Any) -> Any:
    """A list type that also accepts one bare value (`channel: sms`)."""
    return Annotated[list[item], BeforeValidator(_as_list)]


def parse_time_of_day(value: object) -> time:
    """`08:00` (or `8:00`, `08:00:30`) -> time.

    Raises:
        PydanticCustomError: with the message for people.
    """
    if isinstance(value, time):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", value.strip())
        if match and int(match[1]) < 24 and int(match[2]) < 60 and int(match[3] or 0) < 60:
            return time(int(match[1]), int(match[2]), int(match[3] or 0))
    raise problem("time", f"{shown(value)} is not a time of day; write HH:MM in 24-hour form, e.g. 08:00")


TimeOfDay = Annotated[
    time,
    PlainValidator(parse_time_of_day),
    PlainSerializer(lambda v: v.strftime("%H:%M") if not v.second else v.strftime("%H:%M:%S")),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}:\d{2}(:\d{2})?$"}),
]
"""A time of day, `HH:MM`."""


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _timezone(value: object) -> str:
    if isinstance(value, str) and value.strip():
        name = value.strip()
        try:
            zoneinfo.ZoneInfo(name)
            return name
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
        hint = did_you_mean(name, sorted(_zones()))
    else:
        hint = ""
    raise problem("timezone", f"unknown time zone {shown(value)}{hint}; write an IANA name such as Europe/London or UTC")


TimeZoneName = Annotated[str, PlainValidator(_timezone), WithJsonSchema({"type": "string", "examples": ["Europe/London"]})]
"""An IANA time zone name (`Europe/London`)."""


def _placeholders(value: object, code: str, example: str) -> list[str]:
    """The `{names}` in a text with placeholders; problem `code` when it is no text or its braces are unbalanced."""
    if not isinstance(value, str):
        raise problem(code, f"expected a template as text, got {kind_of(value)}; quote it, e.g. \"{example}\"")
    try:
        return [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError:
        raise problem(code, f"unbalanced braces in {shown(value)}; placeholders look like {example}, "
                            "write {{ and }} for literal braces") from None


def _template(value: object) -> str:
    fields = _placeholders(value, "template", "{text}")
    valid = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    for name in fields:
        if name not in PLACEHOLDERS:
            what = "empty placeholder {}" if not name else f"unknown placeholder {{{name}}}"
            raise problem("template", f"{what}{did_you_mean(name, PLACEHOLDERS, '{{{}}}')}; use {valid}")
    return value


Template = Annotated[str, PlainValidator(_template), WithJsonSchema({
    "type": "string",
    "description": "Text with placeholders: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS),
})]
"""Text with `{placeholders}` from `PLACEHOLDERS`."""


def _code_text(value: object) -> str:
    fields = _placeholders(value, "code_text", "{code}")
    assert isinstance(value, str)
    for name in fields:
        if name != "code":
            what = "empty placeholder {}" if not name else f"unknown placeholder {{{name}}}"
            raise problem("code_text", f"{what} in a code's text; the only placeholder is {{code}}")
    if "code" not in fields:
        raise problem("code_text", f"{shown(value)} has no {{code}}; write {{code}} where the one-time code goes")
    return value


CodeText = Annotated[str, PlainValidator(_code_text), WithJsonSchema({
    "type": "string", "description": "Text with {code} where the one-time code goes (its only placeholder)."})]
"""The text of a one-time link code's message: `{code}` at least once, no other placeholder."""


def _scalar(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise problem("scalar", f"expected one value (text, number, true/false), got {kind_of(value)}")


Scalar = Annotated[
    str | int | float | bool | None,
    PlainValidator(_scalar),
    WithJsonSchema({"type": ["string", "number", "boolean", "null"]}),
]
"""One YAML scalar value."""


def kind_of(value: object) -> str:
    """How a YAML value reads to people: 'a mapping', 'a list', 'text 'x'', 'the number 3'."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return shown(value)
    if isinstance(value, int | float):
        text = _number(value)
        return text if " " in text else f"the number {text}"
    if isinstance(value, str):
        return f"text {shown(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def display_path(path: Path | str) -> str:
    """`path` relative to the working directory when it lies below it, else absolute."""
    absolute = os.path.abspath(path)
    cwd = os.getcwd()
    if absolute == cwd:
        return "."
    if absolute.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(absolute, cwd)
    return absolute


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only (localhost, 127.0.0.0/8, ::1); a host name may resolve to anything."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False
