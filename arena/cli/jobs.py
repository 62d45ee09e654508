"""`arena jobs`: list, show, retry and cancel queued work."""

from __future__ import annotations

import typer

from arena.cli.common import new_app, open_database, print_json
from arena.models import JOB_STATES

app = new_app("Queued work taken by `arena worker`: list, show, retry, cancel.")


def _line(job) -> str:  # type: ignore[no-untyped-def]
    done, total = job.progress_done, job.progress_total
    progress = f"{done}/{total} {job.progress_unit or ''}".strip() if total else ""
    parts = [
        f"{job.id:>6}", f"{job.kind:<9}", f"{job.status:<9}", f"{job.checkpoint_name or '-':<24}",
        f"try {job.attempts}/{job.max_attempts}", progress,
    ]
    if job.error:
        parts.append(job.error.splitlines()[0][:100])
    return "  ".join(parts).rstrip()


@app.command("list")
def list_command(
    status: str | None = typer.Option(None, "--status", help=f"One of {', '.join(JOB_STATES)}."),
    checkpoint: str | None = typer.Option(None, "--checkpoint", help="Only this checkpoint."),
    limit: int = typer.Option(50, "--limit", min=1, help="At most this many, newest first."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Jobs, newest first."""
    from arena.errors import UserError
    from arena.jobs.queue import describe_job, list_jobs

    if status is not None and status not in JOB_STATES:
        raise UserError(f"--status: expected one of {', '.join(JOB_STATES)}, got {status!r}")
    with open_database().session(readonly=True) as session:
        jobs = list_jobs(session, status, checkpoint, limit)
        if as_json:
            print_json([describe_job(j) for j in jobs])
            return
        if not jobs:
            typer.echo("no jobs")
        for job in jobs:
            typer.echo(_line(job))


@app.command("show")
def show(job_id: int = typer.Argument(..., help="Job id.")) -> None:
    """One job in full (JSON)."""
    from arena.jobs.queue import describe_job, get_job

    with open_database().session(readonly=True) as session:
        print_json(describe_job(get_job(session, job_id)))


@app.command("retry")
def retry(job_id: int = typer.Argument(..., help="Job id.")) -> None:
    """Queue a failed or cancelled job again, with fresh tries (and the jobs waiting on it)."""
    from arena.jobs.queue import retry as retry_job

    with open_database().session() as session:
        job = retry_job(session, job_id)
        typer.echo(f"job {job.id} queued again")


@app.command("cancel")
def cancel(job_id: int = typer.Argument(..., help="Job id.")) -> None:
    """Cancel a queued or running job (and the jobs waiting on it)."""
    from arena.jobs.queue import cancel as cancel_job

    with open_database().session() as session:
        job = cancel_job(session, job_id)
        typer.echo(f"job {job.id} cancelled")


@app.command("queue")
def queue_work(
    checkpoint: str = typer.Argument(..., help="Registered checkpoint name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Queue rendering on the configured prompt sets, then scoring, for a registered
    checkpoint (e.g. one added with `arena registry add-checkpoint`)."""
    from arena.jobs.plan import queue_checkpoint_work
    from arena.jobs.queue import describe_job
    from arena.registry import get_checkpoint
    from arena.settings import get_settings

    with open_database().session() as session:
        name = get_checkpoint(session, checkpoint).name
        jobs = queue_checkpoint_work(session, get_settings(), name)
        if as_json:
            print_json([describe_job(j) for j in jobs])
            return
        for job in jobs:
            typer.echo(_line(job))
