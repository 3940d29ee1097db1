"""Loading valid configurations: the embedded defaults, secrets, derived values, schemas."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from ruamel.yaml import YAML

from crmhub.config import (
    DEFAULT_SETTINGS,
    DEFAULTS_DIR,
    SANDBOX_PORTS,
    Config,
    SecretRef,
    json_schema,
    load_config,
    write_schemas,
)
from tests.config.conftest import ENV, ConfigDir

# The sandbox emulators' fixed dummy credentials (docs/sandbox, the brief of every helper).
SANDBOX_SECRETS = {
    "crms.salesforce.auth.client_id": "crmhub-sandbox",
    "crms.salesforce.auth.client_secret": "sandbox-secret",
    "crms.zendesk.auth.token": "sandbox-token",
    "crms.hubspot.auth.access_token": "sandbox-token",
    "channels.twilio.auth_token": "sandbox-auth-token",
    "channels.x.bearer_token": "sandbox-bearer",
    "channels.x.consumer_key": "sandbox-consumer-key",
    "channels.x.consumer_secret": "sandbox-consumer-secret",
    "channels.x.access_token": "sandbox-access-token",
    "channels.x.access_token_secret": "sandbox-access-secret",
    "channels.email.imap.password": "sandbox-mail-password",
}


@pytest.fixture
def defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.chdir(tmp_path)
    return load_config(environ={})  # no credentials at all: the demo needs none


def test_embedded_defaults_load_without_any_credentials(defaults: Config, tmp_path: Path) -> None:
    settings = defaults.settings
    assert settings.sandbox.enabled
    assert settings.crms.enabled_names() == ("salesforce", "zendesk", "hubspot")
    assert settings.channels.enabled_names() == ("twilio", "x", "email", "meta")
    assert defaults.source == DEFAULT_SETTINGS
    assert defaults.mappings_dir == DEFAULTS_DIR / "mappings"
    # the relative sqlite file of the defaults lands in the working directory, not in the package
    assert settings.state.url == f"sqlite:///{tmp_path / 'crmhub.db'}"


def test_embedded_defaults_point_at_the_sandbox_ports(defaults: Config) -> None:
    from crmhub.sandbox import DEFAULT_PORTS

    assert SANDBOX_PORTS == DEFAULT_PORTS
    s = defaults.settings
    urls = {"salesforce": s.crms.salesforce, "zendesk": s.crms.zendesk, "hubspot": s.crms.hubspot,
            "twilio": s.channels.twilio, "x": s.channels.x, "meta": s.channels.meta}
    assert {name: section.base_url for name, section in urls.items()} == {  # type: ignore[union-attr]
        name: f"http://127.0.0.1:{port}" for name, port in DEFAULT_PORTS.items() if name in urls}
    mail = s.channels.email  # the mail server: its IMAP and SMTP ports, not a base URL
    assert mail is not None and (mail.imap.host, mail.imap.port, mail.smtp.port) == (
        "127.0.0.1", DEFAULT_PORTS["mail-imap"], DEFAULT_PORTS["mail-smtp"])


def test_a_sandbox_base_port_moves_the_mail_ports_and_an_explicit_port_wins(tmp_path: Path) -> None:
    from crmhub.sandbox.settings import write_sandbox_settings

    path = write_sandbox_settings(tmp_path, {}, enabled=("salesforce", "email"), base_port=30000)
    mail = load_config(path, environ={}).settings.channels.email
    assert mail is not None and (mail.imap.port, mail.smtp.port) == (30008, 30007)
    path.write_text(path.read_text().replace("security: none,", "security: none, port: 1143,", 1))
    mail = load_config(path, environ={}).settings.channels.email
    assert mail is not None and mail.imap.port == 1143 and mail.smtp.port == 30007


def test_embedded_defaults_carry_the_sandbox_credentials(defaults: Config) -> None:
    s = defaults.settings
    assert {path: defaults.secret(path).get_secret_value() for path in SANDBOX_SECRETS} == SANDBOX_SECRETS
    assert s.crms.zendesk is not None and s.crms.zendesk.subdomain == "sandbox"
    assert s.crms.zendesk.auth.email == "agent@sandbox.zendesk.test"
    assert s.channels.twilio is not None and s.channels.twilio.account_sid == "ACcafe0000000000000000000000000001"
    assert s.channels.x is not None and s.channels.x.account == "crmhub_support"


def test_embedded_mappings_route_as_documented(defaults: Config) -> None:
    routing = defaults.routing
    assert [rule.name for rule in routing.rules] == ["billing", "vip-customers", "x-mentions"]
    assert {name: q.queue for name, q in routing.queues.salesforce.items()} == {
        "support": "Support_Queue", "billing": "Billing_Queue", "vip": "VIP_Queue", "social": "Support_Queue"}
    assert routing.default.targets().keys() == {"salesforce", "zendesk", "hubspot"}
    assert routing.contact_fields() == {"Tier__c"}
    assert re.search(routing.rules[0].when.text_matches or "", "I want a refund")
    assert defaults.identities.crms.salesforce is not None
    assert defaults.identities.crms.salesforce.objects().keys() == {"Contact", "Lead"}


def test_secrets_are_secretstr_and_never_printed(cfg: ConfigDir) -> None:
    config = cfg.load()
    auth = config.settings.crms.salesforce.auth  # type: ignore[union-attr]
    assert isinstance(auth.client_secret, SecretStr)
    assert auth.client_secret.get_secret_value() == "sf-very-secret"
    assert config.secret("channels.twilio.auth_token").get_secret_value() == "tw-very-secret"
    for text in (repr(config), str(config), repr(config.settings), str(auth.client_secret),
                 json.dumps(config.settings.model_dump(mode="json")), config.settings.model_dump_json()):
        assert "sf-very-secret" not in text and "tw-very-secret" not in text
    assert repr(auth.client_secret) == "SecretRef('env:SF_CLIENT_SECRET')"
    assert config.settings.model_dump()["crms"]["salesforce"]["auth"]["client_secret"] == "env:SF_CLIENT_SECRET"


def test_secret_lookup_errors(cfg: ConfigDir) -> None:
    config = cfg.load()
    with pytest.raises(KeyError):
        config.secret("crms.salesforce.instance_url")
    with pytest.raises(KeyError):
        config.secret("crms.salesforce.nope")
    offline = cfg.load(env={}, resolve_secrets=False)
    with pytest.raises(RuntimeError, match="resolve_secrets=False"):
        offline.secret("crms.salesforce.auth.client_secret")


def test_file_secrets_are_read_relative_to_the_settings_file(cfg: ConfigDir, tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "twilio").write_text("from-a-file\n")
    text = (tmp_path / "settings.yaml").read_text().replace("env:TWILIO_AUTH_TOKEN", "file:secrets/twilio")
    (tmp_path / "settings.yaml").write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(elsewhere)
        config = load_config(tmp_path / "settings.yaml", environ=ENV)
    assert config.secret("channels.twilio.auth_token").get_secret_value() == "from-a-file"


def test_config_and_models_are_frozen(cfg: ConfigDir) -> None:
    config = cfg.load()
    with pytest.raises(AttributeError):
        config.settings = config.settings  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.settings.retry.max_attempts = 2  # type: ignore[misc]


def test_values_are_normalised(cfg: ConfigDir, tmp_path: Path) -> None:
    cfg.write(settings="""\
        state: { url: "sqlite:///data/crmhub.db" }
        log: { level: INFO }
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com/
            api_version: 60.0
            auth: { client_id: env:SF_CLIENT_ID, client_secret: env:SF_CLIENT_SECRET }
            budget: { daily_reserve: 15% }
        channels:
          twilio:
            account_sid: AC0123456789abcdef0123456789abcdef
            auth_token: env:TWILIO_AUTH_TOKEN
            default_region: gb
            numbers: ["020 7946 0000", "+1 (415) 555-0100"]
            poll_every: 1m30s
        """, identities="""\
        default_region: GB
        blocked:
          values: ["020 7946 0999", " Support@ACME.com ", "@Acme_Bot"]
        crms:
          salesforce:
            match: { Contact: { phone: [Phone] } }
        """)
    config = cfg.load()
    s = config.settings
    assert s.state.url == f"sqlite:///{tmp_path / 'data' / 'crmhub.db'}"
    assert s.log.level == "info"
    assert s.crms.salesforce is not None
    assert s.crms.salesforce.instance_url == "https://acme.my.salesforce.com"
    assert s.crms.salesforce.api_version == "60.0"
    assert s.crms.salesforce.budget.daily_reserve == pytest.approx(0.15)
    assert s.channels.twilio is not None
    assert s.channels.twilio.numbers == ["+442079460000", "+14155550100"]
    assert s.channels.twilio.poll_every == timedelta(seconds=90)
    assert s.channels.twilio.overlap == timedelta(minutes=10)
    assert config.identities.blocked.values == ["+442079460999", "support@acme.com", "@acme_bot"]


def test_postgres_password_is_a_secret(cfg: ConfigDir) -> None:
    text = (cfg.root / "settings.yaml").read_text()
    (cfg.root / "settings.yaml").write_text(
        'state: { url: "postgresql+psycopg://crmhub@db:5432/crmhub", password: env:PGPASS }\n' + text)
    config = cfg.load(env={**ENV, "PGPASS": "pg-secret"})
    assert config.settings.state.url == "postgresql+psycopg://crmhub@db:5432/crmhub"
    assert config.database_url() == "postgresql+psycopg://crmhub:pg-secret@db:5432/crmhub"
    assert "pg-secret" not in repr(config)


def test_routing_helpers(defaults: Config) -> None:
    routing = defaults.routing
    assert routing.business_hours.start == time(8, 0)
    monday_noon = datetime(2024, 6, 3, 11, 0, tzinfo=UTC)  # 12:00 in London (BST)
    sunday = datetime(2024, 6, 2, 11, 0, tzinfo=UTC)
    assert routing.in_business_hours(monday_noon) and not routing.in_business_hours(sunday)
    assert defaults.settings.threads.reopen_window == timedelta(days=3)


def test_history_templates_render(defaults: Config) -> None:
    fields = defaults.history.render("salesforce", "task", {
        "channel_label": "SMS", "direction": "inbound", "sender": "+14155550123", "text": "Hi"})
    assert fields == {"Subject": "SMS inbound from +14155550123", "Description": "Hi"}
    assert defaults.history.render("zendesk", "ticket", {}) == {"subject": " conversation with "}


# --- schemas ---------------------------------------------------------------

def _default_files() -> dict[str, Any]:
    yaml = YAML(typ="safe")
    return {
        "settings": yaml.load(DEFAULT_SETTINGS),
        **{kind: yaml.load(DEFAULTS_DIR / "mappings" / f"{kind}.yaml") for kind in ("identities", "routing", "history")},
    }


def test_json_schema_has_one_schema_per_file_kind() -> None:
    schemas = json_schema()
    assert list(schemas) == ["settings", "identities", "routing", "history"]
    for schema in schemas.values():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False
    secret = schemas["settings"]["$defs"]["HubSpotAuth"]["properties"]["access_token"]
    assert secret["pattern"] == "^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+|credential:[A-Za-z0-9_][A-Za-z0-9_.-]*)$"


def test_write_schemas(tmp_path: Path) -> None:
    written = write_schemas(tmp_path / "schemas")
    assert [p.name for p in written] == [
        "crmhub-settings.schema.json", "crmhub-identities.schema.json",
        "crmhub-routing.schema.json", "crmhub-history.schema.json"]
    assert json.loads(written[0].read_text()) == json_schema()["settings"]


def test_json_schema_validates_the_default_files_with_jsonschema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schemas = json_schema()
    for kind, data in _default_files().items():
        jsonschema.Draft202012Validator.check_schema(schemas[kind])
        jsonschema.Draft202012Validator(schemas[kind]).validate(data)
    settings = _default_files()["settings"]
    settings["crms"]["hubspot"]["auth"]["access_token"] = "inline-value"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schemas["settings"]).validate(settings)


def _check(schema: dict[str, Any], value: Any, defs: dict[str, Any], where: str) -> list[str]:
    """A small JSON Schema subset (what pydantic emits), for when `jsonschema` is not installed."""
    if "$ref" in schema:
        return _check(defs[schema["$ref"].split("/")[-1]], value, defs, where)
    if "anyOf" in schema:
        options = [_check(option, value, defs, where) for option in schema["anyOf"]]
        if any(not o for o in options):
            return []
        # Report inside the option the value has the shape of (a section, not null).
        deeper = [o for o in options if all(not e.startswith(f"{where}: ") for e in o)]
        return deeper[0] if deeper else [f"{where}: no anyOf option fits {value!r}"]
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds is not None:
        python = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "null": type(None),
                  "array": list, "object": dict}
        if not any(isinstance(value, python[k]) and not (k in ("integer", "number") and isinstance(value, bool))
                   for k in kinds):
            return [f"{where}: {value!r} is not {kinds}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{where}: {value!r} != {schema['const']!r}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}.{key}: required")
        for key, item in value.items():
            if key in properties:
                errors += _check(properties[key], item, defs, f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += _check(schema["additionalProperties"], item, defs, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}.{key}: not allowed")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += _check(schema["items"], item, defs, f"{where}[{i}]")
    return errors


def test_json_schema_accepts_the_default_files() -> None:
    schemas = json_schema()
    for kind, data in _default_files().items():
        assert _check(schemas[kind], data, schemas[kind].get("$defs", {}), kind) == []


def test_json_schema_rejects_what_the_loader_rejects() -> None:
    schemas = json_schema()
    settings = _default_files()["settings"]
    settings["channels"]["twilio"]["poll_evry"] = "30s"
    settings["channels"]["twilio"]["overlap"] = "10 minutes"
    settings["crms"]["hubspot"]["auth"]["access_token"] = "inline-value"
    errors = _check(schemas["settings"], settings, schemas["settings"]["$defs"], "settings")
    assert errors == [
        "settings.crms.hubspot.auth.access_token: 'inline-value' does not match ^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+|credential:[A-Za-z0-9_][A-Za-z0-9_.-]*)$",
        "settings.channels.twilio.overlap: no anyOf option fits '10 minutes'",
        "settings.channels.twilio.poll_evry: not allowed",
    ]


def test_every_key_is_documented() -> None:
    from crmhub.config._messages import unwrap
    from crmhub.config.schema import FILE_KINDS
    from pydantic import BaseModel

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()

    def keys(model: type[BaseModel], prefix: str = "") -> list[str]:
        out = []
        for name, info in model.model_fields.items():
            out.append(prefix + name)
            inner = unwrap(info.annotation)
            args = getattr(inner, "__args__", ())
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                out += keys(inner, f"{prefix}{name}.")
            elif args and isinstance(unwrap(args[-1]), type) and issubclass(unwrap(args[-1]), BaseModel):
                sep = "[*]." if getattr(inner, "__origin__", None) is list else ".NAME."
                out += keys(unwrap(args[-1]), f"{prefix}{name}{sep}")
        return out

    missing = [f"{kind}: {key}" for kind, model in FILE_KINDS.items() for key in keys(model) if f"`{key}`" not in doc]
    assert missing == []


def test_secret_ref_type_alone() -> None:
    ref = SecretRef._validate("env:A_B")
    assert (ref.source, ref.target, ref.resolved) == ("env", "A_B", False)
    assert ref.resolve(environ={"A_B": " v \n"}, base_dir=Path(".")).get_secret_value() == "v"
