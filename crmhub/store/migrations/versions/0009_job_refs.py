"""job refs: an outbox row keeps the asynchronous bulk job it was submitted in

A Zendesk create_many/update_many answers with a job that runs later. Its
reference is stored on the rows it carries as soon as it is submitted, so
an attempt after a lease ran out, a crash or a timeout waits for that job
and looks at what it did instead of submitting the rows again (issue 13).

Revision ID: 0009_job_refs
Revises: 0008_hot_path_indexes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_job_refs"
down_revision = "0008_hot_path_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot alter a table in place beyond adding a column, PostgreSQL does it directly
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("job_ref", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("job_ref")
