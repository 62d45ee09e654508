"""Typed prompts on both databases: the safe-mode policy (rating tags, the blocklist), each
submitter's share of the rendering queue, and `arena prompts list|hide|unhide|exclude|include`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.errors import UserError
from arena.leaderboard.rows import leaderboard
from arena.matches import issue_match
from arena.models import Job, Match, OperatorDecision, Prompt, Vote
from arena.settings import Settings
from arena.votes import record_vote
from tests.support.api_client import make_client, new_voter
from tests.support.pool import FREE_PROMPTS, PoolFixture, build_pool

runner = CliRunner()


@pytest.fixture
def pool(arena_env: Database, arena_home: Path, tmp_path: Path) -> PoolFixture:
    return build_pool(arena_env, arena_home, tmp_path / "pool-src")


@pytest.mark.parametrize("prompt", [
    "general, nsfw, 1girl", "1girl, general, (explicit:1.2)", "1girl, rating:questionable",
    "1girl, Rating_Sensitive, smile", "1girl, R-18", "general, 1girl, nude_female, beach",
    "1girl, [topless], sunset",
])
def test_safe_mode_refuses_other_ratings_and_blocked_tags(
    arena_env: Database, arena_home: Path, pool: PoolFixture, prompt: str
) -> None:
    client = make_client(arena_env, arena_home)
    response = client.post("/api/v1/matches", json={"mode": "free", "prompt": prompt},
                           headers=new_voter(client))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "\n" not in error and ("rating" in error or "blocklist" in error)
    with arena_env.session() as s:
        assert s.scalar(select(func.count(Job.id))) == 0
        assert s.scalar(select(func.count(Prompt.id)).where(Prompt.source == "voter")) == 0


def test_the_operator_replaces_the_blocklist(
    arena_env: Database, arena_home: Path, pool: PoolFixture, tmp_path: Path
) -> None:
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("# ours\nsailor collar\n")
    settings = Settings(home=arena_home, database_url=arena_env.url, prompt_blocklist=blocklist)
    with pytest.raises(UserError, match=r"'Sailor_Collar'.*blocklist"):
        issue_match(arena_env, settings, "voter-policy-0001", "free", "1girl, Sailor_Collar")
    served = issue_match(arena_env, settings, "voter-policy-0001", "free", "1girl, nude")
    assert served.notice is not None  # the default list is replaced, not added to


def test_no_submitter_holds_more_than_its_share_of_the_rendering_queue(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    """Four checkpoints: one typed prompt queues four jobs. With 8 jobs in all and a share of
    one half, a voter (or an address) may hold one prompt's jobs, not two."""
    settings = Settings(home=arena_home, database_url=arena_env.url, free_prompt_jobs_total=8,
                        free_prompt_share=0.5, free_prompt_jobs_per_voter=10)

    def typed(voter: str, text: str, address: str) -> str | None:
        return issue_match(arena_env, settings, voter, "free", text, address=address).notice

    assert "queued for generation" in (typed("voter-share-0001", "1girl, one", "192.0.2.1") or "")
    second = typed("voter-share-0001", "1girl, two", "192.0.2.2") or ""
    assert "your voter already has 4 typed-prompt jobs waiting (at most 4" in second
    same_address = typed("voter-share-0002", "1girl, three", "192.0.2.1") or ""
    assert "your address already has 4" in same_address
    other = typed("voter-share-0003", "1girl, four", "198.51.100.3") or ""
    assert "queued for generation" in other
    with arena_env.session() as s:
        assert s.scalar(select(func.count(Job.id))) == 8


def _cli(*args: str):  # type: ignore[no-untyped-def]
    result = runner.invoke(app, list(args))
    return result


