"""Export the vote log (jsonl, csv, parquet, FastChat battles) and import a jsonl export.

One exported vote names everything needed to understand it outside the arena: match kind,
prompt, the image shown at each position with its checkpoint (name and sha256) and training
config, the outcome, the time, a pseudonym of the voter (a hash, never the cookie),
``excluded``: the reason in force when an operator excluded the vote from every board
(:mod:`arena.decisions`: the voter's votes, or the votes on the match's prompt; both reasons,
voter's first, joined by ``"; "`` when both are excluded; None when the vote counts), and
``excluded_by``: whose exclusion left it out (``"voter"``, ``"prompt"`` or
``"voter,prompt"``; None when it counts). Excluded votes stay in the export.

``fastchat`` is the battle-record layout public arenas publish (Chiang et al. 2024, the
``clean_battle`` files of FastChat): a JSON list of ``{"model_a", "model_b", "winner",
"tstamp", ...}`` with ``winner`` one of ``model_a``, ``model_b``, ``tie`` and
``tie (bothbad)``; a four-way vote becomes its pairwise outcomes
(:func:`metrics.outcomes.pairwise`: the winner over each other image, or every ordered pair
of a full ranking).

:func:`import_votes` reads the jsonl export into another arena in one serialized
transaction: checkpoints are matched by name and sha256, prompts by text, images by content
hash (an image the target does not hold is recorded hidden, for provenance, and never
served), a vote whose match token is already there is skipped as a duplicate, and every
imported vote that counts (its prompt here not excluded by an operator, nor its voter) updates
the ratings in log order. An error anywhere imports nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from arena.db import Database
from arena.decisions import Decision, excluded_prompt_ids, excluded_voter_ids, exclusions
from arena.errors import InputError, UserError
from arena.models import (
    VOTE_OUTCOMES,
    Checkpoint,
    Image,
    Match,
    MatchImage,
    Prompt,
    TrainingConfigRecord,
    Vote,
    Voter,
    utcnow,
)
from arena.pool import placeholder_image
from arena.settings import Settings
from metrics.file_hash import sha256_bytes
from metrics.match_kinds import MATCH_SIZES

__all__ = [
    "VOTE_FORMATS",
    "ImportReport",
    "export_votes",
    "fastchat_battles",
    "import_votes",
    "vote_documents",
    "voter_pseudonym",
]

VOTE_FORMATS = ("jsonl", "csv", "parquet", "fastchat")
SCHEMA = "illustrious-arena/votes/1"
_BATCH = 2000


def voter_pseudonym(external_id: str) -> str:
    """The name exports and operator tools give a voter: a hash of its id, never the id."""
    return sha256_bytes(external_id.encode())[:24]


def _winner(vote: Vote) -> int | str | None:
    if vote.outcome == "win":
        return vote.winner_position
    if vote.outcome == "ranking":
        return vote.ranking[0] if vote.ranking else None
    return vote.outcome


def _excluded(voter: Decision | None, prompt: Decision | None) -> dict[str, str | None]:
    """A vote's ``excluded`` reason and ``excluded_by`` from the decisions in force on its
    voter and its prompt (None each: it counts)."""
    by = [(name, d) for name, d in (("voter", voter), ("prompt", prompt)) if d is not None]
    return {"excluded": "; ".join(d.reason for _, d in by) or None,
            "excluded_by": ",".join(name for name, _ in by) or None}


def vote_documents(session: Session) -> Iterator[dict[str, Any]]:
    """Every vote, oldest first, as one JSON-ready document; ``excluded`` holds the reason
    an operator excluded it from every board (its voter's votes or its prompt's votes) and
    ``excluded_by`` whose exclusion that is (None both: it counts)."""
    voters, prompts = excluded_voter_ids(session), excluded_prompt_ids(session)
    checkpoints = {
        cid: {"checkpoint": name, "checkpoint_sha256": sha, "step": step, "config": config}
        for cid, name, sha, step, config in session.execute(
            select(Checkpoint.id, Checkpoint.name, Checkpoint.sha256, Checkpoint.step,
                   TrainingConfigRecord.name)
            .join(TrainingConfigRecord, TrainingConfigRecord.id == Checkpoint.config_id)
        )
    }
    last = 0
    while True:
        votes = session.execute(
            select(Vote, Match, Prompt, Voter.external_id)
            .join(Match, Match.id == Vote.match_id)
            .join(Prompt, Prompt.id == Match.prompt_id)
            .join(Voter, Voter.id == Vote.voter_id)
            .where(Vote.id > last)
            .order_by(Vote.id)
            .limit(_BATCH)
        ).all()
        if not votes:
            return
        match_ids = [match.id for _, match, _, _ in votes]
        shown: dict[int, list[dict[str, Any]]] = {}
        for match_id, position, cid, sha, seed in session.execute(
            select(MatchImage.match_id, MatchImage.position, MatchImage.checkpoint_id,
                   Image.sha256, Image.seed)
            .join(Image, Image.id == MatchImage.image_id)
            .where(MatchImage.match_id.in_(match_ids))
            .order_by(MatchImage.match_id, MatchImage.position)
        ):
            shown.setdefault(match_id, []).append(
                {"position": position, "image_sha256": sha, "seed": seed, **checkpoints[cid]}
            )
        for vote, match, prompt, voter in votes:
            yield {
                "schema": SCHEMA,
                "vote_id": vote.id,
                "match_token": match.token,
                "kind": match.kind,
                "prompt": prompt.text,
                "negative_prompt": prompt.negative_prompt,
                "character": prompt.character,
                "prompt_source": prompt.source,
                "images": shown[match.id],
                "outcome": vote.outcome,
                "winner": _winner(vote),
                "winner_position": vote.winner_position,
                "ranking": vote.ranking,
                "voter": voter_pseudonym(voter),
                **_excluded(voters.get(vote.voter_id), prompts.get(match.prompt_id)),
                "time": vote.created_at.isoformat(),
                "tstamp": vote.created_at.timestamp(),
            }
        last = votes[-1][0].id


def _flat(doc: dict[str, Any]) -> dict[str, Any]:
    """One table row per vote: the shown images as ``checkpoint_0``, ``config_0``, ..."""
    row = {k: v for k, v in doc.items() if k not in ("images", "ranking", "schema")}
    row["winner"] = None if doc["winner"] is None else str(doc["winner"])
    row["ranking"] = None if doc["ranking"] is None else " ".join(map(str, doc["ranking"]))
    for i in range(max(MATCH_SIZES.values())):
        image = doc["images"][i] if i < len(doc["images"]) else {}
        for key in ("checkpoint", "checkpoint_sha256", "config", "image_sha256"):
            row[f"{key}_{i}"] = image.get(key)
    return row


def fastchat_battles(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The FastChat battle records of one exported vote (pairwise for a four-way vote)."""
    from metrics.outcomes import VoteRecord, pairwise

    names = [image["checkpoint"] for image in doc["images"]]
    base = {"question_id": doc["match_token"], "judge": doc["voter"], "anony": True,
            "tstamp": doc["tstamp"], "kind": doc["kind"], "prompt": doc["prompt"],
            "vote_id": doc["vote_id"]}
    if doc["outcome"] in ("tie", "both_bad"):
        winner = "tie" if doc["outcome"] == "tie" else "tie (bothbad)"
        return [{"model_a": names[0], "model_b": names[1], "winner": winner, **base}]
    ids = tuple(range(len(names)))
    if doc["outcome"] == "ranking":
        record = VoteRecord(ids, ranking=tuple(doc["ranking"]))
    else:
        record = VoteRecord(ids, winner=doc["winner_position"])
    battles = []
    for a, b, _ in pairwise(record):
        first, second = sorted((a, b))  # model_a is the one shown first
        battles.append({"model_a": names[first], "model_b": names[second],
                        "winner": "model_a" if a == first else "model_b", **base})
    return battles


