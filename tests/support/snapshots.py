"""The stored rating snapshots as comparable rows, for tests that check online == replay."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from arena.db import Database
from arena.models import RatingSnapshot


def snapshot_table(db: Database) -> list[tuple[Any, ...]]:
    """Every snapshot column except the row id and the update time."""
    with db.session() as s:
        rows = s.scalars(select(RatingSnapshot).order_by(
            RatingSnapshot.board, RatingSnapshot.system, RatingSnapshot.checkpoint_id)).all()
        return [(r.board, r.system, r.checkpoint_id, r.rating, r.mu, r.sigma, r.games, r.wins,
                 r.draws, r.losses, r.weighted_sum, r.held_since, r.first_time, r.last_vote_id,
                 json.dumps(r.parameters, sort_keys=True)) for r in rows]
