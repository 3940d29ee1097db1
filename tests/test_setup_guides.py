"""The setup guides (docs/setup/) cannot rot: what they tell an admin to write must be what crmhub reads.

Checked against the real loader and the connectors' own constants:
- every YAML block validates: the complete settings.yaml as is, each fragment merged into it (or into
  the embedded default mapping file it names);
- every settings key the prose names (`crms.salesforce.auth.client_id`) exists in the settings models;
- every Salesforce custom field, HubSpot key property and Zendesk user field is one crmhub's connectors
  or mappings use, and the ones crmhub relies on are all there;
- every webhook path is a route of the receiver, and every route has its guide;
- every `credential:NAME` has its `LoadCredential=` line, every relative link and anchor resolves.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from io import StringIO
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel
from ruamel.yaml import YAML

from crmhub.config import DEFAULTS_DIR, Config, Settings, load_config
from crmhub.connectors import hubspot, salesforce, zendesk, zendesk_comments
from crmhub.model import PERSON_KEY_PREFIX, Channel
from tests.webhook_apps import create_app

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "docs" / "setup"
GUIDES = {p.name: p.read_text(encoding="utf-8") for p in sorted(SETUP.glob("*.md"))}
VENDORS = ("salesforce.md", "zendesk.md", "hubspot.md", "twilio.md", "x.md", "email.md")

COMPLETE = "# settings.yaml (complete)"
FRAGMENT_HEADERS = {"# settings.yaml": "settings.yaml", "# mappings/identities.yaml": "mappings/identities.yaml",
                    "# mappings/routing.yaml": "mappings/routing.yaml",
                    "# mappings/history.yaml": "mappings/history.yaml"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>\w*)\n(?P<body>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
DOTTED = re.compile(r"(?<![\w./@-])([a-z_]+(?:\.[a-z_0-9]+)+)")
SF_CUSTOM = re.compile(r"\b[A-Za-z][A-Za-z0-9_]*__c\b")
MISSPELT_EXAMPLES = {"Mobile_Phone__c": "MobilePhone"}  # did-you-mean examples, written "`wrong` → `right`"
LINK = re.compile(r"\]\((?!https?:|mailto:)([^)\s]+)\)")
yaml = YAML(typ="safe", pure=True)


def _blocks(lang: str) -> list[tuple[str, int, str]]:
    """(guide, line, dedented body) of every fenced block of `lang` in the guides."""
    found = []
    for name, text in GUIDES.items():
        for match in FENCE.finditer(text):
            if match["lang"] == lang:
                found.append((name, text.count("\n", 0, match.start()) + 1, textwrap.dedent(match["body"])))
    return found


def _prose(text: str) -> str:
    """The text without its fenced blocks."""
    return FENCE.sub("", text)


YAML_BLOCKS = _blocks("yaml")
FRAGMENTS = [b for b in YAML_BLOCKS if b[2].splitlines()[0].strip() != COMPLETE]


def _complete_settings() -> dict[str, Any]:
    (body,) = [b for _, _, b in YAML_BLOCKS if b.splitlines()[0].strip() == COMPLETE]
    return yaml.load(body)


def _merge(base: Any, extra: Any) -> Any:
    """`extra` laid over `base`: mappings merged key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(extra, dict):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return extra


def _dump(data: Any) -> str:
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _load(tmp_path: Path, settings: dict[str, Any], mapping: tuple[str, Any] | None = None) -> Config:
    """Validate `settings` with the embedded default mappings, one of them overlaid with `mapping`."""
    shutil.copytree(DEFAULTS_DIR / "mappings", tmp_path / "mappings")
    if mapping is not None:
        path = tmp_path / mapping[0]
        path.write_text(_dump(_merge(yaml.load(path.read_text(encoding="utf-8")) or {}, mapping[1])), encoding="utf-8")
    (tmp_path / "settings.yaml").write_text(_dump({**settings, "mappings": "mappings/"}), encoding="utf-8")
    return load_config(tmp_path / "settings.yaml", resolve_secrets=False)


def _fields_named(config: Config) -> set[str]:
    """Every CRM field a configuration names: identity fields, routing contact fields, history fields."""
    names: set[str] = set(config.routing.contact_fields())
    for crm in ("salesforce", "zendesk", "hubspot"):
        identity = getattr(config.identities.crms, crm)
        if identity is not None:
            names |= {f for match in identity.objects().values() for fs in match.by_kind().values() for f in fs}
        history = getattr(config.history, crm)
        names |= {f for record in type(history).model_fields for f in getattr(history, record)}
    return names