def export_votes(db: Database, fmt: str, out: Path) -> int:
    """Write every vote to ``out`` in ``fmt``; returns the number of votes written."""
    if fmt not in VOTE_FORMATS:
        raise UserError(f"format: expected one of {', '.join(VOTE_FORMATS)}, got {fmt!r}")
    if out.parent and not out.parent.is_dir():
        raise UserError(f"--out {out}: the folder {out.parent} does not exist")
    count = 0
    with db.session(readonly=True) as session:
        docs = vote_documents(session)
        if fmt == "jsonl":
            with out.open("w", encoding="utf-8") as handle:
                for doc in docs:
                    handle.write(json.dumps(doc, ensure_ascii=False) + "\n")
                    count += 1
            return count
        if fmt == "fastchat":
            battles = []
            for doc in docs:
                battles += fastchat_battles(doc)
                count += 1
            out.write_text(json.dumps(battles, ensure_ascii=False, indent=1), encoding="utf-8")
            return count
        import pandas as pd

        frame = pd.DataFrame([_flat(doc) for doc in docs])
        count = len(frame)
        if fmt == "csv":
            from arena.csv_cells import inert_frame

            inert_frame(frame).to_csv(out, index=False)
        else:
            frame.to_parquet(out, index=False)
    return count


@dataclass(frozen=True)
class ImportReport:
    """What an import did."""

    imported: int
    duplicates: int

    def as_dict(self) -> dict[str, int]:
        """JSON-ready form."""
        return {"imported": self.imported, "duplicates": self.duplicates}


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    docs = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
            if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
                raise UserError(f"{path}:{number}: expected a vote of `arena export votes "
                                f"--format jsonl` (schema {SCHEMA})")
            docs.append(doc)
    return docs


