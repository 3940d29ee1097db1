"""Loading settings.yaml and the mappings: read, validate, cross-check, resolve secrets.

Every problem of every file is collected and raised at once as one
`ConfigError`, one line per problem, sorted by file and position.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_core import PydanticCustomError

from crmhub.config import _checks, _messages
from crmhub.config._types import CRMS, SecretRef, SecretUnavailable, display_path, path_problem
from crmhub.config._yaml import Document, Loc, Problem, find, plain, read
from crmhub.config.mappings import HistoryMappings, IdentityMappings, RoutingRules
from crmhub.config.settings import Settings
from crmhub.errors import ConfigError

DEFAULTS_DIR = Path(__file__).resolve().parent.parent / "defaults"
DEFAULT_SETTINGS = DEFAULTS_DIR / "settings.yaml"
MAPPING_FILES: dict[str, type[BaseModel]] = {
    "identities": IdentityMappings,
    "routing": RoutingRules,
    "history": HistoryMappings,
}

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration; frozen, secrets masked in every repr."""

    settings: Settings
    identities: IdentityMappings
    routing: RoutingRules
    history: HistoryMappings
    source: Path
    """The settings file it was loaded from."""
    mappings_dir: Path
    """The directory the mapping files were loaded from."""

    def secret(self, path: str) -> SecretStr:
        """The resolved secret at a dotted settings path, e.g. `crms.salesforce.auth.client_secret`.

        Raises:
            KeyError: no setting there, or it is not a secret (or its section is absent).
            RuntimeError: secrets were not resolved (`load_config(resolve_secrets=False)`) or the
                section is disabled.
        """
        node: Any = self.settings
        for part in path.split("."):
            if not isinstance(node, BaseModel) or part not in type(node).model_fields:
                raise KeyError(f"no setting {path}")
            node = getattr(node, part)
        if not isinstance(node, SecretRef):
            raise KeyError(f"{path} is not a secret setting (or it is not set)")
        node.get_secret_value()  # raises RuntimeError when unresolved
        return node

    def database_url(self) -> str:
        """The state store URL for SQLAlchemy, with `state.password` put in (keep it out of logs)."""
        state = self.settings.state
        if state.password is None:
            return state.url
        from sqlalchemy.engine import make_url  # only the daemon needs SQLAlchemy here

        url = make_url(state.url).set(password=state.password.get_secret_value())
        return url.render_as_string(hide_password=False)


def load_config(settings_path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                resolve_secrets: bool = True) -> Config:
    """Load and validate `settings_path` and the three mapping files next to it.

    Args:
        settings_path: the settings file; None means the embedded sandbox defaults
            (`crmhub/defaults/settings.yaml` and `crmhub/defaults/mappings/`).
        environ: where `env:` secrets are looked up (default: `os.environ`).
        resolve_secrets: False checks only the syntax of secret references (for
            validating where the secrets are absent, e.g. in CI).

    Returns:
        The frozen configuration; with `sandbox.enabled`, empty base_urls point at the emulators.

    Raises:
        ConfigError: every problem found, one line each:
            `<file>:<line>:<col>: <key path>: <problem>; <fix>`.
    """
    visited: list[Document] = []
    try:
        return _load(settings_path, os.environ if environ is None else environ, resolve_secrets, visited)
    except ConfigError:
        raise
    except Exception as exc:  # the last line of defence: a bug in a check must not reach people as a traceback
        doc = visited[-1] if visited else Document(Path(os.fspath(settings_path or DEFAULT_SETTINGS)), 0)
        # Not chained, like every ConfigError: the exception may quote a value, and values may be secrets.
        raise ConfigError([str(Problem(doc.order, 1, 1, doc.display, f"internal error: {type(exc).__name__} while "
                                       "checking this file; this is a bug in crmhub, please report it"))]) from None


def _load(settings_path: str | Path | None, environ: Mapping[str, str], resolve_secrets: bool,
          visited: list[Document]) -> Config:
    """`load_config`, recording in `visited` each file as it gets to it (for the last line of defence)."""
    if settings_path is None:
        path, shown = DEFAULT_SETTINGS, display_path(DEFAULT_SETTINGS)
        # The embedded defaults' relative sqlite file goes in the working
        # directory, never inside the installed package.
        state_dir = Path.cwd()
    else:
        given = os.fspath(settings_path)
        path = Path(os.path.abspath(given))
        shown = os.path.normpath(given) if not os.path.isabs(given) else display_path(path)
        state_dir = path.parent
    # Under systemd's StateDirectory= (the unit in deploy/), a relative SQLite file lives in the state
    # directory, never next to settings in a read-only /etc.
    if environ.get("STATE_DIRECTORY"):
        state_dir = Path(environ["STATE_DIRECTORY"].split(":")[0])
    settings_doc = Document(path, 0, shown)
    visited.append(settings_doc)
    problems = _read(settings_doc, Settings)
    settings: Settings | None = None
    resolved: dict[Loc, SecretRef] = {}
    enabled: tuple[str, ...] | None = None
    configured: tuple[str, ...] | None = None
    if not problems:
        settings, found = _validate(Settings, settings_doc, {"base_dir": state_dir})
        problems += found + _checks.check_settings(settings_doc)
        enabled = _checks.enabled_names(settings_doc.tree, "crms", CRMS)
        configured = _checks.enabled_names(settings_doc.tree, "crms", CRMS, include_disabled=True)
        if resolve_secrets:
            resolved, found = _resolve_secrets(settings_doc, environ)
            problems += found

    mappings_dir, docs, found = _mapping_docs(settings_doc, shown)
    problems += found
    models: dict[str, BaseModel | None] = {}
    for kind, doc in docs.items():
        visited.append(doc)
        found = _read(doc, MAPPING_FILES[kind])
        problems += found
        if found:
            models[kind] = None
            continue
        models[kind], found = _validate(MAPPING_FILES[kind], doc, {})
        problems += found
        if kind == "identities":
            problems += _checks.check_identities(doc, enabled, settings_doc.display, configured)
        elif kind == "routing":
            problems += _checks.check_routing(doc, enabled, settings_doc.display, configured)

    if problems or settings is None or any(m is None for m in models.values()):
        raise ConfigError(_lines(problems))
    visited.append(settings_doc)  # what is left builds the settings
    for loc, secret in resolved.items():
        settings = _replace(settings, loc, secret)
    return Config(
        settings=settings.with_sandbox_urls(),
        identities=_as(IdentityMappings, models["identities"]),
        routing=_as(RoutingRules, models["routing"]),
        history=_as(HistoryMappings, models["history"]),
        source=path,
        mappings_dir=mappings_dir,
    )


