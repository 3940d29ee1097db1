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
    reached = {route.kind.value for name in channels.enabled_names()
               for route in registry.load(name).code_routes(getattr(channels, name))}
    reachable = registry.code_kinds()  # kind -> the channel module that could send its codes
    unsent = [kind for kind, action in statements.items()
              if action == "confirm_by_code" and kind in reachable and kind not in reached]
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
    for kind in unsent:
        module = reachable[kind]
        text = (f"warning: statements.{kind}: confirm_by_code sends a code over channels.{module}, which is not "
                f"enabled with an address to send from in settings.yaml: claimed {kind.replace('_', ' ')}s stay "
                f"suggestions; enable channels.{module}, or use suggest")
        lines.append(str(doc.problem(text, ("statements", kind) if explicit else ("statements",))))
    return sorted(set(lines), key=lines.index)