class _Resolver:
    """Looks up (or records) what an imported vote refers to, in the import's session."""

    def __init__(self, session: Session, where: str) -> None:
        self.session = session
        self.where = where
        self.checkpoints: dict[str, tuple[int, str]] = {}
        self.prompts: dict[tuple[str, str], Prompt] = {}
        self.images: dict[str, int] = {}

    def checkpoint(self, image: dict[str, Any]) -> int:
        name, sha = image.get("checkpoint"), image.get("checkpoint_sha256")
        if name not in self.checkpoints:
            row = self.session.scalar(select(Checkpoint).where(Checkpoint.name == name))
            if row is None:
                raise UserError(f"{self.where}: checkpoint {name!r} is not registered here; "
                                "register it first (`arena registry add-checkpoint`)")
            self.checkpoints[name] = (row.id, row.sha256)
        cid, known = self.checkpoints[name]
        if known != sha:
            raise UserError(f"{self.where}: checkpoint {name!r} has sha256 {known[:12]} here "
                            f"but {str(sha)[:12]} in the export")
        return cid

    def prompt(self, doc: dict[str, Any]) -> Prompt:
        from arena.matches import prompt_hash

        key = (prompt_hash(doc["prompt"]), doc["kind"])
        if key not in self.prompts:
            row = self.session.scalar(
                select(Prompt).where(Prompt.text_hash == key[0], Prompt.kind == key[1]))
            if row is None:
                row = Prompt(text=doc["prompt"], text_hash=key[0], kind=doc["kind"],
                             negative_prompt=doc.get("negative_prompt") or "",
                             character=doc.get("character"),
                             source=doc.get("prompt_source") or "import")
                self.session.add(row)
                self.session.flush()
            self.prompts[key] = row
        return self.prompts[key]

    def image(self, image: dict[str, Any], checkpoint_id: int, prompt: Prompt) -> int:
        sha = image["image_sha256"]
        if sha not in self.images:
            row = self.session.scalar(select(Image).where(Image.sha256 == sha))
            if row is None:  # known by hash only: recorded hidden, never served
                row = placeholder_image(sha, checkpoint_id, prompt.id, image.get("seed"))
                self.session.add(row)
                self.session.flush()
            self.images[sha] = row.id
        return self.images[sha]


