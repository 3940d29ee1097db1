"""Running crmhub as a service: the settings it finds, the store it opens, the unit it runs under (issue 15, item 5).

An operator who forgets `--config` is told so instead of being shown (or
changing) an empty sandbox store; reading never creates a store; the SQLite
file holding message text is readable by its owner alone; under systemd the
store lives in the state directory and secrets come from LoadCredential=.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crmhub.cli import app
from crmhub.config import load_config
from crmhub.store import open_store
from tests.config.conftest import ENV, SETTINGS, ConfigDir, cfg  # noqa: F401  # the fixture

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "crmhub.service"


def _status(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["status", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_an_ops_command_without_settings_refuses_the_sandbox_defaults_and_creates_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CRMHUB_CONFIG", raising=False)
    code, _, err = _status()
    assert code == 1
    assert "no settings given" in err and "--config" in err and "CRMHUB_CONFIG" in err and "--sandbox" in err
    code, _, err = _status("--sandbox")  # asked for, but there is no sandbox store here yet
    assert code == 1 and "no state store at" in err
    assert list(tmp_path.iterdir()) == []  # neither try left a crmhub.db behind


def test_crmhub_config_names_the_settings_of_every_command(cfg: ConfigDir, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = cfg.write(settings=SETTINGS.rstrip(" ") + "    state: { url: sqlite:///state/crmhub.db }\n")
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    code, _, err = _status(env={"CRMHUB_CONFIG": str(settings)})
    assert code == 1 and f"no state store at {cfg.root / 'state' / 'crmhub.db'}" in err
    (cfg.root / "state").mkdir()  # the admin's directory (systemd's StateDirectory= makes it)
    open_store(cfg.load().database_url()).close()  # what `crmhub run` does first
    code, out, err = _status("--json", env={"CRMHUB_CONFIG": str(settings)})
    assert (code, err) == (0, "") and '"outbox"' in out


def test_a_new_sqlite_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = open_store(f"sqlite:///{tmp_path / 'crmhub.db'}")
        with store.transaction() as session:  # WAL and shared-memory files appear with the first write
            session.execute(__import__("sqlalchemy").text("CREATE TABLE scratch (x INTEGER)"))
        modes = {path.name: path.stat().st_mode & 0o777 for path in tmp_path.iterdir()}
        store.close()
    finally:
        os.umask(old)
    assert modes["crmhub.db"] == 0o600
    assert all(mode == 0o600 for mode in modes.values()), modes


def test_under_systemd_the_store_lives_in_the_state_directory(cfg: ConfigDir, tmp_path: Path) -> None:
    cfg.write()
    state = tmp_path / "var-lib-crmhub"
    config = load_config("settings.yaml", environ={**ENV, "STATE_DIRECTORY": str(state)})
    assert config.database_url() == f"sqlite:///{state / 'crmhub.db'}"
    assert cfg.load().database_url() == f"sqlite:///{cfg.root / 'crmhub.db'}"  # elsewhere: next to the settings


def test_secrets_come_from_systemds_credentials_directory(cfg: ConfigDir, tmp_path: Path) -> None:
    cfg.write(settings=SETTINGS.replace("env:TWILIO_AUTH_TOKEN", "credential:twilio_auth_token"))
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "twilio_auth_token").write_text("tw-from-systemd\n")
    config = cfg.load(env={**ENV, "CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.settings.channels.twilio is not None
    assert config.settings.channels.twilio.auth_token.get_secret_value() == "tw-from-systemd"
    [problem] = cfg.problems(env=ENV)  # outside systemd: one line that says what to do
    assert "credential twilio_auth_token: $CREDENTIALS_DIRECTORY is not set" in problem
    assert "tw-from-systemd" not in problem


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_the_unit_verifies_and_its_exposure_stays_at_3_or_below(tmp_path: Path) -> None:
    crmhub = Path(sys.executable).with_name("crmhub")
    unit = tmp_path / "crmhub.service"  # ExecStart must name an executable that exists here
    unit.write_text(UNIT.read_text().replace("/opt/crmhub/.venv/bin/crmhub", str(crmhub)))
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stderr
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                              capture_output=True, text=True, check=False)
    found = re.search(r"Overall exposure level for crmhub\.service: (\d+\.\d+)", security.stdout)
    assert found is not None, security.stdout + security.stderr
    assert float(found.group(1)) <= 3.0
