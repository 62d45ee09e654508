"""Vote-rigging attackers for the simulator (Min et al., ICML 2025, "Improving Your Model Ranking
on Chatbot Arena by Vote Rigging").

One attacker (one person) spreads votes over ``ids`` voter ids and wants the checkpoint at true
place ``target_place`` to rise. It recognises a checkpoint's image by its style with probability
``recognition`` (p), and for sure once that image has been revealed to it: after each vote the
arena reveals which checkpoint made each shown image, and an image's bytes identify it in every
later match. Each checkpoint has ``pool`` images, one drawn per match, so p rises towards 1 as
reveals accumulate. Strategies, as in the paper:

- ``target_only``: when it recognises the target, it votes the target best; otherwise it skips
  the match (``otherwise="skip"``) or votes at random (``otherwise="random"``);
- ``omnipresent``: as ``target_only``, and in a match without the target where it recognises
  one of the ``rivals`` checkpoints just above the target (on the public board; the simulator
  uses their true places), it votes a non-rival best, pulling the rivals down.

An attacker picks only the best image of a four-way match (the ballot the arena accepts without
a full ranking). Attacker votes are a share ``share`` of all votes; its skipped matches are
matches the arena issued and recorded, as the live arena records them. Answer times (seconds)
are drawn log-normally: honest voters around 6 s, random voters 2.5 s, an attacker that
recognised an image 1.5 s (assumptions of this simulator, not measurements).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from metrics.errors import InputError
from metrics.outcomes import VoteRecord

__all__ = ["ATTACK_STRATEGIES", "AttackConfig", "Attacker", "answer_seconds"]

AttackStrategy = Literal["target_only", "omnipresent"]
ATTACK_STRATEGIES: tuple[str, ...] = get_args(AttackStrategy)
Otherwise = Literal["skip", "random"]
ANSWER_MEDIAN = {"honest": 6.0, "random": 2.5, "recognised": 1.5}
ANSWER_SPREAD = 0.5  # sd of log seconds


def answer_seconds(kind: str, rng: random.Random) -> float:
    """Seconds from a match being shown to the vote, for a voter of ``kind`` (see above)."""
    return ANSWER_MEDIAN[kind] * math.exp(rng.gauss(0.0, ANSWER_SPREAD))


@dataclass(frozen=True)
class AttackConfig:
    """One attacker: its share of all votes, recognition, strategy, target and voter ids."""

    share: float = 0.05
    recognition: float = 0.6
    strategy: AttackStrategy = "target_only"
    target_place: int = 12
    ids: int = 20
    otherwise: Otherwise = "skip"
    rivals: int = 3
    pool: int = 30
    max_tries: int = 400

    def __post_init__(self) -> None:
        if not 0.0 <= self.share < 1.0:
            raise InputError(f"attack share: expected a share of votes in [0, 1), "
                             f"got {self.share!r}")
        if not 0.0 <= self.recognition <= 1.0:
            raise InputError(f"attack recognition: expected a probability in [0, 1], "
                             f"got {self.recognition!r}")
        if self.strategy not in ATTACK_STRATEGIES:
            raise InputError(f"attack strategy: expected one of {', '.join(ATTACK_STRATEGIES)},"
                             f" got {self.strategy!r}")
        if self.otherwise not in get_args(Otherwise):
            raise InputError(f"attack otherwise: expected skip or random, "
                             f"got {self.otherwise!r}")
        for name in ("target_place", "ids", "pool", "max_tries"):
            if getattr(self, name) < 1:
                raise InputError(f"attack {name}: expected at least 1, "
                                 f"got {getattr(self, name)!r}")
        if self.rivals < 0:
            raise InputError(f"attack rivals: expected 0 or more, got {self.rivals!r}")


@dataclass
class Attacker:
    """The attacker's state: target, rivals, and the images revealed to it so far."""

    config: AttackConfig
    target: int
    rivals: frozenset[int]
    seen: dict[int, set[int]] = field(default_factory=dict)

    @classmethod
    def against(cls, config: AttackConfig, true_order: Sequence[int]) -> Attacker:
        """The attacker of ``config`` given the checkpoints best first (true places)."""
        if config.target_place > len(true_order):
            raise InputError(f"attack target_place: expected at most {len(true_order)}, "
                             f"got {config.target_place}")
        at = config.target_place - 1
        return cls(config, true_order[at], frozenset(true_order[max(at - config.rivals, 0):at]))

    def _recognises(self, checkpoint: int, image: int, rng: random.Random) -> bool:
        return image in self.seen.get(checkpoint, ()) or rng.random() < self.config.recognition

    def answer(self, kind: str, group: tuple[int, ...], images: tuple[int, ...],
               rng: random.Random, time: float) -> tuple[VoteRecord | None, bool]:
        """The attacker's ballot on a match (None: it skips) and whether it recognised an
        image it acts on."""
        wanted = {self.target} | (self.rivals if self.config.strategy == "omnipresent"
                                  else frozenset())
        known = {c for c, image in zip(group, images, strict=True)
                 if c in wanted and self._recognises(c, image, rng)}
        if self.target in known:
            return VoteRecord(group, winner=group.index(self.target), time=time), True
        if known:  # omnipresent: a rival is shown without the target
            others = [i for i, c in enumerate(group) if c not in known]
            if others:
                return VoteRecord(group, winner=rng.choice(others), time=time), True
        if self.config.otherwise == "random":
            return VoteRecord(group, winner=rng.randrange(len(group)), time=time), False
        return None, False

    def reveal(self, group: tuple[int, ...], images: tuple[int, ...]) -> None:
        """After a vote the arena shows which checkpoint made each image."""
        for c, image in zip(group, images, strict=True):
            self.seen.setdefault(c, set()).add(image)
