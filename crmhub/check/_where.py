"""Where in the admin's files a name was written: `mappings/routing.yaml line 12`.

The validated models keep no positions, so the files are read again (they
just passed validation) and each key path is located in its YAML tree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crmhub.config import Config
from crmhub.config._yaml import Document, locate, read

_FILES = ("settings", "identities", "routing", "history")


class Where:
    """`where("routing", ("queues", "salesforce", "vip", "queue"))` -> `mappings/routing.yaml line 14`."""

    def __init__(self, config: Config) -> None:
        paths = {"settings": config.source,
                 **{kind: config.mappings_dir / f"{kind}.yaml" for kind in _FILES[1:]}}
        self._docs: dict[str, Document] = {}
        for order, kind in enumerate(_FILES):
            doc = Document(Path(paths[kind]), order, _shown(Path(paths[kind])))
            read(doc)  # validated already; a tree of None just gives line 1
            self._docs[kind] = doc

    def __call__(self, kind: str, loc: Sequence[str | int]) -> str:
        doc = self._docs[kind]
        line, _ = locate(doc.tree, loc)
        return f"{doc.display} line {line}"

    def tree(self, kind: str) -> Any:
        return self._docs[kind].tree


def _shown(path: Path) -> str:
    """Relative to the working directory when below it (as people typed it), else absolute."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:  # another drive (Windows)
        return str(path)
