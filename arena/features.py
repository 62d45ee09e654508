"""The database-backed feature cache: image embeddings keyed by content hash and model.

Implements :class:`metrics.ccip.FeatureCache` on the ``feature_cache`` table
(:class:`arena.models.CachedFeature`), so no image is embedded twice by the same model, across
runs, processes and hosts sharing the database. Vectors are stored as little-endian float32
bytes with their length in ``dim``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from sqlalchemy import select

from arena.db import Database
from arena.models import CachedFeature
from metrics.ccip import FeatureKey

__all__ = ["DatabaseFeatureCache"]

# Keys per SELECT ... IN (...) and rows per INSERT, well under every backend's parameter limit.
BATCH = 400
_DTYPE = np.dtype("<f4")


class DatabaseFeatureCache:
    """A :class:`metrics.ccip.FeatureCache` stored in the arena database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get_many(self, keys: Sequence[FeatureKey]) -> dict[FeatureKey, np.ndarray]:
        """The stored vectors among ``keys`` (float32 arrays); absent keys are left out."""
        by_model: dict[str, list[str]] = defaultdict(list)
        for key in dict.fromkeys(keys):
            by_model[key.model_key].append(key.image_sha256)
        found: dict[FeatureKey, np.ndarray] = {}
        with self.db.session(readonly=True) as session:
            for model_key, hashes in by_model.items():
                for start in range(0, len(hashes), BATCH):
                    rows = session.execute(
                        select(CachedFeature.image_sha256, CachedFeature.dim, CachedFeature.vector)
                        .where(CachedFeature.model_key == model_key)
                        .where(CachedFeature.image_sha256.in_(hashes[start : start + BATCH]))
                    )
                    for sha, dim, vector in rows:
                        values = np.frombuffer(vector, dtype=_DTYPE)
                        if values.size == dim:  # a damaged row is treated as a miss
                            found[FeatureKey(sha, model_key)] = values.astype(np.float32)
        return found

    def put_many(self, features: dict[FeatureKey, np.ndarray]) -> None:
        """Store vectors; a key that is already stored (by another run, say) is kept as is."""
        rows = [
            {
                "image_sha256": key.image_sha256,
                "model_key": key.model_key,
                "dim": int(np.asarray(vector).size),
                "vector": np.ascontiguousarray(vector, dtype=_DTYPE).tobytes(),
            }
            for key, vector in features.items()
        ]
        for start in range(0, len(rows), BATCH):
            with self.db.session() as session:
                session.execute(self._insert_ignoring_duplicates(), rows[start : start + BATCH])

    def _insert_ignoring_duplicates(self):  # type: ignore[no-untyped-def]
        # Two processes may embed the same image at once; the second insert must not fail.
        if self.db.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(CachedFeature).on_conflict_do_nothing(
            index_elements=["image_sha256", "model_key"]
        )
