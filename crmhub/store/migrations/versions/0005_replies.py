"""replies: agent replies from the CRMs on their way out over the channels

Revision ID: 0005_replies
Revises: 0004_budgets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_replies"
down_revision = "0004_budgets"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "replies",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("crm", sa.String(length=16), nullable=False),
        sa.Column("reply_ref", sa.String(length=128), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("conversation_key", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("to_kind", sa.String(length=8), nullable=False),
        sa.Column("to_address", sa.String(length=255), nullable=False),
        sa.Column("from_kind", sa.String(length=8), nullable=False),
        sa.Column("from_address", sa.String(length=255), nullable=False),
        sa.Column("in_reply_to", sa.String(length=128), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel_status", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", When, nullable=False),
        sa.Column("claimed_at", When, nullable=True),
        sa.Column("channel_message_id", sa.String(length=128), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("written_at", When, nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("sent_at", When, nullable=True),
        sa.Column("status_at", When, nullable=False),
        sa.Column("noted_at", When, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replies")),
        sa.UniqueConstraint("crm", "reply_ref", name="uq_replies_crm_ref"),
    )
    op.create_index("ix_replies_due", "replies", ["status", "next_attempt_at"])
    op.create_index("ix_replies_message", "replies", ["channel", "channel_message_id"])
    op.create_index("ix_replies_conversation", "replies", ["conversation_key"])


def downgrade() -> None:
    op.drop_index("ix_replies_conversation", table_name="replies")
    op.drop_index("ix_replies_message", table_name="replies")
    op.drop_index("ix_replies_due", table_name="replies")
    op.drop_table("replies")
