"""`crmhub validate` and `crmhub schema` from the command line: exact lines, exit codes, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmhub.cli import app
from tests.config.conftest import ENV, ConfigDir
from tests.config.test_problems import CASES


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_validate_prints_each_problem_and_exits_1(cfg: ConfigDir, env: None, case: str) -> None:
    kind, content, expected = CASES[case]
    if content is None:
        (cfg.root / "mappings" / f"{kind}.yaml").unlink()
    else:
        cfg.write(**{kind: content})
    result = CliRunner().invoke(app, ["validate", "--config", "settings.yaml"])
    assert result.exit_code == 1
    count = len(expected)
    assert result.stderr.splitlines() == [*expected,
                                          f"{count} problem{'s' if count != 1 else ''} found; crmhub did not start."]
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_validate_accepts_a_good_file_and_the_embedded_defaults(cfg: ConfigDir, env: None) -> None:
    good = CliRunner().invoke(app, ["validate", "--config", "settings.yaml"])
    assert (good.exit_code, good.stdout.strip()) == (0, "settings.yaml: OK (CRMs: salesforce; channels: twilio)")
    defaults = CliRunner().invoke(app, ["validate"])
    assert defaults.exit_code == 0, defaults.output
    assert "OK (CRMs: salesforce, zendesk, hubspot; channels: twilio, x, email, meta)" in defaults.stdout


def test_validate_reports_a_missing_env_secret(cfg: ConfigDir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("SF_CLIENT_ID", "x")
    monkeypatch.setenv("SF_CLIENT_SECRET", "y")
    result = CliRunner().invoke(app, ["validate", "--config", "settings.yaml"])
    assert result.exit_code == 1
    assert "environment variable TWILIO_AUTH_TOKEN is not set" in result.stderr
    offline = CliRunner().invoke(app, ["validate", "--config", "settings.yaml", "--offline-secrets"])
    assert offline.exit_code == 0, offline.output


def test_schema_writes_one_json_schema_per_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["schema", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["crmhub-history.schema.json", "crmhub-identities.schema.json",
                       "crmhub-routing.schema.json", "crmhub-settings.schema.json"]
    settings = json.loads((tmp_path / "crmhub-settings.schema.json").read_text())
    assert "crms" in settings["properties"]


def test_validate_warns_about_statements_join_and_still_exits_0(cfg: ConfigDir, env: None) -> None:
    cfg.write(identities="""\
        statements: { phone: suggest, email: join, x_handle: ignore }
        crms:
          salesforce:
            match:
              Contact: { phone: [Phone], email: [Email] }
        """)
    result = CliRunner().invoke(app, ["validate", "--config", "settings.yaml"])
    assert result.exit_code == 0, result.output
    [warning] = result.stderr.splitlines()
    assert warning.startswith("mappings/identities.yaml:1:38: warning: statements.email: join takes what a customer "
                              "writes as proof")
    assert "use suggest" in warning and result.stdout.startswith("settings.yaml: OK")
    cfg.write(identities="""\
        statements: join
        crms:
          salesforce:
            match:
              Contact: { phone: [Phone], email: [Email] }
        """)
    every = CliRunner().invoke(app, ["validate", "--config", "settings.yaml"])
    assert every.exit_code == 0 and len(every.stderr.splitlines()) == 3
    assert all(line.startswith("mappings/identities.yaml:1:13: warning: statements.") for line in every.stderr.splitlines())
    assert CliRunner().invoke(app, ["validate", "--config", "settings.yaml"]).exit_code == 0
    cfg.write()
    assert CliRunner().invoke(app, ["validate", "--config", "settings.yaml"]).stderr == ""  # suggest: no warning


def test_validate_warns_when_confirm_by_code_has_no_number_to_text_from(cfg: ConfigDir, env: None) -> None:
    identities = """\
        statements: { phone: confirm_by_code, email: suggest, x_handle: suggest }
        crms:
          salesforce:
            match:
              Contact: { phone: [Phone], email: [Email] }
        """
    cfg.write(identities=identities)
    assert CliRunner().invoke(app, ["validate", "--config", "settings.yaml"]).stderr == ""  # Twilio has a number
    cfg.write(identities=identities, settings="""\
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
            whatsapp_senders: ["+14155550199"]
        """)
    result = CliRunner().invoke(app, ["validate", "--config", "settings.yaml"])
    assert result.exit_code == 0, result.output
    [warning] = result.stderr.splitlines()
    assert warning.startswith("mappings/identities.yaml:1:22: warning: statements.phone: confirm_by_code sends a "
                              "code over channels.twilio")
    assert "enable channels.twilio, or use suggest" in warning


def test_validate_refuses_a_link_field_no_crm_could_have(cfg: ConfigDir, env: None) -> None:
    cfg.write(settings="""\
        crms:
          salesforce:
            instance_url: https://acme.my.salesforce.com
            link_field: Crmhub Link
            auth:
              client_id: env:SF_CLIENT_ID
              client_secret: env:SF_CLIENT_SECRET
        channels:
          twilio:
            account_sid: AC0123456789abcdef0123456789abcdef
            auth_token: env:TWILIO_AUTH_TOKEN
            numbers: ["+14155550100"]
        """)
    result = CliRunner().invoke(app, ["validate", "--config", "settings.yaml"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0].startswith("settings.yaml:4:17: crms.salesforce.link_field: ")
