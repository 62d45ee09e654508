"""jobs: leases, progress, dedup keys, dependencies, 'cancelled'; checkpoint training metadata

Revision ID: 0002_jobs
Revises: 0001
Create Date: 2026-11-29 09:19:16.972151
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002_jobs'
down_revision = '0001'
branch_labels = None
depends_on = None

OLD_STATES = "status IN ('queued', 'running', 'done', 'failed')"
NEW_STATES = "status IN ('queued', 'running', 'done', 'failed', 'cancelled')"


def upgrade() -> None:
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('training_metadata', sa.JSON(), nullable=True))

    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_attempts', sa.Integer(), nullable=False, server_default='3'))
        batch_op.add_column(sa.Column('dedup_key', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('checkpoint_name', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('after_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('worker', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('progress_done', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('progress_total', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('progress_unit', sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column('result', sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f('ix_jobs_checkpoint_name'), ['checkpoint_name'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_jobs_dedup_key'), ['dedup_key'])
        batch_op.create_foreign_key(batch_op.f('fk_jobs_after_id_jobs'), 'jobs', ['after_id'], ['id'])
        batch_op.drop_constraint(batch_op.f('ck_jobs_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_jobs_status'), NEW_STATES)

    # The defaults only filled existing rows; the ORM sets these columns itself.
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.alter_column('max_attempts', server_default=None)
        batch_op.alter_column('progress_done', server_default=None)


def downgrade() -> None:
    op.execute("UPDATE jobs SET status = 'failed' WHERE status = 'cancelled'")
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_jobs_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_jobs_status'), OLD_STATES)
        batch_op.drop_constraint(batch_op.f('fk_jobs_after_id_jobs'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_jobs_dedup_key'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_jobs_checkpoint_name'))
        batch_op.drop_column('result')
        batch_op.drop_column('progress_unit')
        batch_op.drop_column('progress_total')
        batch_op.drop_column('progress_done')
        batch_op.drop_column('heartbeat_at')
        batch_op.drop_column('lease_expires_at')
        batch_op.drop_column('worker')
        batch_op.drop_column('after_id')
        batch_op.drop_column('checkpoint_name')
        batch_op.drop_column('dedup_key')
        batch_op.drop_column('max_attempts')

    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.drop_column('training_metadata')
