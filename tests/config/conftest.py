"""A scratch configuration directory: valid files, one of them swapped per test."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from crmhub.config import Config, ConfigError, load_config

SETTINGS = """\
    crms:
      salesforce:
        instance_url: https://acme.my.salesforce.com
        auth:
          client_id: env:SF_CLIENT_ID
          client_secret: env:SF_CLIENT_SECRET
    channels:
      twilio:
        account_sid: AC0123456789abcdef0123456789abcdef
        auth_token: env:TWILIO_AUTH_TOKEN
        numbers: ["+14155550100"]
    """

IDENTITIES = """\
    crms:
      salesforce:
        match:
          Contact: { phone: [Phone, MobilePhone], email: [Email] }
        create_when_unmatched: Contact
    """

ROUTING = """\
    queues:
      salesforce:
        support: { queue: Support_Queue }
        billing: { queue: Billing_Queue }
    default:
      salesforce: { queue: support }
    """

HISTORY = """\
    salesforce:
      task: { Subject: "{channel_label} from {sender}", Description: "{text}" }
    """

ENV = {"SF_CLIENT_ID": "sf-client-id", "SF_CLIENT_SECRET": "sf-very-secret", "TWILIO_AUTH_TOKEN": "tw-very-secret"}


class ConfigDir:
    """Writes settings.yaml and mappings/*.yaml in a temporary working directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, *, settings: str | None = SETTINGS, identities: str | None = IDENTITIES,
              routing: str | None = ROUTING, history: str | None = HISTORY) -> Path:
        """Write the files (None: leave that file out); texts are dedented."""
        (self.root / "mappings").mkdir(exist_ok=True)
        for path, text in (("settings.yaml", settings), ("mappings/identities.yaml", identities),
                           ("mappings/routing.yaml", routing), ("mappings/history.yaml", history)):
            if text is not None:
                (self.root / path).write_text(textwrap.dedent(text), encoding="utf-8")
        return self.root / "settings.yaml"

    def load(self, path: str = "settings.yaml", env: dict[str, str] | None = None, **kw: object) -> Config:
        return load_config(path, environ=ENV if env is None else env, **kw)  # type: ignore[arg-type]

    def problems(self, path: str = "settings.yaml", env: dict[str, str] | None = None, **kw: object) -> list[str]:
        """The lines of the ConfigError (fails when the configuration loads)."""
        with pytest.raises(ConfigError) as caught:
            self.load(path, env, **kw)
        return caught.value.problems


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ConfigDir:
    """A valid configuration in the working directory, so messages say `settings.yaml:...`."""
    monkeypatch.chdir(tmp_path)
    config_dir = ConfigDir(tmp_path)
    config_dir.write()
    return config_dir
