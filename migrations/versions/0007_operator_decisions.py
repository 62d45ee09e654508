"""operator decisions: an append-only log of exclusions of voters and hidden prompts

Revision ID: 0007_operator_decisions
Revises: 0006_voter_recent_matches
Create Date: 2026-12-02 19:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007_operator_decisions'
down_revision = '0006_voter_recent_matches'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'operator_decisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subject', sa.String(length=10), nullable=False),
        sa.Column('subject_id', sa.BigInteger(), nullable=False),
        sa.Column('action', sa.String(length=10), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("action IN ('exclude', 'include', 'hide', 'unhide')",
                           name=op.f('ck_operator_decisions_action')),
        sa.CheckConstraint("subject IN ('voter', 'prompt')",
                           name=op.f('ck_operator_decisions_subject')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_operator_decisions')),
    )
    with op.batch_alter_table('operator_decisions', schema=None) as batch_op:
        batch_op.create_index('ix_operator_decisions_subject', ['subject', 'subject_id', 'id'],
                              unique=False)
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER operator_decisions_no_{action.lower()} BEFORE {action} "
                "ON operator_decisions "
                "BEGIN SELECT RAISE(ABORT, 'operator decisions are append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION operator_decisions_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'operator decisions are append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER operator_decisions_append_only BEFORE UPDATE OR DELETE "
            "ON operator_decisions FOR EACH ROW EXECUTE FUNCTION operator_decisions_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS operator_decisions_append_only ON operator_decisions")
        op.execute("DROP FUNCTION IF EXISTS operator_decisions_append_only()")
    with op.batch_alter_table('operator_decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_operator_decisions_subject')
    op.drop_table('operator_decisions')
