"""threads: what the CRM says of each conversation's case (closed for good, last state applied)

Revision ID: 0003_threads
Revises: 0002_identity_merges
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003_threads'
down_revision = '0002_identity_merges'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('closed_final', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('state_at', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('threads', schema=None) as batch_op:
        batch_op.drop_column('state_at')
        batch_op.drop_column('closed_final')
