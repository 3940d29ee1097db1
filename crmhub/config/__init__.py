"""crmhub's configuration: `settings.yaml` and `mappings/*.yaml`, validated.

    config = load_config("settings.yaml")          # raises ConfigError with every problem
    config.settings.crms.salesforce.batch_size     # frozen pydantic models
    config.secret("channels.twilio.auth_token")    # a pydantic SecretStr

Problems are reported one per line, all at once, for people:
`settings.yaml:12:3: unknown key 'poll_evry' in channels.twilio (did you mean 'poll_every'?)`.
Secrets are written as `env:NAME` or `file:PATH`, resolved at load, and never
printed. See docs/configuration.md for every key.
"""

from __future__ import annotations

from crmhub.config._load import DEFAULT_SETTINGS, DEFAULTS_DIR, Config, load_config
from crmhub.config._types import (
    PLACEHOLDERS,
    Duration,
    Percent,
    SecretRef,
    format_duration,
    parse_duration,
    parse_percent,
)
from crmhub.config.mappings import HistoryMappings, IdentityMappings, RoutingRules
from crmhub.config.schema import json_schema, write_schemas
from crmhub.config.settings import SANDBOX_PORTS, Settings
from crmhub.errors import ConfigError

__all__ = [
    "DEFAULTS_DIR",
    "DEFAULT_SETTINGS",
    "PLACEHOLDERS",
    "SANDBOX_PORTS",
    "Config",
    "ConfigError",
    "Duration",
    "HistoryMappings",
    "IdentityMappings",
    "Percent",
    "RoutingRules",
    "SecretRef",
    "Settings",
    "format_duration",
    "json_schema",
    "load_config",
    "parse_duration",
    "parse_percent",
    "write_schemas",
]
