"""board aggregates: each board's stored log aggregate and Bradley-Terry fit

Revision ID: 0005_board_aggregates
Revises: 0004_matchmaking
Create Date: 2026-11-29 12:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005_board_aggregates'
down_revision = '0004_matchmaking'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('board_aggregates',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('board', sa.String(length=250), nullable=False),
    sa.Column('aggregate', sa.String(length=10), nullable=False),
    sa.Column('parameters_key', sa.String(length=500), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('last_vote_id', sa.BigInteger(), nullable=False),
    sa.Column('votes', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_board_aggregates')),
    sa.UniqueConstraint('board', 'aggregate', 'parameters_key',
                        name='uq_board_aggregates_key')
    )


def downgrade() -> None:
    op.drop_table('board_aggregates')
