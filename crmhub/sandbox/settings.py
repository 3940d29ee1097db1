"""Settings for a running sandbox: the embedded defaults, pointed at live ports.

`crmhub demo` and the end-to-end tests start emulators on free ports; this
writes a settings.yaml (plus a copy of the example mappings) that points
crmhub at them, so what runs is exactly what an admin's file would run.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML

from crmhub.config import DEFAULT_SETTINGS, DEFAULTS_DIR

SECRETS_DIR = DEFAULTS_DIR / "sandbox-secrets"
CRMS = ("salesforce", "zendesk", "hubspot")
CHANNELS = ("twilio", "x", "meta")
MAIL = "email"  # the channel the sandbox mail server serves: IMAP and SMTP ports, no base_url


def write_sandbox_settings(directory: Path, urls: Mapping[str, str], *, state_url: str | None = None,
                           enabled: Iterable[str] = ("salesforce", "twilio"), webhooks_port: int | None = None,
                           every: str | None = None, ops_port: int = 0, base_port: int | None = None,
                           surveys: bool = False) -> Path:
    """Write `settings.yaml` and `mappings/` into `directory`; returns the settings path.

    Args:
        urls: base URL per API (from the running emulators); the mail server's as `mail-imap`, `mail-smtp`
            (its listener URLs), which the email channel's IMAP and SMTP ports are taken from.
        state_url: the state store (default: `crmhub.db` in `directory`).
        enabled: the CRMs and channels ("email" too) to switch on; the others stay in the file, off.
        webhooks_port: serve webhooks there (None: webhooks off; the polls find everything).
        every: one interval for every poll and delivery job (e.g. "1s" for tests).
        ops_port: the ops listener's port (default 0: a free one, so daemons side by side never collide).
        base_port: instead of `urls`, point at a `crmhub sandbox --base-port N` through
            `sandbox: {enabled: true, base_port: N}`, as an admin would write it.
        surveys: keep the embedded settings' CSAT survey on (the demo); tests switch it on where they test it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    yaml = YAML()
    settings = yaml.load(DEFAULT_SETTINGS.read_text())
    settings["state"]["url"] = state_url or f"sqlite:///{(directory / 'crmhub.db').resolve()}"
    settings["sandbox"]["enabled"] = base_port is not None  # else every base_url is explicit below
    if base_port is not None:
        settings["sandbox"]["base_port"] = base_port
    on = set(enabled)
    for group, names in (("crms", CRMS), ("channels", CHANNELS)):
        for name in names:
            section = settings[group][name]
            section["enabled"] = name in on
            section["base_url"] = urls.get(name)
            _absolute_secret_files(section)
    _point_email(settings["channels"][MAIL], urls, on=MAIL in on)
    settings["webhooks"]["enabled"] = webhooks_port is not None
    if webhooks_port is not None:
        settings["webhooks"]["port"] = webhooks_port
    settings["ops"]["port"] = ops_port
    settings["surveys"]["csat"]["enabled"] = surveys
    if every is not None:
        settings["delivery"]["every"] = every
        settings["replies"]["every"] = every
        for name in (*CHANNELS, MAIL):
            settings["channels"][name]["poll_every"] = every
    mappings = directory / "mappings"
    if mappings.exists():
        shutil.rmtree(mappings)
    shutil.copytree(DEFAULTS_DIR / "mappings", mappings)
    settings["mappings"] = "mappings/"
    buffer = io.StringIO()
    yaml.dump(settings, buffer)
    path = directory / "settings.yaml"
    path.write_text(buffer.getvalue())
    return path


def _point_email(section: dict[str, Any], urls: Mapping[str, str], *, on: bool) -> None:
    """The email block at the running mail server's IMAP and SMTP ports (else `sandbox.base_port` fills them)."""
    section["enabled"] = on
    for kind in ("imap", "smtp"):
        url = urls.get(f"mail-{kind}")
        if url is not None:
            section[kind]["port"] = urlsplit(url).port
    _absolute_secret_files(section)


def _absolute_secret_files(section: dict[str, object]) -> None:
    """`file:sandbox-secrets/x` -> the packaged file's absolute path (the demo dir has no copy)."""
    for key, value in section.items():
        if isinstance(value, dict):
            _absolute_secret_files(value)
        elif isinstance(value, str) and value.startswith("file:sandbox-secrets/"):
            section[key] = f"file:{SECRETS_DIR / value.removeprefix('file:sandbox-secrets/')}"