# ---- the files ---------------------------------------------------------------

def test_one_guide_per_vendor_and_an_overview() -> None:
    assert set(GUIDES) == {"README.md", *VENDORS}
    for name in VENDORS:
        assert "crmhub check" in GUIDES[name], f"{name} does not say how `crmhub check` confirms it"
        assert re.search(r"^## \d+\. Confirm with `crmhub check`$", GUIDES[name], re.MULTILINE), name
        assert f"]({name})" in GUIDES["README.md"], f"the overview does not link {name}"


def test_every_yaml_block_says_which_file_it_belongs_to() -> None:
    assert len(YAML_BLOCKS) >= 10
    for name, line, body in YAML_BLOCKS:
        header = body.splitlines()[0].strip()
        assert header == COMPLETE or header in FRAGMENT_HEADERS, (
            f"docs/setup/{name}:{line}: a yaml block starts with '{header}'; start it with one of "
            f"{COMPLETE!r}, {', '.join(FRAGMENT_HEADERS)}")
    assert sum(b[2].startswith(COMPLETE) for b in YAML_BLOCKS) == 1


# ---- YAML through the real loader ----------------------------------------------

def test_the_complete_settings_validate(tmp_path: Path) -> None:
    config = _load(tmp_path, _complete_settings())
    assert config.settings.crms.enabled_names() == ("salesforce", "zendesk", "hubspot")
    assert config.settings.channels.enabled_names() == ("twilio", "x")
    assert not config.settings.sandbox.enabled  # a real setup: the vendors' own URLs


@pytest.mark.parametrize(("guide", "line", "body"), FRAGMENTS, ids=[f"{g}:{n}" for g, n, _ in FRAGMENTS])
def test_each_fragment_validates_in_place(tmp_path: Path, guide: str, line: int, body: str) -> None:
    target = FRAGMENT_HEADERS[body.splitlines()[0].strip()]
    fragment = yaml.load(body)
    if target == "settings.yaml":
        _load(tmp_path, _merge(_complete_settings(), fragment))
    else:
        _load(tmp_path, _complete_settings(), (target, fragment))


def test_every_secret_reference_has_its_credential_line() -> None:
    refs = {ref for _, _, body in YAML_BLOCKS for ref in re.findall(r"credential:([A-Za-z0-9_.-]+)", body)}
    loaded = set()
    for text in GUIDES.values():
        for name, path in re.findall(r"^LoadCredential=([^:\s]+):(\S+)$", text, re.MULTILINE):
            assert path == f"/etc/crmhub/secrets/{name}", f"LoadCredential={name}:{path}"
            loaded.add(name)
    assert refs and refs <= loaded, f"no LoadCredential= line in any guide for {sorted(refs - loaded)}"


# ---- settings keys in the prose ----------------------------------------------------

def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (model := _model_of(arg)) is not None:
            return model
    return None


def _settings_key_exists(path: str) -> bool:
    model: type[BaseModel] | None = Settings
    for part in path.split("."):
        if model is None or part not in model.model_fields:
            return False
        model = _model_of(model.model_fields[part].annotation)
    return True


def test_every_settings_key_named_exists() -> None:
    tops = set(Settings.model_fields)
    named: dict[str, str] = {}
    for name, text in GUIDES.items():
        for span in CODE_SPAN.findall(_prose(text)):
            for key in DOTTED.findall(span):
                if key.split(".")[0] in tops:
                    named.setdefault(key, name)
    assert len(named) >= 40, sorted(named)
    wrong = {key: guide for key, guide in named.items() if not _settings_key_exists(key)}
    assert not wrong, f"settings keys the guides name that crmhub does not have: {wrong}"


# ---- custom fields and properties ---------------------------------------------------

