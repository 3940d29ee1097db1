"""link log: every join and split of persons, with evidence, actor and the rows it moved (issue 14)

`link_events` is append-only; `link_event_rows` names the identities, CRM
links and ledger rows each event moved, so `crmhub links undo` gives back
exactly what a join took. `outbox.detach_from` carries, on a relink an undo
queued, the wrong record the activity leaves.

Revision ID: 0013_link_log
Revises: 0012_interaction_language
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_link_log"
down_revision = "0014_shared_budget"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "link_events",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("kept_person_id", Id, nullable=True),
        sa.Column("absorbed_person_id", Id, nullable=True),
        sa.Column("concerning", sa.String(length=300), nullable=False),
        sa.Column("evidence", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("undoes", Id, nullable=True),
        sa.ForeignKeyConstraint(["kept_person_id"], ["persons.id"],
                                name=op.f("fk_link_events_kept_person_id_persons")),
        sa.ForeignKeyConstraint(["absorbed_person_id"], ["persons.id"],
                                name=op.f("fk_link_events_absorbed_person_id_persons")),
        sa.ForeignKeyConstraint(["undoes"], ["link_events.id"], name=op.f("fk_link_events_undoes_link_events")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_events")),
    )
    op.create_index("ix_link_events_kept", "link_events", ["kept_person_id"])
    op.create_index("ix_link_events_absorbed", "link_events", ["absorbed_person_id"])
    op.create_index("ix_link_events_undoes", "link_events", ["undoes"])
    op.create_table(
        "link_event_rows",
        sa.Column("event_id", Id, nullable=False),
        sa.Column("table", sa.String(length=16), nullable=False),
        sa.Column("row_id", Id, nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["link_events.id"], name=op.f("fk_link_event_rows_event_id_link_events")),
        sa.PrimaryKeyConstraint("event_id", "table", "row_id", name=op.f("pk_link_event_rows")),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("detach_from", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("detach_from")
    op.drop_table("link_event_rows")
    op.drop_index("ix_link_events_undoes", table_name="link_events")
    op.drop_index("ix_link_events_absorbed", table_name="link_events")
    op.drop_index("ix_link_events_kept", table_name="link_events")
    op.drop_table("link_events")
