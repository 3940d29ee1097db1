"""Alembic environment: runs crmhub's migrations on the connection it is given.

crmhub calls Alembic programmatically (`crmhub.store.migrate`), passing the
engine's connection in `config.attributes["connection"]`; there is no
alembic.ini to keep in sync with settings.yaml.
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
)
with context.begin_transaction():
    context.run_migrations()