def test_an_operator_hides_and_unhides_a_prompt(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    settings = Settings(home=arena_home, database_url=arena_env.url)
    issue_match(arena_env, settings, "voter-hide-0001", "free", "1girl, a typed prompt")
    with arena_env.session() as s:
        bank = s.scalar(select(Prompt.id).where(Prompt.text == FREE_PROMPTS[0]))
        typed = s.scalar(select(Prompt.id).where(Prompt.source == "voter"))
    listed = _cli("prompts", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["requests"], row["hidden"]) == (typed, 1, False)
    assert "a typed prompt" in row["text"]

    hidden = _cli("prompts", "hide", str(bank), "--reason", "reported by voters")
    assert hidden.exit_code == 0, hidden.output
    assert "its votes stay in the log and still count" in hidden.stdout
    shown = {issue_match(arena_env, settings, f"voter-hide-{n:04d}", "free").prompt
             for n in range(2, 30)}
    assert shown == {FREE_PROMPTS[1]}
    asked = issue_match(arena_env, settings, "voter-hide-0100", "free", FREE_PROMPTS[0])
    assert asked.prompt == FREE_PROMPTS[1] and "withdrawn" in (asked.notice or "")

    again = _cli("prompts", "unhide", str(bank), "--reason", "checked, fine")
    assert again.exit_code == 0, again.output
    assert issue_match(arena_env, settings, "voter-hide-0101", "free",
                       FREE_PROMPTS[0]).prompt == FREE_PROMPTS[0]
    with arena_env.session() as s:
        actions = s.scalars(select(OperatorDecision.action).order_by(OperatorDecision.id)).all()
    assert actions == ["hide", "unhide"]
    missing = _cli("prompts", "hide", "999999", "--reason", "x")
    assert missing.exit_code == 2 and missing.stderr.startswith("error: no prompt with id")
    no_reason = _cli("prompts", "hide", str(bank), "--reason", "  ")
    assert no_reason.exit_code == 2 and "reason" in no_reason.stderr


def test_an_operator_excludes_and_includes_a_prompts_votes(
    arena_env: Database, arena_home: Path, pool: PoolFixture
) -> None:
    settings = Settings(home=arena_home, database_url=arena_env.url, votes_per_minute=0,
                        bootstrap_rounds=20)
    issue_match(arena_env, settings, "voter-count-0100", "free", "1girl, a typed prompt")
    for n in range(12):
        served = issue_match(arena_env, settings, f"voter-count-{n:04d}", "free")
        record_vote(arena_env, settings, served.token, f"voter-count-{n:04d}", winner=0)
    with arena_env.session() as s:
        bank = s.scalar(select(Prompt.id).where(Prompt.text == FREE_PROMPTS[0]))
        on_bank = s.scalar(select(func.count(Vote.id)).join(Match, Match.id == Vote.match_id)
                           .where(Match.prompt_id == bank))
    assert 0 < on_bank < 12

    def counted() -> dict[str, int]:
        with arena_env.session(readonly=True) as s:
            return {system: sum(r["wins"] for r in leaderboard(s, "free", system, settings))
                    for system in ("elo", "trueskill", "bt")}

    assert counted() == dict.fromkeys(("elo", "trueskill", "bt"), 12)
    excluded = _cli("prompts", "exclude", str(bank), "--reason", "a leaked checkpoint style")
    assert excluded.exit_code == 0, excluded.output
    assert excluded.stdout.startswith(f"prompt {bank}: its votes no longer count on every board")
    assert f"replayed {12 - on_bank} votes" in excluded.stdout
    assert counted() == dict.fromkeys(("elo", "trueskill", "bt"), 12 - on_bank)
    listed = json.loads(_cli("prompts", "list", "--all", "--json").stdout)
    states = {row["id"]: (row["votes_excluded"], row["excluded_reason"], row["hidden"])
              for row in listed}
    assert states[bank] == (True, "a leaked checkpoint style", False)
    assert {row["source"] for row in listed} == {"voter", "import"}  # typed and pool prompts
    only = json.loads(_cli("prompts", "list", "--excluded", "--all", "--json").stdout)
    assert [row["id"] for row in only] == [bank]
    assert json.loads(_cli("prompts", "list", "--excluded", "--json").stdout) == []  # typed only
    text = _cli("prompts", "list", "--all")
    assert text.exit_code == 0 and "votes excluded (a leaked checkpoint style)" in text.stdout

    again = _cli("prompts", "exclude", str(bank), "--reason", "twice")
    assert again.exit_code == 2 and "already excluded" in again.stderr
    for bad in (("exclude", "999999", "--reason", "x"), ("include", str(bank), "--reason", " "),
                ("include", "999999", "--reason", "x")):
        refused = _cli("prompts", *bad)
        assert refused.exit_code == 2 and refused.stderr.count("\n") == 1, bad
        assert refused.stderr.startswith("error: "), bad
    assert "no prompt with id 999999" in _cli("prompts", "exclude", "999999", "--reason",
                                               "x").stderr

    included = _cli("prompts", "include", str(bank), "--reason", "checked, fine", "--json")
    assert included.exit_code == 0, included.output
    answer = json.loads(included.stdout)
    assert answer["decision"]["action"] == "include" and answer["votes_replayed"] == 12
    assert counted() == dict.fromkeys(("elo", "trueskill", "bt"), 12)
    with arena_env.session() as s:
        actions = s.scalars(select(OperatorDecision.action).order_by(OperatorDecision.id)).all()
    assert actions == ["exclude", "include"]
