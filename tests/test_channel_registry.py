"""The channel registry: every channel value has one module, a label and a source; the built modules agree
with their entries; the engine's wiring reaches each module only through the registry."""

from __future__ import annotations

import ast
from pathlib import Path

from crmhub.channels import registry
from crmhub.config import load_config
from crmhub.config.settings import ChannelSettings
from crmhub.model import Channel, IdentityKind
from crmhub.sandbox.settings import write_sandbox_settings

ROOT = Path(__file__).resolve().parents[1] / "crmhub"


def test_every_channel_value_belongs_to_exactly_one_registry_entry() -> None:
    claimed = [value for entry in registry.ENTRIES.values() for value in entry.channels]
    assert sorted(claimed) == sorted(c.value for c in Channel)
    assert {c: c.source for c in (Channel.SMS, Channel.X_DM, Channel.EMAIL, Channel.MESSENGER,
                                  Channel.INSTAGRAM)} == {
        Channel.SMS: "twilio", Channel.X_DM: "x", Channel.EMAIL: "email", Channel.MESSENGER: "meta",
        Channel.INSTAGRAM: "meta"}
    assert [c.label for c in Channel] == ["SMS", "WhatsApp", "Call", "X mention", "X DM", "Email", "Messenger",
                                          "Instagram"]


def test_identity_kinds_and_replies_named_by_entries_exist() -> None:
    for entry in registry.ENTRIES.values():
        assert {IdentityKind(kind) for kind in entry.identity_kinds}  # each is a known kind
        assert set(entry.writable) <= set(entry.channels), entry.name
    assert (IdentityKind.MESSENGER.value, IdentityKind.INSTAGRAM.value) == ("fb_psid", "ig_sid")


def test_built_modules_declare_their_settings_block_and_reply_channels() -> None:
    for name in registry.names():
        module = registry.load(name)
        assert module.name == name
        assert ChannelSettings.model_fields[name].annotation == registry.settings_model(name) | None
        assert {c.value for c in module.channels} == set(registry.entry(name).channels)
    assert set(ChannelSettings.model_fields) == set(registry.names())  # reserved entries have no block yet


def test_the_wiring_names_no_channel() -> None:
    """app, webhooks, replying, streams, check and ops import no channel connector: they go through the registry."""
    wiring = ["app.py", "webhooks.py", "replying.py", "streams.py", "check/__init__.py", "ops/deadletters.py",
              "scheduler.py", "status.py"]
    for path in wiring:
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        for name in registry.names():
            assert not any(module.endswith(f".{name}") or f".{name}_" in module or f"channels.{name}" in module
                           for module in imported), f"{path} imports {name}'s code: {sorted(imported)}"


def test_the_code_routes_modules_offer_are_the_ones_their_entries_name(tmp_path: Path) -> None:
    """What config validation and `crmhub validate` read from the registry is what the wiring gets from the
    modules: Twilio reaches phones by SMS, email reaches emails by email, nothing reaches an X handle."""
    config = load_config(write_sandbox_settings(tmp_path, {}, enabled=("salesforce", *registry.names())))
    channels = config.settings.channels
    offered = {name: {route.kind.value: route.channel.value for route in registry.load(name).code_routes(
        getattr(channels, name))} for name in registry.names()}
    assert offered == {name: registry.entry(name).codes for name in registry.names()}
    assert registry.code_kinds() == {"phone": "twilio", "email": "email"}


def test_the_engine_names_no_channel_for_codes() -> None:
    """The identity engine and the code store reach a claimed identity through `CodeRoute`s only."""
    for path in ("sync/identity.py", "sync/link_codes.py", "store/codes.py"):
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        named = {f"{node.value.id}.{node.attr}" for node in ast.walk(tree)
                 if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                 and node.value.id == "Channel"}
        assert not named, f"{path} names {sorted(named)}"
