"""surveys: CSAT and NPS questions asked on a case's close, their answers, and the answers' writes (issue 16)

`surveys` holds one row per question (unique per case for CSAT, per person
and period for NPS), asked or skipped with the reason; `survey_scores` the
answer's write onto the case in each CRM.

Revision ID: 0015_surveys
Revises: 0014_shared_budget (chained after main's head when main was merged in; the lead may re-chain)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_surveys"
down_revision = "0018_identity_kinds"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("conversation_key", sa.String(255), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("crm", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("person_id", Id, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("asked_at", When, nullable=False),
        sa.Column("answer_by", When, nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("answered_at", When, nullable=True),
        sa.Column("answer_id", Id, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_surveys"),
        sa.UniqueConstraint("kind", "subject", name="uq_surveys_subject"),
    )
    op.create_index("ix_surveys_conversation", "surveys", ["conversation_key"])
    op.create_index("ix_surveys_asked", "surveys", ["asked_at"])
    op.create_table(
        "survey_scores",
        sa.Column("survey_id", Id, nullable=False),
        sa.Column("crm", sa.String(16), nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", When, nullable=False),
        sa.Column("done_at", When, nullable=True),
        sa.PrimaryKeyConstraint("survey_id", "crm", name="pk_survey_scores"),
    )
    op.create_index("ix_survey_scores_pending", "survey_scores", ["crm", "next_attempt_at"], sqlite_where=PENDING,
                    postgresql_where=PENDING)


def downgrade() -> None:
    op.drop_table("survey_scores")
    op.drop_table("surveys")