@pytest.fixture(scope="module")
def fields_in_mappings(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The CRM fields named by the embedded default mappings and by every mapping block of the guides."""
    names = _fields_named(load_config(resolve_secrets=False))
    for guide, line, body in FRAGMENTS:
        target = FRAGMENT_HEADERS[body.splitlines()[0].strip()]
        if target != "settings.yaml":
            names |= _fields_named(_load(tmp_path_factory.mktemp("guide"), _complete_settings(),
                                         (target, yaml.load(body))))
    return names


def test_salesforce_custom_fields_are_crmhubs_own_or_named_in_mappings(fields_in_mappings: set[str]) -> None:
    keys = {salesforce.TASK_KEY_FIELD, salesforce.CASE_KEY_FIELD, salesforce.CONTACT_KEY_FIELD}
    text = GUIDES["salesforce.md"]
    assert f"| `{salesforce.LINK_FIELD}` | Text(255) |" in text, "salesforce.md does not list the link field"
    for key in keys:
        assert re.search(rf"\| `{key}` \| Text\(255\) \| \*\*External ID\*\*, \*\*Unique\*\*", text), (
            f"salesforce.md does not list {key} as an External ID, unique Text field")
    defaults = {f for f in _fields_named(load_config(resolve_secrets=False)) if f.endswith("__c")}
    for field in defaults:
        assert f"`{field}`" in text, f"the default mappings need {field}; salesforce.md does not say so"
    for name, guide in GUIDES.items():
        for field in set(SF_CUSTOM.findall(guide)):
            if field in MISSPELT_EXAMPLES:
                assert f"`{field}` → `{MISSPELT_EXAMPLES[field]}`" in guide
                continue
            assert field in keys | {salesforce.LINK_FIELD} | fields_in_mappings, (
                f"docs/setup/{name} names {field}, which neither crmhub's connectors nor any mapping use")


def test_salesforce_origin_values_are_the_channel_labels() -> None:
    text = GUIDES["salesforce.md"]
    for channel in Channel:
        assert f"| `{channel.label}` |" in text, f"salesforce.md lacks the Case Origin value {channel.label!r}"
    assert f"**Status** `{salesforce.OPEN_STATUS}`" in text


def test_hubspot_key_properties_are_the_connectors() -> None:
    text = GUIDES["hubspot.md"]
    keys = {hubspot.CASE_KEY, hubspot.PERSON_KEY, hubspot.ACTIVITY_KEY}
    assert set(re.findall(r"\bcrmhub_[a-z_]+\b", text)) == keys
    objects: set[str] = set()
    for key in keys:
        row = re.search(rf"^\| `{key}` \| ([a-z, ]+) \| yes \|", text, re.MULTILINE)
        assert row, f"hubspot.md has no table row for {key}"
        objects |= {o.strip() for o in row[1].split(",")}
    assert objects == set(hubspot.PROPERTY_GROUPS), "the objects crmhub creates its key properties on"


def test_zendesk_fields_tag_and_keys_are_the_connectors(fields_in_mappings: set[str]) -> None:
    text = GUIDES["zendesk.md"]
    for name, guide in GUIDES.items():
        for field in re.findall(r"\buser_fields\.[a-z0-9_]+", guide):
            assert field in fields_in_mappings, f"docs/setup/{name} names {field}, which no mapping uses"
    assert "user_fields.x_handle" in fields_in_mappings and "| X handle | `x_handle` | Text |" in text
    assert f"tags `{zendesk.CRMHUB_TAG}`" in text and f"`{PERSON_KEY_PREFIX}<id>`" in text
    assert f"`metadata.custom.{zendesk_comments.KEY_FIELD}`" in text


# ---- webhooks, credentials, links ------------------------------------------------------

def test_webhook_paths_are_the_receivers_routes() -> None:
    app = create_app(lambda good, bad: None, twilio_auth_token="token", public_url=None,  # type: ignore[arg-type,return-value]
                     x_consumer_secret="secret")
    routes = {getattr(route, "path", "") for route in app.routes} - {""}
    named = {path.rstrip("/") for text in GUIDES.values() for path in re.findall(r"/webhooks/[a-z/]+", text)}
    assert named <= routes, f"paths the guides name that crmhub does not serve: {sorted(named - routes)}"
    assert routes <= named, f"routes no guide names: {sorted(routes - named)}"


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", FENCE.sub("", text), re.MULTILINE)}


def test_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    going_live = readme.split("### Going live", 1)[1].split("\n## ", 1)[0]
    pages = [(SETUP / name, text) for name, text in GUIDES.items()] + [(ROOT / "README.md", going_live)]
    checked = 0
    for page, text in pages:
        for target in LINK.findall(_prose(text)):
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            assert path.exists(), f"{page.name}: link to {target}: no such file"
            if anchor:
                assert anchor in _anchors(path), f"{page.name}: link to {target}: no such heading"
            checked += 1
    assert checked >= 20
    for name in VENDORS:
        assert f"docs/setup/{name}" in going_live, f"the README's Going live does not link {name}"
