"""shared API budget: the calls several daemons reserved per slot of each system's pace

Daemons on one PostgreSQL store pace their calls to a CRM together instead
of each taking 1/N of the budget by hand (issue 15 item 6): each reserves a
chunk of calls in the current slot of the window, and a reservation fits
only while the window's last slots stay within the configured pace.
SQLite (one daemon) keeps its budget in memory and never writes here.

Revision ID: 0014_shared_budget
Revises: 0012_interaction_language (the lead re-chains at merge)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_shared_budget"
down_revision = "0012_interaction_language"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_budget_slots",
        sa.Column("system", sa.String(16), nullable=False),
        sa.Column("seconds", sa.Integer(), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("system", "seconds", "slot", name=op.f("pk_api_budget_slots")),
    )


def downgrade() -> None:
    op.drop_table("api_budget_slots")
