"""link verify: one-time codes sent over a claimed channel to confirm a link suggestion

identities.yaml `statements: confirm_by_code` texts a code to a phone a
customer claimed; an answer from that phone with the code confirms the
claim (issue 14 item 2). Only a salted hash of each code is stored here.

Revision ID: 0017_link_verify
Revises: 0014_shared_budget (main's head when main was merged in; the lead may re-chain)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_link_verify"
down_revision = "0015_surveys"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "link_codes",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("suggestion_id", Id, nullable=False),
        sa.Column("target_kind", sa.String(length=8), nullable=False),
        sa.Column("target_value", sa.String(length=255), nullable=False),
        sa.Column("reply_ref", sa.String(length=128), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("expires_at", When, nullable=False),
        sa.Column("decided_at", When, nullable=True),
        sa.ForeignKeyConstraint(["suggestion_id"], ["link_suggestions.id"],
                                name=op.f("fk_link_codes_suggestion_id_link_suggestions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_codes")),
    )
    op.create_index(op.f("ix_link_codes_suggestion_id"), "link_codes", ["suggestion_id"])
    op.create_index("ix_link_codes_target", "link_codes", ["target_kind", "target_value", "status"])


def downgrade() -> None:
    op.drop_index("ix_link_codes_target", table_name="link_codes")
    op.drop_index(op.f("ix_link_codes_suggestion_id"), table_name="link_codes")
    op.drop_table("link_codes")
