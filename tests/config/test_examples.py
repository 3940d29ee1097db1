"""The repository's example settings.yaml and mappings/ are the embedded defaults, kept in step."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmhub.config import DEFAULTS_DIR, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_settings_are_the_defaults_with_secret_paths_from_the_repository() -> None:
    example = (ROOT / "settings.yaml").read_text()
    embedded = (DEFAULTS_DIR / "settings.yaml").read_text()
    assert example == embedded.replace("file:sandbox-secrets/", "file:crmhub/defaults/sandbox-secrets/")


@pytest.mark.parametrize("name", ["identities.yaml", "routing.yaml", "history.yaml"])
def test_example_mappings_are_the_defaults(name: str) -> None:
    assert (ROOT / "mappings" / name).read_text() == (DEFAULTS_DIR / "mappings" / name).read_text()


def test_example_settings_load_from_the_repository_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    config = load_config("settings.yaml")
    assert config.settings.sandbox.enabled
    assert config.mappings_dir.resolve() == (ROOT / "mappings").resolve()
