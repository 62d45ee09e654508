"""`arena prompts`: the prompts voters typed, and an operator's hide / unhide decisions.

A hidden prompt is no longer issued in matches and not rendered again; its votes stay in the
log and keep counting. Each decision is recorded with its reason and time in the operator
decision log (:mod:`arena.decisions`), and the newest one per prompt is in force.
"""

from __future__ import annotations

from typing import Any

import typer

from arena.cli.common import new_app, open_database, print_json

app = new_app("Prompts voters typed: list them, hide or unhide one (decisions are logged).")


def typed_prompts(
    session: Any, hidden_only: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    """Typed prompts, newest first: requests, images shown, votes, and the hide in force."""
    from sqlalchemy import func, select

    from arena.decisions import hidden_prompt_ids
    from arena.models import GenerationRequest, Image, Match, Prompt, Vote

    hidden = hidden_prompt_ids(session)
    requests = (select(func.count(GenerationRequest.id))
                .where(GenerationRequest.prompt_id == Prompt.id).scalar_subquery())
    images = (select(func.count(Image.id))
              .where(Image.prompt_id == Prompt.id, Image.hidden.is_(False)).scalar_subquery())
    votes = (select(func.count(Vote.id)).join(Match, Match.id == Vote.match_id)
             .where(Match.prompt_id == Prompt.id).scalar_subquery())
    query = (select(Prompt.id, Prompt.text, Prompt.created_at, requests, images, votes)
             .where(Prompt.source == "voter").order_by(Prompt.id.desc()))
    if hidden_only:
        query = query.where(Prompt.id.in_(list(hidden) or [-1]))
    out = []
    for pid, text, created, n_requests, n_images, n_votes in session.execute(query.limit(limit)):
        decision = hidden.get(pid)
        out.append({
            "id": pid, "text": text, "created_at": created.isoformat(),
            "requests": n_requests, "images": n_images, "votes": n_votes,
            "hidden": decision is not None,
            "hidden_reason": decision.reason if decision else None,
        })
    return out


@app.command("list")
def list_command(
    hidden: bool = typer.Option(False, "--hidden", help="Only the hidden ones."),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Typed prompts, newest first, with requests, images, votes and whether hidden."""
    with open_database().session(readonly=True) as session:
        rows = typed_prompts(session, hidden, limit)
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no typed prompts")
    for row in rows:
        state = f"hidden ({row['hidden_reason']})" if row["hidden"] else "shown"
        text = " ".join(row["text"].split())[:80]
        typer.echo(f"{row['id']:>6}  {state:<10}  {row['requests']:>3} requests  "
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
    done = ("hidden: no new match shows it; its votes stay in the log and still count"
            if action == "hide" else "shown again in new matches")
    typer.echo(f"prompt {prompt_id} {done} (decision {decision.id})")


@app.command("hide")
def hide(
    prompt_id: int = typer.Argument(..., help="Prompt id (see `arena prompts list`)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the decision log)."),
) -> None:
    """Stop issuing matches of a prompt; its votes stay in the log and keep counting."""
    _decide(prompt_id, "hide", reason)


@app.command("unhide")
def unhide(
    prompt_id: int = typer.Argument(..., help="Prompt id (see `arena prompts list`)."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the decision log)."),
) -> None:
    """Issue matches of a hidden prompt again."""
    _decide(prompt_id, "unhide", reason)
