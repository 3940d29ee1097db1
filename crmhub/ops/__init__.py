"""Operations: `crmhub explain`, `crmhub route --dry-run`, `crmhub deadletters`.

Each command is a function over a Session (or a StateStore) that returns
plain data plus the lines to print; `crmhub.cli` only parses arguments and
prints. Nothing here logs or prints a message body.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from crmhub.config import Config, load_config
from crmhub.errors import CrmhubError
from crmhub.store import StateStore, open_store


class OpsError(CrmhubError):
    """An ops command could not do what was asked (unknown id, nothing to replay...): exit 1."""


@contextmanager
def opened(settings: Path | None) -> Iterator[tuple[Config, StateStore]]:
    """The configuration and its state store, closed afterwards.

    Secrets are resolved only when the store needs one (`state.password`), so
    an ops shell without the CRMs' credentials can still inspect the store.
    """
    config = load_config(settings, resolve_secrets=False)
    if config.settings.state.password is not None:
        config = load_config(settings)
    store = open_store(config.database_url())
    try:
        yield config, store
    finally:
        store.close()


__all__ = ["OpsError", "opened"]
