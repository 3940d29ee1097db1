"""The channel registry: one entry per channel module, plain data so anything may import it.

An entry names the channel module (`module:attribute`, a `ChannelModule`),
the model of its `channels.<name>` settings block, the `Channel` values it
reports (with the label people read in CRM subjects), the identity kinds
it verifies and those it can send a one-time link code to. Everything else about a channel lives in its module
(`crmhub.channels.ChannelModule`); the engine, the wiring, the webhook
receiver, the replies, `crmhub check` and the ops tools go through
`crmhub.channels.load(name)` and name no channel. Adding one: docs/channels.md.

`module=None`: a channel whose values and source are reserved (other code
and stored rows may already name them) but whose module is not built yet;
it has no settings block and is never enabled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crmhub.channels.contract import ChannelModule


@dataclass(frozen=True)
class Entry:
    """One channel module, as the registry knows it before importing anything."""

    name: str
    """The settings key (`channels.<name>`) and the source of its cursors and dead letters."""
    module: str | None
    """`package.module:ATTRIBUTE`, the channel's `ChannelModule` instance (None: reserved, not built)."""
    settings: str | None
    """`package.module:Model`, the pydantic model of the `channels.<name>` block."""
    channels: dict[str, str] = field(default_factory=dict)
    """The `Channel` values it reports and replies on, with their labels (CRM subjects, history)."""
    identity_kinds: tuple[str, ...] = ()
    """The `IdentityKind` values it verifies (the sender identities its items carry)."""
    writable: tuple[str, ...] = ()
    """The `Channel` values it replies on (agents' replies, survey questions)."""
    codes: dict[str, str] = field(default_factory=dict)
    """Identity kind -> the `Channel` value it sends one-time link codes to a claimed identity of that kind on."""
    threaded: tuple[str, ...] = ()
    """The `Channel` values whose replies answer the customer's latest message by its id (`in_reply_to`)."""


ENTRIES: dict[str, Entry] = {
    "twilio": Entry("twilio", "crmhub.channels.twilio.module:MODULE", "crmhub.channels.twilio.settings:TwilioSettings",
                    {"sms": "SMS", "whatsapp": "WhatsApp", "call": "Call"}, ("phone", "wa_user"), ("sms", "whatsapp"),
                    {"phone": "sms"}),
    "x": Entry("x", "crmhub.channels.x.module:MODULE", "crmhub.channels.x.settings:XSettings",
               {"x_mention": "X mention", "x_dm": "X DM"}, ("x", "x_handle"), ("x_mention", "x_dm"),
               threaded=("x_mention",)),
    "email": Entry("email", "crmhub.channels.email.module:MODULE", "crmhub.channels.email.settings:EmailSettings",
                   {"email": "Email"}, ("email",), ("email",), {"email": "email"}, threaded=("email",)),
    "meta": Entry("meta", "crmhub.channels.meta.module:MODULE", "crmhub.channels.meta.settings:MetaSettings",
                  {"messenger": "Messenger", "instagram": "Instagram"}, ("fb_psid", "ig_sid"),
                  ("messenger", "instagram")),
}


def names(*, built_only: bool = True) -> tuple[str, ...]:
    """The channel modules' names in registry order (the order channels are polled, listed and checked)."""
    return tuple(name for name, entry in ENTRIES.items() if entry.module is not None or not built_only)


def entry(name: str) -> Entry:
    return ENTRIES[name]


def source_of(channel: str) -> str:
    """The channel module reporting `channel` (a `Channel` value): its cursors' and dead letters' source."""
    for entry_ in ENTRIES.values():
        if channel in entry_.channels:
            return entry_.name
    raise KeyError(f"no channel module reports {channel!r}; add it to crmhub/channels/registry.py")


def label_of(channel: str) -> str:
    """How people call `channel` (a `Channel` value); an unregistered one reads as its value, capitalised."""
    for entry_ in ENTRIES.values():
        if channel in entry_.channels:
            return entry_.channels[channel]
    return channel.replace("_", " ").capitalize()


def channels_of(name: str) -> tuple[str, ...]:
    """The `Channel` values channel module `name` reports."""
    return tuple(ENTRIES[name].channels)


def all_channel_values(*, built_only: bool = True) -> tuple[str, ...]:
    """Every `Channel` value a channel module reports (`built_only=False`: reserved ones too)."""
    return tuple(value for name in names(built_only=built_only) for value in ENTRIES[name].channels)


def writable_values() -> tuple[str, ...]:
    """Every `Channel` value a built channel module replies on."""
    return tuple(value for name in names() for value in ENTRIES[name].writable)


def threaded_values() -> frozenset[str]:
    """Every `Channel` value whose replies name the message they answer (an X mention's post, an email's Message-ID)."""
    return frozenset(value for name in names() for value in ENTRIES[name].threaded)


def code_channels() -> dict[str, str]:
    """Every `Channel` value a built channel module sends one-time link codes on, with its module's name."""
    return {channel: name for name in names() for channel in ENTRIES[name].codes.values()}


def code_kinds() -> dict[str, str]:
    """Every identity kind some built channel module can send a one-time link code to, with the first such module."""
    found: dict[str, str] = {}
    for name in names():
        for kind in ENTRIES[name].codes:
            found.setdefault(kind, name)
    return found


_loaded: dict[str, object] = {}


def load(name: str) -> ChannelModule:
    """Channel module `name` (imported on first use)."""
    module = _loaded.get(name)
    if module is None:
        module = _loaded[name] = _attribute(_built(name).module)
    return module  # type: ignore[return-value]


def settings_model(name: str) -> type:
    """The pydantic model of the `channels.<name>` block."""
    return _attribute(_built(name).settings)  # type: ignore[return-value]


def _built(name: str) -> Entry:
    found = ENTRIES[name]
    if found.module is None or found.settings is None:
        raise KeyError(f"channel {name!r} is reserved in the registry but has no module yet")
    return found


def _attribute(path: str | None) -> object:
    import importlib

    assert path is not None
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
