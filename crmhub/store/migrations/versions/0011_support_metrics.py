"""support metrics: each case crmhub opened, kept after its thread moves on (issue 16)

`threads` holds a conversation's current case only; first response,
resolution, reopen rate and backlog need every case: when its first message
came, when the CRM last reported it closed, how often it reopened.

Revision ID: 0011_support_metrics
Revises: 0009_job_refs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0011_support_metrics"
down_revision = "0009_job_refs"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "support_cases",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("crm", sa.String(16), nullable=False),
        sa.Column("conversation_key", sa.String(255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=True),
        sa.Column("first_message_at", When, nullable=False),
        sa.Column("opened_at", When, nullable=False),
        sa.Column("closed_at", When, nullable=True),
        sa.Column("reopens", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("id", name="pk_support_cases"),
        sa.UniqueConstraint("crm", "conversation_key", "seq", name="uq_support_cases_case"),
    )
    op.create_index("ix_support_cases_first", "support_cases", ["first_message_at"])
    op.create_index("ix_support_cases_record", "support_cases", ["crm", "record_id"])
    op.create_index("ix_support_cases_open", "support_cases", ["id"], sqlite_where=sa.text("closed_at IS NULL"),
                    postgresql_where=sa.text("closed_at IS NULL"))
    # The report's windows over history: messages by their time, replies by when the agent wrote them.
    op.create_index("ix_ledger_occurred", "ledger", ["occurred_at"])
    op.create_index("ix_replies_written", "replies", ["written_at"])


def downgrade() -> None:
    op.drop_index("ix_replies_written", table_name="replies")
    op.drop_index("ix_ledger_occurred", table_name="ledger")
    op.drop_table("support_cases")
