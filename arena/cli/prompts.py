"""`arena prompts`: the prompts voters typed, and an operator's decisions about a prompt.

``hide`` / ``unhide``: a hidden prompt is no longer issued in matches and not rendered again;
its votes stay in the log and keep counting unless the operator also excludes them.
``exclude`` / ``include``: a prompt's votes (typed or from a bank, hidden or not) are left out
of every board, or count again; they stay in the log, the log is replayed so every board and
stored aggregate follows, and a later vote on the prompt is stored and moves nothing. Each
decision is recorded with its reason and time in the operator decision log
(:mod:`arena.decisions`), and the newest one per prompt and pair of actions is in force.
"""

from __future__ import annotations

from typing import Any

import typer

from arena.cli.common import new_app, open_database, print_exclusion, print_json

app = new_app("Prompts voters typed: list them, hide or unhide one, exclude or include its "
              "votes (decisions are logged).")


def prompt_rows(
    session: Any, hidden_only: bool = False, limit: int = 100, excluded_only: bool = False,
    every_source: bool = False,
) -> list[dict[str, Any]]:
    """Typed prompts (every prompt with ``every_source``: bank and imported ones too), newest
    first: requests, images shown, votes, and the hide and the exclusion of its votes in
    force."""
    from sqlalchemy import func, select

    from arena.decisions import excluded_prompt_ids, hidden_prompt_ids
    from arena.models import GenerationRequest, Image, Match, Prompt, Vote

    hidden, excluded = hidden_prompt_ids(session), excluded_prompt_ids(session)
    requests = (select(func.count(GenerationRequest.id))
                .where(GenerationRequest.prompt_id == Prompt.id).scalar_subquery())
    images = (select(func.count(Image.id))
              .where(Image.prompt_id == Prompt.id, Image.hidden.is_(False)).scalar_subquery())
    votes = (select(func.count(Vote.id)).join(Match, Match.id == Vote.match_id)
             .where(Match.prompt_id == Prompt.id).scalar_subquery())
    query = (select(Prompt.id, Prompt.text, Prompt.source, Prompt.created_at, requests, images,
                    votes).order_by(Prompt.id.desc()))
    if not every_source:
        query = query.where(Prompt.source == "voter")
    if hidden_only:
        query = query.where(Prompt.id.in_(list(hidden) or [-1]))
    if excluded_only:
        query = query.where(Prompt.id.in_(list(excluded) or [-1]))
    out = []
    for pid, text, source, created, n_requests, n_images, n_votes in session.execute(
            query.limit(limit)):
        decision, exclusion = hidden.get(pid), excluded.get(pid)
        out.append({
            "id": pid, "text": text, "source": source, "created_at": created.isoformat(),
            "requests": n_requests, "images": n_images, "votes": n_votes,
            "hidden": decision is not None,
            "hidden_reason": decision.reason if decision else None,
            "votes_excluded": exclusion is not None,
            "excluded_reason": exclusion.reason if exclusion else None,
        })
    return out


@app.command("list")
def list_command(
    hidden: bool = typer.Option(False, "--hidden", help="Only the hidden ones."),
    excluded: bool = typer.Option(False, "--excluded", help="Only those whose votes are "
                                  "excluded."),
    every: bool = typer.Option(False, "--all", help="Every prompt, not only typed ones."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Typed prompts (every prompt with --all), newest first, with requests, images, votes,
    whether hidden and whether their votes are excluded."""
    with open_database().session(readonly=True) as session:
        rows = prompt_rows(session, hidden, limit, excluded, every)
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no prompts" if every else "no typed prompts")
    for row in rows:
        state = f"hidden ({row['hidden_reason']})" if row["hidden"] else "shown"
        counted = (f"votes excluded ({row['excluded_reason']})" if row["votes_excluded"]
                   else "votes count")
        text = " ".join(row["text"].split())[:80]
        typer.echo(f"{row['id']:>6}  {state:<10}  {counted:<11}  {row['requests']:>3} requests  "
                   f"{row['images']:>4} images  {row['votes']:>5} votes  {text!r}")


def _decide(prompt_id: int, action: str, reason: str) -> None:
    from arena.decisions import record_decision
    from arena.errors import UserError
    from arena.matchmaking import invalidate
    from arena.models import Prompt

    db = open_database()
    with db.session() as session:
        prompt = session.get(Prompt, prompt_id)
        if prompt is None:
            raise UserError(f"no prompt with id {prompt_id}; see `arena prompts list`")
        decision = record_decision(session, "prompt", prompt_id, action, reason)
    invalidate(db.url)
    done = ("hidden: no new match shows it; its votes stay in the log and still count (unless "
            "excluded: `arena prompts exclude`)"
            if action == "hide" else "shown again in new matches")
    typer.echo(f"prompt {prompt_id} {done} (decision {decision.id})")


@app.command("hide")
def hide(
    prompt_id: int = typer.Argument(..., help="Prompt id (see `arena prompts list`)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the decision log)."),
) -> None:
    """Stop issuing matches of a prompt; its votes stay in the log and keep counting (see
    `exclude`)."""
    _decide(prompt_id, "hide", reason)


@app.command("unhide")
def unhide(
    prompt_id: int = typer.Argument(..., help="Prompt id (see `arena prompts list`)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the decision log)."),
) -> None:
    """Issue matches of a hidden prompt again."""
    _decide(prompt_id, "unhide", reason)


def _count(prompt_id: int, action: str, reason: str, as_json: bool) -> None:
    from arena.leaderboard.fits import change_and_recompute

    decision, replayed = change_and_recompute(open_database(), "prompt", prompt_id, action,
                                              reason)
    print_exclusion("prompt", decision, replayed, as_json)


@app.command("exclude")
def exclude(
    prompt_id: int = typer.Argument(..., help="Prompt id (see `arena prompts list`)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the decision log)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Leave a prompt's votes out of every board (they stay in the log); replays the log.
    Matches of it are still issued unless it is also hidden."""
    _count(prompt_id, "exclude", reason, as_json)


@app.command("include")
def include(
    prompt_id: int = typer.Argument(..., help="Prompt id (see `arena prompts list`)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the decision log)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Count a prompt's excluded votes again on every board; replays the log."""
    _count(prompt_id, "include", reason, as_json)
