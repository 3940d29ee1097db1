"""claims: outbox rows and replies count the claims cut short apart from the attempts that got an answer

A claim the daemon died holding (its lease ran out, no outcome recorded) is
no attempt: `attempts` counts answered tries only, and `claims` the claims
since the last answer, so a row that stops the daemon every time is found.

Revision ID: 0007_claims
Revises: 0006_link_suggestions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_claims"
down_revision = "0006_link_suggestions"
branch_labels = None
depends_on = None

TABLES = ("outbox", "replies")


def upgrade() -> None:
    for table in TABLES:
        # batch mode: SQLite cannot alter a table in place beyond adding a column, PostgreSQL does it directly
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("claims", sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("claims")
