"""Settings that are valid but risky: `crmhub validate` prints them as warnings and still exits 0.

Kept apart from the loader (`_load.py`), which only refuses what is wrong;
a warning never stops crmhub from starting.
"""

from __future__ import annotations

from crmhub.config._load import Config
from crmhub.config._yaml import Document, read


def config_warnings(config: Config) -> list[str]:
    """Lines `<file>:<line>:<col>: warning: <key>: <why>; <what instead>`, in file order."""
    joins = [kind for kind, action in config.identities.statements if action == "join"]
    if not joins:
        return []
    doc = Document(config.mappings_dir / "identities.yaml", 1)
    read(doc)
    lines = []
    for kind in joins:
        explicit = isinstance(doc.tree, dict) and isinstance(doc.tree.get("statements"), dict)
        where = ("statements", kind) if explicit else ("statements",)
        text = (f"warning: statements.{kind}: join takes what a customer writes as proof: anyone who writes "
                f"someone else's {kind.replace('_', ' ')} gets that customer's history; use suggest (an agent or "
                "admin confirms each claim with `crmhub links confirm`)")
        lines.append(str(doc.problem(text, where)))
    return sorted(set(lines), key=lines.index)
