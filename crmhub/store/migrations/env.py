"""Alembic environment: runs crmhub's migrations on the connection it is given.

crmhub calls Alembic programmatically (`crmhub.store.migrate`), passing the
engine's connection in `config.attributes["connection"]`; there is no
alembic.ini to keep in sync with settings.yaml.

The connection arrives inside the one transaction of the whole upgrade
(`migrate._one_transaction`), so Alembic begins none of its own: every
migration and its alembic_version bump commit together with the rest.
"""

from __future__ import annotations

from alembic import context

from crmhub.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
    compare_type=True,
    # SQLite's DDL is transactional once the driver stops committing it (migrate._one_transaction); Alembic's
    # SQLite default says otherwise, which would matter only if it began transactions itself.
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
