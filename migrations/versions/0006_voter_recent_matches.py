"""voter's recent matches: index (voter_id, id) on matches instead of (voter_id)

Matchmaking reads a voter's latest matches on every request; with an index on voter_id
alone the database reads and sorts all of that voter's matches (or scans the table
backwards), which grows with the voter's history.

Revision ID: 0006_voter_recent_matches
Revises: 0005_board_aggregates
Create Date: 2026-11-29 14:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0006_voter_recent_matches'
down_revision = '0005_board_aggregates'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('matches', schema=None) as batch_op:
        batch_op.create_index('ix_matches_voter_recent', ['voter_id', 'id'], unique=False)
        batch_op.drop_index(batch_op.f('ix_matches_voter_id'))


def downgrade() -> None:
    with op.batch_alter_table('matches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_matches_voter_id'), ['voter_id'], unique=False)
        batch_op.drop_index('ix_matches_voter_recent')
