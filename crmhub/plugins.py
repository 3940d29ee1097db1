"""`crmhub plugins package`: the uploadable artifact of each CRM plugin in `plugins/`, made for one crmhub URL.

The sources stay plain files an admin can read; packaging only fills in
crmhub's public URL (`{{CRMHUB_URL}}`) and adds what the vendor's upload
needs (Zendesk's logos), then writes one zip with fixed timestamps, so the
same sources and URL always give the same bytes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from crmhub.errors import CrmhubError

PLACEHOLDER = "{{CRMHUB_URL}}"
EMAIL_PLACEHOLDER = "{{ADMIN_EMAIL}}"
TEXT_SUFFIXES = {".json", ".xml", ".html", ".js", ".css", ".page", ".md", ".yaml", ".yml", ".jsx", ".ts", ".tsx"}
FIXED_TIME = (2026, 1, 1, 0, 0, 0)


class PackagingError(CrmhubError):
    """The plugin cannot be packaged as asked; the message says what to change."""


def package(name: str, *, url: str, plugins_dir: Path, out: Path, contact_email: str | None = None) -> Path:
    """Write `<out>/crmhub-<name>.zip` from `plugins_dir/<name>` for crmhub at `url`; returns its path.

    Args:
        contact_email: fills `{{ADMIN_EMAIL}}` (a Salesforce connected app's contact); required where used.
    """
    source = plugins_dir / name
    if not source.is_dir():
        known = sorted(p.name for p in plugins_dir.iterdir() if p.is_dir()) if plugins_dir.is_dir() else []
        raise PackagingError(f"no plugin '{name}' in {plugins_dir}" + (f" (there: {', '.join(known)})" if known else
                             "; run from a crmhub checkout, or pass --plugins-dir"))
    base = _public_url(url)
    files: dict[str, bytes] = {}
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source).as_posix()
        if relative == "README.md" or "/." in f"/{relative}":
            continue
        data = path.read_bytes()
        if path.suffix in TEXT_SUFFIXES:
            data = data.replace(PLACEHOLDER.encode(), base.encode())
            if EMAIL_PLACEHOLDER.encode() in data:
                if not contact_email or "@" not in contact_email:
                    raise PackagingError(f"the {name} plugin names its admin ({relative}): pass --contact-email "
                                         "with the address the vendor shows for the app")
                data = data.replace(EMAIL_PLACEHOLDER.encode(), contact_email.encode())
        files[relative] = data
    EXTRAS.get(name, lambda _: None)(files)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"crmhub-{name}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative, data in sorted(files.items()):
            info = zipfile.ZipInfo(relative, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return target


def _public_url(url: str) -> str:
    parts = urlsplit(url)
    local = parts.hostname in {"127.0.0.1", "localhost", "::1"}
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        raise PackagingError(f"--url {url}: the CRM loads the plugin from crmhub over https (http only for "
                             "127.0.0.1 or localhost); give crmhub's public URL, e.g. https://hooks.acme.com")
    if parts.query or parts.fragment or not parts.hostname:
        raise PackagingError(f"--url {url}: give the scheme, host and optional path only")
    return url.rstrip("/")


def _zendesk_logos(files: dict[str, bytes]) -> None:
    """Zendesk's upload wants assets/logo.png (320x320) and assets/logo-small.png (128x128)."""
    for name, size in (("assets/logo.png", 320), ("assets/logo-small.png", 128)):
        files.setdefault(name, _logo(size))


def _logo(pixels: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure = pyplot.figure(figsize=(1, 1), dpi=pixels)
    figure.patch.set_facecolor("#3e7bfa")
    figure.text(0.5, 0.5, "c", color="white", fontsize=48, ha="center", va="center", weight="bold")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=pixels, metadata={"Software": None})
    pyplot.close(figure)
    return buffer.getvalue()


EXTRAS: dict[str, Callable[[dict[str, bytes]], None]] = {"zendesk": _zendesk_logos}
