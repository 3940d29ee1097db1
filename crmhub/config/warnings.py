"""Settings that are valid but risky: `crmhub validate` prints them as warnings and still exits 0.

Kept apart from the loader (`_load.py`), which only refuses what is wrong;
a warning never stops crmhub from starting.
"""

from __future__ import annotations

from crmhub.config._load import Config
from crmhub.channels import registry
from crmhub.config._yaml import Document, read


def config_warnings(config: Config) -> list[str]:
    """Lines `<file>:<line>:<col>: warning: <key>: <why>; <what instead>`, in file order."""
    statements = dict(config.identities.statements)
    joins = [kind for kind, action in statements.items() if action == "join"]
    channels = config.settings.channels
    texts = any(registry.load(name).code_sender(getattr(channels, name)) for name in channels.enabled_names())
    unsent = statements.get("phone") == "confirm_by_code" and not texts
    if not joins and not unsent:
        return []
    doc = Document(config.mappings_dir / "identities.yaml", 1)
    read(doc)
    explicit = isinstance(doc.tree, dict) and isinstance(doc.tree.get("statements"), dict)
    lines = []
    for kind in joins:
        text = (f"warning: statements.{kind}: join takes what a customer writes as proof: anyone who writes "
                f"someone else's {kind.replace('_', ' ')} gets that customer's history; use suggest (an agent or "
                "admin confirms each claim with `crmhub links confirm`)")
        lines.append(str(doc.problem(text, ("statements", kind) if explicit else ("statements",))))
    if unsent:
        text = ("warning: statements.phone: confirm_by_code texts a code from our Twilio number, and "
                "channels.twilio is not enabled with a number in settings.yaml: claimed phones stay suggestions; "
                "enable Twilio, or use suggest")
        lines.append(str(doc.problem(text, ("statements", "phone") if explicit else ("statements",))))
    return sorted(set(lines), key=lines.index)
