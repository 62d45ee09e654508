"""reliability: per-match image names and the rate-limit event log

Revision ID: 0003_reliability
Revises: 0002_jobs
Create Date: 2026-11-29 09:40:00
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0003_reliability'
down_revision = '0002_jobs'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('limit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=10), nullable=False),
    sa.Column('voter', sa.String(length=100), nullable=True),
    sa.Column('address', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_limit_events'))
    )
    with op.batch_alter_table('limit_events', schema=None) as batch_op:
        batch_op.create_index('ix_limit_events_address', ['action', 'address', 'created_at'], unique=False)
        batch_op.create_index('ix_limit_events_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_limit_events_voter', ['action', 'voter', 'created_at'], unique=False)

    # Matches issued before this revision get random names too, then the column is required.
    with op.batch_alter_table('match_images', schema=None) as batch_op:
        batch_op.add_column(sa.Column('served_name', sa.String(length=32), nullable=True))
    table = sa.table('match_images', sa.column('match_id'), sa.column('position'),
                     sa.column('served_name'))
    bind = op.get_bind()
    for match_id, position in bind.execute(sa.select(table.c.match_id, table.c.position)).all():
        bind.execute(
            table.update()
            .where(table.c.match_id == match_id, table.c.position == position)
            .values(served_name=secrets.token_hex(16))
        )
    with op.batch_alter_table('match_images', schema=None) as batch_op:
        batch_op.alter_column('served_name', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_match_images_served_name'), ['served_name'])


def downgrade() -> None:
    with op.batch_alter_table('match_images', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_match_images_served_name'), type_='unique')
        batch_op.drop_column('served_name')
    with op.batch_alter_table('limit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_limit_events_voter')
        batch_op.drop_index('ix_limit_events_created_at')
        batch_op.drop_index('ix_limit_events_address')
    op.drop_table('limit_events')
