"""adoptions: what a new or restored state store found an earlier one wrote, per CRM and object (issue 14)

A store in front of an org crmhub already wrote to adopts cases, activities
and contacts by crmhub's keys instead of writing them again; `crmhub status`
says how many. The row with object_type '' holds the CRM's adoption horizon.

persons.key: crmhub's key of the contact it creates for a person. It was
`crmhub-person-<id>`, but ids are the store's own, so a new store gave an
earlier store's key to another person and its contact create (an upsert by
that key) landed on that person's contact. New persons get a key derived from
the identity they were first seen with; persons already stored keep the key
their contacts may carry.

identities.display_at: an X account keeps its id when renamed, and the
handle (`display`) follows the newest item seen; this is that item's time,
so a backlog item with the old handle never renames it back.

Revision ID: 0018_identity_kinds
Revises: 0012_interaction_language (the lead re-chains at merge)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_identity_kinds"
down_revision = "0013_link_log"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("persons") as batch:
        batch.add_column(sa.Column("key", sa.String(64), nullable=True))
    with op.batch_alter_table("identities") as batch:
        batch.add_column(sa.Column("display_at", When, nullable=True))
    persons = sa.table("persons", sa.column("id", sa.Integer()), sa.column("key", sa.String(64)))
    op.execute(persons.update().values(key=sa.literal("crmhub-person-") + sa.cast(persons.c.id, sa.String())))
    op.create_table(
        "adoptions",
        sa.Column("crm", sa.String(16), nullable=False),
        sa.Column("object_type", sa.String(32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("until", When, nullable=True),
        sa.Column("updated_at", When, nullable=False),
        sa.PrimaryKeyConstraint("crm", "object_type", name="pk_adoptions"),
    )


def downgrade() -> None:
    op.drop_table("adoptions")
    with op.batch_alter_table("persons") as batch:
        batch.drop_column("key")
    with op.batch_alter_table("identities") as batch:
        batch.drop_column("display_at")
