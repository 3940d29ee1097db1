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
def opened(settings: Path | None, *, sandbox: bool = False) -> Iterator[tuple[Config, StateStore]]:
    """The configuration and its existing state store, closed afterwards.

    Secrets are resolved only when the store needs one (`state.password`), so
    an ops shell without the CRMs' credentials can still inspect the store.
    Without settings the embedded sandbox defaults are used only when asked
    (`sandbox`): an operator who forgot `--config` must not be shown, or
    change, an empty sandbox store instead of production's. A missing SQLite
    file is never created here.

    Raises:
        OpsError: no settings and not `sandbox`.
        StoreMissing: the store the settings point at does not exist.
    """
    if settings is None and not sandbox:
        raise OpsError("no settings given: pass --config /etc/crmhub/settings.yaml or set CRMHUB_CONFIG; "
                       "add --sandbox to use the embedded sandbox defaults (./crmhub.db)")
    config = load_config(settings, resolve_secrets=False)
    if config.settings.state.password is not None:
        config = load_config(settings)
    store = open_store(config.database_url(), create=False)
    try:
        yield config, store
    finally:
        store.close()


__all__ = ["OpsError", "opened"]
