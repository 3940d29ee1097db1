"""`crmhub plugins package` builds each plugin's upload for one crmhub URL, the same bytes every time."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from typer.testing import CliRunner

from crmhub.cli import app

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def test_the_zendesk_app_zip_holds_the_manifest_for_our_url_translations_and_logos(tmp_path: Path) -> None:
    args = ["plugins", "package", "zendesk", "--url", "https://hooks.acme.test/", "--out", str(tmp_path),
            "--plugins-dir", str(PLUGINS)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    built = tmp_path / "crmhub-zendesk.zip"
    with zipfile.ZipFile(built) as archive:
        assert sorted(archive.namelist()) == ["assets/logo-small.png", "assets/logo.png", "manifest.json",
                                              "translations/en.json"]
        manifest = json.loads(archive.read("manifest.json"))
        assert archive.read("assets/logo.png").startswith(b"\x89PNG")
    assert manifest["signedUrls"] is True
    assert manifest["location"]["support"]["ticket_sidebar"]["url"] == "https://hooks.acme.test/agent/zendesk/sidebar"
    first = built.read_bytes()
    assert CliRunner().invoke(app, args).exit_code == 0 and built.read_bytes() == first


def test_packaging_refuses_a_plain_http_url_and_an_unknown_plugin(tmp_path: Path) -> None:
    plain = CliRunner().invoke(app, ["plugins", "package", "zendesk", "--url", "http://hooks.acme.test",
                                     "--out", str(tmp_path), "--plugins-dir", str(PLUGINS)])
    assert plain.exit_code == 1 and "over https" in plain.output
    unknown = CliRunner().invoke(app, ["plugins", "package", "zendesks", "--url", "https://hooks.acme.test",
                                       "--out", str(tmp_path), "--plugins-dir", str(PLUGINS)])
    assert unknown.exit_code == 1 and "no plugin 'zendesks'" in unknown.output and "zendesk" in unknown.output


def test_the_salesforce_sources_name_our_canvas_url_and_need_a_contact_email(tmp_path: Path) -> None:
    base = ["plugins", "package", "salesforce", "--url", "https://hooks.acme.test", "--out", str(tmp_path),
            "--plugins-dir", str(PLUGINS)]
    missing = CliRunner().invoke(app, base)
    assert missing.exit_code == 1 and "--contact-email" in missing.output
    result = CliRunner().invoke(app, [*base, "--contact-email", "admin@acme.test"])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(tmp_path / "crmhub-salesforce.zip") as archive:
        names = set(archive.namelist())
        connected = archive.read("force-app/main/default/connectedApps/crmhub.connectedApp-meta.xml").decode()
    assert {"sfdx-project.json", "force-app/main/default/lwc/crmhubPanel/crmhubPanel.js",
            "force-app/main/default/pages/CrmhubCanvas.page"} <= names
    assert "<canvasUrl>https://hooks.acme.test/agent/salesforce/canvas</canvasUrl>" in connected
    assert "<accessMethod>Post</accessMethod>" in connected and "admin@acme.test" in connected


def test_the_hubspot_project_lets_its_card_fetch_only_our_url(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["plugins", "package", "hubspot", "--url", "https://hooks.acme.test",
                                      "--out", str(tmp_path), "--plugins-dir", str(PLUGINS)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(tmp_path / "crmhub-hubspot.zip") as archive:
        application = json.loads(archive.read("src/app/app.json"))
        card = archive.read("src/app/extensions/CrmhubCard.jsx").decode()
        assert json.loads(archive.read("hsproject.json"))["srcDir"] == "src"
    assert application["permittedUrls"]["fetch"] == ["https://hooks.acme.test"]
    assert 'const CRMHUB = "https://hooks.acme.test/agent/api/v1"' in card and "hubspot.fetch" in card
