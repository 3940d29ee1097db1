"""link suggestions: identities customers claim in messages, waiting for a person to confirm them

Revision ID: 0006_link_suggestions
Revises: 0005_replies
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_link_suggestions"
down_revision = "0005_replies"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "link_suggestions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("interaction_id", Id, nullable=False),
        sa.Column("sender_kind", sa.String(length=8), nullable=False),
        sa.Column("sender_value", sa.String(length=255), nullable=False),
        sa.Column("sender_display", sa.String(length=255), nullable=False),
        sa.Column("sender_person_id", Id, nullable=False),
        sa.Column("claimed_kind", sa.String(length=8), nullable=False),
        sa.Column("claimed_value", sa.String(length=255), nullable=False),
        sa.Column("claimed_display", sa.String(length=255), nullable=False),
        sa.Column("holder_person_id", Id, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("decided_at", When, nullable=True),
        sa.Column("decided_by", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["interaction_id"], ["ledger.id"],
                                name=op.f("fk_link_suggestions_interaction_id_ledger")),
        sa.ForeignKeyConstraint(["sender_person_id"], ["persons.id"],
                                name=op.f("fk_link_suggestions_sender_person_id_persons")),
        sa.ForeignKeyConstraint(["holder_person_id"], ["persons.id"],
                                name=op.f("fk_link_suggestions_holder_person_id_persons")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_suggestions")),
        sa.UniqueConstraint("sender_kind", "sender_value", "claimed_kind", "claimed_value",
                            name="uq_link_suggestions_pair"),
    )
    op.create_index("ix_link_suggestions_status", "link_suggestions", ["status"])
    op.create_index(op.f("ix_link_suggestions_interaction_id"), "link_suggestions", ["interaction_id"])
    op.create_table(
        "link_notes",
        sa.Column("suggestion_id", Id, nullable=False),
        sa.Column("crm", sa.String(length=16), nullable=False),
        sa.Column("case_id", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("noted_at", When, nullable=False),
        sa.ForeignKeyConstraint(["suggestion_id"], ["link_suggestions.id"],
                                name=op.f("fk_link_notes_suggestion_id_link_suggestions")),
        sa.PrimaryKeyConstraint("suggestion_id", "crm", name=op.f("pk_link_notes")),
    )


def downgrade() -> None:
    op.drop_table("link_notes")
    op.drop_index(op.f("ix_link_suggestions_interaction_id"), table_name="link_suggestions")
    op.drop_index("ix_link_suggestions_status", table_name="link_suggestions")
    op.drop_table("link_suggestions")
