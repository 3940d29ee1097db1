"""hot-path indexes: every per-item lookup of a cycle by an index, whatever the history (issue 13)

- ledger: the unprocessed rows only (partial), so routing's queue is found without reading the history;
- outbox: the claim index holds pending rows only (partial), so a status slice never leads to the done rows;
- threads: by (crm, record_id), a reply's case, and (crm, opened_at), where the first reply read starts;
- replies: recent sent replies by (status, sent_at), failures not written back yet (partial).

Revision ID: 0008_hot_path_indexes
Revises: 0007_claims
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_hot_path_indexes"
down_revision = "0007_claims"
branch_labels = None
depends_on = None

UNPROCESSED = sa.text("processed_at IS NULL")
PENDING = sa.text("status = 'pending'")
PLAIN = (("ix_threads_record", "threads", ["crm", "record_id"]),
         ("ix_threads_opened", "threads", ["crm", "opened_at"]),
         ("ix_replies_sent", "replies", ["status", "sent_at"]))
NOT_NOTED = sa.text("status IN ('failed', 'dead') AND noted_at IS NULL")


def upgrade() -> None:
    op.create_index("ix_ledger_unprocessed", "ledger", ["id"], sqlite_where=UNPROCESSED, postgresql_where=UNPROCESSED)
    op.drop_index("ix_outbox_claim", table_name="outbox")
    op.create_index("ix_outbox_claim", "outbox", ["crm", "priority", "next_attempt_at"], sqlite_where=PENDING,
                    postgresql_where=PENDING)
    for name, table, columns in PLAIN:
        op.create_index(name, table, columns)
    op.create_index("ix_replies_failures", "replies", ["crm", "id"], sqlite_where=NOT_NOTED,
                    postgresql_where=NOT_NOTED)


def downgrade() -> None:
    op.drop_index("ix_replies_failures", table_name="replies")
    for name, table, _ in reversed(PLAIN):
        op.drop_index(name, table_name=table)
    op.drop_index("ix_outbox_claim", table_name="outbox")
    op.create_index("ix_outbox_claim", "outbox", ["status", "crm", "priority", "next_attempt_at"])
    op.drop_index("ix_ledger_unprocessed", table_name="ledger")
