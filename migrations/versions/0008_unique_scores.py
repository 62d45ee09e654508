"""unique scores: metric_scores.score_key, one row per (metric, model version, checkpoint,
character, images, references, parameters)

Revision ID: 0008_unique_scores
Revises: 0007_operator_decisions
Create Date: 2026-12-02 20:30:00

Existing rows get their key; of rows with the same key (a retried score job that stored the
same score twice) the first is kept and the later copies are removed, then the key is made
unique.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = '0008_unique_scores'
down_revision = '0007_operator_decisions'
branch_labels = None
depends_on = None


def _key(metric: str, version: str, checkpoint_id: int | None, character: str | None,
         images: Any, parameters: Any, details: Any) -> str:
    """arena.models.score_key as of this revision (frozen here: migrations never import the
    application's current code)."""
    def load(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    images, parameters, details = load(images), load(parameters), load(details)
    content = {
        "metric": metric, "version": version, "checkpoint": checkpoint_id,
        "character": character, "images": sorted(map(str, images or [])),
        "references": sorted(map(str, (details or {}).get("reference_sha256") or [])),
        "parameters": {k: v for k, v in (parameters or {}).items() if k != "references"},
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table('metric_scores', schema=None) as batch_op:
        batch_op.add_column(sa.Column('score_key', sa.String(length=64), nullable=True))
    bind = op.get_bind()
    table = sa.table('metric_scores', sa.column('id', sa.Integer), sa.column('metric'),
                     sa.column('metric_version'), sa.column('checkpoint_id'),
                     sa.column('character'), sa.column('images_used', sa.JSON),
                     sa.column('parameters', sa.JSON), sa.column('details', sa.JSON),
                     sa.column('score_key'))
    seen: set[str] = set()
    rows = bind.execute(sa.select(table.c.id, table.c.metric, table.c.metric_version,
                                  table.c.checkpoint_id, table.c.character,
                                  table.c.images_used, table.c.parameters, table.c.details)
                        .order_by(table.c.id)).all()
    for row_id, *values in rows:
        key = _key(*values)
        if key in seen:
            bind.execute(sa.delete(table).where(table.c.id == row_id))
            continue
        seen.add(key)
        bind.execute(sa.update(table).where(table.c.id == row_id).values(score_key=key))
    with op.batch_alter_table('metric_scores', schema=None) as batch_op:
        batch_op.alter_column('score_key', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_metric_scores_score_key'),
                                          ['score_key'])


def downgrade() -> None:
    with op.batch_alter_table('metric_scores', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_metric_scores_score_key'), type_='unique')
        batch_op.drop_column('score_key')
