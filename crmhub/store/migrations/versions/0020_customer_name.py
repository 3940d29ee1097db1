"""ledger.customer_name: the name a channel showed for the customer (WhatsApp's profile name)

An approved WhatsApp template sent outside the 24-hour window may greet the
customer by name (settings `channels.twilio.whatsapp_templates`, variable
`customer_name`); Twilio gives that name only on the message webhook
(`ProfileName`). It is what the customer chose to show, never evidence for
identity. Empty: the channel showed none.

Revision ID: 0020_customer_name
Revises: 0017_link_verify (the lead re-chains at merge)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_customer_name"
down_revision = "0017_link_verify"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(sa.Column("customer_name", sa.String(length=255), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("customer_name")
