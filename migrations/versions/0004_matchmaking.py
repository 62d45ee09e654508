"""matchmaking: index on images.hidden (the pool's change check counts hidden images)

Revision ID: 0004_matchmaking
Revises: 0003_reliability
Create Date: 2026-11-29 10:15:00
"""

from __future__ import annotations

from alembic import op

revision = '0004_matchmaking'
down_revision = '0003_reliability'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_images_hidden'), ['hidden'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('images', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_images_hidden'))
