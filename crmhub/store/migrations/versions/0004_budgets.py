"""API budgets: outbox write priorities, and what each CRM's budget let through

Revision ID: 0004_budgets
Revises: 0003_threads
Create Date: 2026-11-23 13:02:37.431760

`outbox.priority` is a `crmhub.model.WritePriority` (0 reply, 1 new case,
2 follow-up, 3 backfill); rows written before it existed are follow-ups.
Claims go by (status, crm, priority, next_attempt_at), which replaces the
old (status, crm, next_attempt_at) index. `api_budgets` keeps, per CRM, the
lowest-ranked priority its budget let through at the last delivery run, so
`crmhub status` and the metrics can count the rows it holds back.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004_budgets'
down_revision = '0003_threads'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_budgets',
    sa.Column('crm', sa.String(length=16), nullable=False),
    sa.Column('max_priority', sa.Integer(), nullable=False),
    sa.Column('daily_remaining', sa.BigInteger(), nullable=True),
    sa.Column('daily_limit', sa.BigInteger(), nullable=True),
    sa.Column('reserve', sa.BigInteger(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('crm', name=op.f('pk_api_budgets'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), server_default=sa.text('2'), nullable=False))
        batch_op.drop_index(batch_op.f('ix_outbox_due'))
        batch_op.create_index('ix_outbox_claim', ['status', 'crm', 'priority', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_claim')
        batch_op.create_index(batch_op.f('ix_outbox_due'), ['status', 'crm', 'next_attempt_at'], unique=False)
        batch_op.drop_column('priority')
    op.drop_table('api_budgets')
