"""identity merges: conflicts, where each write landed, relinks, admin-preferred links

Revision ID: 0002_identity_merges
Revises: 0001
Create Date: 2026-11-23 12:54:04.332057
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002_identity_merges'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('conflicts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('crm', sa.String(length=16), nullable=False),
    sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('record_ids', sa.JSON(), nullable=False),
    sa.Column('primary_id', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('detected_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution', sa.String(length=255), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_conflicts_person_id_persons')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conflicts')),
    sa.UniqueConstraint('crm', 'person_id', name='uq_conflicts_crm_person')
    )
    with op.batch_alter_table('conflicts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_conflicts_person_id'), ['person_id'], unique=False)

    with op.batch_alter_table('crm_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preferred', sa.Boolean(), nullable=False, server_default=sa.false()))

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('contact_ref', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('relink', sa.Boolean(), nullable=False, server_default=sa.false()))



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('relink')
        batch_op.drop_column('contact_ref')

    with op.batch_alter_table('crm_links', schema=None) as batch_op:
        batch_op.drop_column('preferred')

    with op.batch_alter_table('conflicts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conflicts_person_id'))

    op.drop_table('conflicts')
