"""The generate job adds a (checkpoint, prompt) to the pool whole: images a crashed attempt
left hidden are never served, and the retry renders only what is missing, then reveals all."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from sqlalchemy import func, select

from arena.db import Database
from arena.errors import UserError
from arena.jobs.plan import CheckpointRequest, queue_checkpoint
from arena.jobs.worker import WorkerStats, run_one, run_worker
from arena.matches import issue_match
from arena.models import Checkpoint, Image, Job
from arena.registry import add_config
from tests.support.jobs import CONFIG, TinyWorld, build_world, worker_settings
from training.config import parse_config


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    return build_world(tmp_path_factory.mktemp("tiny-world"))


def _visible(db: Database, name: str) -> int:
    with db.session(readonly=True) as session:
        return int(session.scalar(
            select(func.count(Image.id)).join(Checkpoint).where(
                Checkpoint.name == name, Image.hidden.is_(False))
        ) or 0)


def test_half_rendered_checkpoint_is_never_served(world: TinyWorld, db: Database,
                                                   tmp_path: Path) -> None:
    import torch

    from arena.pool import import_records
    from generation.pipeline import CheckpointSpec, Runtime, load_pipeline
    from generation.pool import generate_pool
    from generation.prompt_sets import load_prompt_set

    torch.set_num_threads(1)
    home = tmp_path / "home"
    settings = worker_settings(world, home, db)
    with db.session() as session:
        add_config(session, parse_config(CONFIG, source="test"))
        for path in (world.first, world.second):
            queue_checkpoint(session, settings, CheckpointRequest(str(path), config="tiny-run"))
    run_worker(db, settings, once=True, kinds=["hash"], echo=lambda _: None)
    stats = WorkerStats()
    assert run_one(db, settings, "w", ["generate"], "cpu", lambda _: None, stats)
    assert _visible(db, "tiny-1") == 4 and _visible(db, "tiny-2") == 0
    # What a crashed attempt for tiny-2 leaves: seed 0 rendered and imported, still hidden.
    with db.session(readonly=True) as session:
        sha = session.scalar(select(Checkpoint.sha256).where(Checkpoint.name == "tiny-2"))
    spec = CheckpointSpec(world.second, name="tiny-2", config_dir=world.config_dir, sha256=sha)
    half = replace(load_prompt_set(world.prompt_set), seeds=(0,))
    report = generate_pool(load_pipeline(spec, Runtime(device="cpu")), half, home,
                           progress=False)
    imported = import_records(db, report.rows, settings, base=home, progress=False, hidden=True)
    assert len(imported.imported) == 2 and _visible(db, "tiny-2") == 0
    with pytest.raises(UserError):  # only one checkpoint is servable: no fixed duel yet
        issue_match(db, settings, "voter-half-0001", "fixed")
    assert run_one(db, settings, "w", ["generate"], "cpu", lambda _: None, stats)
    with db.session(readonly=True) as session:
        job = session.scalar(select(Job).where(Job.kind == "generate", Job.checkpoint_name
                                               == "tiny-2"))
        assert job is not None and job.status == "done"
        assert job.result["rendered"] == 2 and job.result["revealed"] == 4  # type: ignore[index]
        assert (job.progress_done, job.progress_total, job.progress_unit) == (4, 4, "images")
    assert _visible(db, "tiny-2") == 4
    match = issue_match(db, settings, "voter-half-0001", "fixed")
    assert len(match.images) == 2


def _register_and_render(world: TinyWorld, db: Database, settings) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        add_config(session, parse_config(CONFIG, source="test"))
        for path in (world.first, world.second):
            queue_checkpoint(session, settings, CheckpointRequest(str(path), config="tiny-run"))
    run_worker(db, settings, once=True, kinds=["hash", "generate"], echo=lambda _: None)


def test_typed_prompt_is_served_only_once_every_queued_checkpoint_has_it(
    world: TinyWorld, db: Database, tmp_path: Path
) -> None:
    """The first checkpoint to finish a typed prompt's images must not be visible before the
    others (which one finishes first follows claim order, not chance)."""
    import torch

    from arena.matches import prompt_hash
    from arena.models import Prompt

    torch.set_num_threads(1)
    settings = worker_settings(world, tmp_path / "home", db)
    _register_and_render(world, db, settings)
    typed = "1boy, a typed prompt, general"
    first = issue_match(db, settings, "voter-typed-0001", "free", typed)
    assert first.notice is not None and "queued" in first.notice

    def visible() -> int:
        with db.session(readonly=True) as session:
            return int(session.scalar(
                select(func.count(Image.id)).join(Prompt).where(
                    Prompt.text_hash == prompt_hash(typed), Image.hidden.is_(False))) or 0)

    stats = WorkerStats()
    assert run_one(db, settings, "w", ["generate"], "cpu", lambda _: None, stats)
    assert stats.done and visible() == 0  # one checkpoint's images wait for the other's
    assert run_one(db, settings, "w", ["generate"], "cpu", lambda _: None, stats)
    assert len(stats.done) == 2 and visible() == 4
    served = issue_match(db, settings, "voter-typed-0002", "free", typed)
    assert served.notice is None and served.prompt == typed


def test_a_checkpoint_file_replaced_after_hashing_is_not_rendered(
    world: TinyWorld, db: Database, tmp_path: Path
) -> None:
    import shutil

    settings = worker_settings(world, tmp_path / "home", db)
    copy = tmp_path / "replaced.safetensors"
    shutil.copyfile(world.first, copy)
    with db.session() as session:
        add_config(session, parse_config(CONFIG, source="test"))
        queue_checkpoint(session, settings, CheckpointRequest(str(copy), config="tiny-run"))
    run_worker(db, settings, once=True, kinds=["hash"], echo=lambda _: None)
    shutil.copyfile(world.second, copy)  # another checkpoint under the registered path
    lines: list[str] = []
    stats = run_worker(db, settings, once=True, kinds=["generate"], echo=lines.append)
    assert len(stats.failed) == 1, lines
    with db.session(readonly=True) as session:
        job = session.scalar(select(Job).where(Job.kind == "generate"))
        assert job is not None and job.status == "failed" and job.attempts == 1
        assert "changed after it was registered" in (job.error or "")
        assert session.scalar(select(func.count(Image.id))) == 0