def _time(doc: dict[str, Any], where: str, now: datetime) -> datetime:
    """The vote's time; a time after ``now`` is refused (a vote from the future would hold the
    time-weighted Elo of its checkpoints at its date)."""
    try:
        value = datetime.fromisoformat(doc["time"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{where}: 'time' must be an ISO time, got {doc.get('time')!r}") from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if value > now:
        raise UserError(f"{where}: 'time' {doc['time']!r} is in the future (now "
                        f"{now.isoformat(timespec='seconds')}); nothing was imported")
    return value


def import_votes(db: Database, path: Path, settings: Settings,
                 progress: bool = True) -> ImportReport:
    """Import a jsonl vote export (see the module docstring); all or nothing."""
    from tqdm import tqdm

    from arena.ratings import apply_vote_online, vote_record

    docs = _read(path)
    now = utcnow()
    imported = duplicates = 0
    with db.session(serialized=True) as session:
        excluded = exclusions(session)
        resolve = _Resolver(session, str(path))
        wanted = [str(d.get("match_token")) for d in docs]
        tokens: set[str] = set()
        for start in range(0, len(wanted), 500):
            tokens.update(session.scalars(
                select(Match.token).where(Match.token.in_(wanted[start : start + 500]))))
        voters: dict[str, int] = {}
        for number, doc in enumerate(tqdm(docs, desc="importing votes", unit="vote",
                                          disable=None if progress else True), start=1):
            where = f"{path} vote {number}"
            if doc.get("match_token") in tokens:
                duplicates += 1
                continue
            if doc.get("kind") not in MATCH_SIZES or len(doc.get("images") or ()) != MATCH_SIZES[
                    doc.get("kind", "")]:
                raise UserError(f"{where}: expected a match kind and its images, got "
                                f"{doc.get('kind')!r} with {len(doc.get('images') or ())}")
            if doc.get("outcome") not in VOTE_OUTCOMES:
                raise UserError(f"{where}: outcome must be one of {', '.join(VOTE_OUTCOMES)}, "
                                f"got {doc.get('outcome')!r}")
            prompt = resolve.prompt(doc)
            pseudonym = f"import:{doc.get('voter') or 'unknown'}"
            if pseudonym not in voters:
                voter = session.scalar(select(Voter).where(Voter.external_id == pseudonym))
                if voter is None:
                    voter = Voter(external_id=pseudonym)
                    session.add(voter)
                    session.flush()
                voters[pseudonym] = voter.id
            created = _time(doc, where, now)
            match = Match(token=doc["match_token"], kind=doc["kind"], prompt_id=prompt.id,
                          voter_id=voters[pseudonym], issued_at=created, expires_at=created)
            match.prompt = prompt
            for image in sorted(doc["images"], key=lambda i: i["position"]):
                cid = resolve.checkpoint(image)
                match.images.append(MatchImage(position=image["position"], checkpoint_id=cid,
                                               image_id=resolve.image(image, cid, prompt)))
            session.add(match)
            session.flush()
            vote = Vote(match_id=match.id, voter_id=match.voter_id, outcome=doc["outcome"],
                        winner_position=doc.get("winner_position"), ranking=doc.get("ranking"),
                        created_at=created)
            vote.match = match
            session.add(vote)
            session.flush()
            try:
                record = vote_record(vote, [mi.checkpoint_id for mi in match.images])
                if excluded.counts(match.voter_id, prompt.id):  # as a replay reads the log
                    apply_vote_online(session, vote.id, record, match.kind, prompt.character,
                                      settings)
            except InputError as exc:  # said with the line it came from
                raise UserError(f"{where}: {exc}") from None
            tokens.add(doc["match_token"])
            imported += 1
    return ImportReport(imported, duplicates)
