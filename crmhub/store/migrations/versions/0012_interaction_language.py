"""interaction language: the language detected at routing, on the ledger row

Routing detects each message's language once (issue 19); storing it lets
`crmhub explain` show it, delivery write it onto the CRM case through the
history templates' {language}, and a short follow-up ("ok") keep the
language of its conversation's earlier messages. NULL: unknown, or detection off.

Revision ID: 0012_interaction_language
Revises: 0011_support_metrics (chained after main's head when main was merged in; the lead may re-chain)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_interaction_language"
down_revision = "0011_support_metrics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot alter a table in place beyond adding a column, PostgreSQL does it directly
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("language")