def _lines(problems: list[Problem]) -> list[str]:
    return list(dict.fromkeys(str(problem) for problem in sorted(problems)))


def _read(doc: Document, model: type[BaseModel]) -> list[Problem]:
    """Read `doc`, then refuse values no check should see; a file with problems here is not validated.

    After refused values the tree stays, so the mapping files can still be found and checked.
    """
    return read(doc) or _checks.refused_values(doc, model)


def _as(cls: type[M], value: BaseModel | None) -> M:
    assert isinstance(value, cls)
    return value


def _validate(model: type[M], doc: Document, context: dict[str, Any]) -> tuple[M | None, list[Problem]]:
    try:
        return model.model_validate(plain(doc.tree), context=context), []
    except ValidationError as exc:
        # The error is translated here and not chained: its inputs may hold secrets.
        return None, _messages.from_validation_error(exc, doc, model)


def _mapping_docs(settings_doc: Document, settings_shown: str) -> tuple[Path, dict[str, Document], list[Problem]]:
    """The mapping files' documents, or the problem with the mappings directory."""
    tree = settings_doc.tree
    raw = tree.get("mappings", "mappings/") if tree is not None else "mappings/"
    if not isinstance(raw, str) or not raw.strip():
        return settings_doc.path.parent, {}, []  # pydantic reports the bad value
    relative = raw
    directory = Path(os.path.abspath(settings_doc.path.parent / os.path.expanduser(relative.strip())))
    if os.path.isabs(relative):
        shown_dir = display_path(directory)
    else:
        shown_dir = os.path.normpath(os.path.join(os.path.dirname(settings_shown), relative.strip()))
    if tree is None:  # the settings file is the problem; do not guess further
        return directory, {}, []
    reason = path_problem(relative.strip()) or path_problem(str(directory))
    if reason:
        text = (f"{reason}; point mappings: at the directory of the mapping files "
                "(relative to the settings file)")
        return settings_doc.path.parent, {}, [settings_doc.problem(_messages.with_path(("mappings",), text),
                                                                   ("mappings",))]
    if not directory.is_dir():
        text = (f"directory {shown_dir.rstrip(os.sep) + os.sep} not found; create it with identities.yaml, routing.yaml and history.yaml, "
                "or point mappings: at the right directory (relative to the settings file)")
        return directory, {}, [settings_doc.problem(_messages.with_path(("mappings",), text), ("mappings",))]
    docs = {
        kind: Document(directory / f"{kind}.yaml", order, os.path.join(shown_dir, f"{kind}.yaml"))
        for order, kind in enumerate(MAPPING_FILES, start=1)
    }
    return directory, docs, []


def _secret_fields(model: type[BaseModel], tree: Any, prefix: Loc = ()) -> Iterator[tuple[Loc, Any]]:
    """(key path, raw value) of every secret field written in `tree`."""
    if not isinstance(tree, Mapping):
        return
    for name, info in model.model_fields.items():
        if name not in tree:
            continue
        tp = _messages.unwrap(info.annotation)
        if tp is SecretRef:
            yield (*prefix, name), tree[name]
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            yield from _secret_fields(tp, tree[name], (*prefix, name))


def _resolve_secrets(doc: Document, environ: Mapping[str, str]) -> tuple[dict[Loc, SecretRef], list[Problem]]:
    """Read every secret of an enabled section; problems name the variable or file."""
    resolved: dict[Loc, SecretRef] = {}
    problems: list[Problem] = []
    for loc, raw in _secret_fields(Settings, doc.tree):
        if loc[0] in ("crms", "channels") and not _checks.is_enabled(find(doc.tree, loc[:2])):
            continue  # a disabled CRM or channel needs no credentials
        try:
            ref = SecretRef._validate(raw)
        except PydanticCustomError:  # a bad reference: pydantic reports it
            continue
        try:
            resolved[loc] = ref.resolve(environ=environ, base_dir=doc.path.parent)
        except SecretUnavailable as exc:
            problems.append(doc.problem(_messages.with_path(loc, str(exc)), loc))
    return resolved, problems


def _replace(model: M, loc: Loc, value: Any) -> M:
    """A copy of `model` with the field at `loc` replaced (models are frozen)."""
    name = str(loc[0])
    if len(loc) == 1:
        return model.model_copy(update={name: value})
    return model.model_copy(update={name: _replace(getattr(model, name), loc[1:], value)})
