"""The ``score`` job through the worker, and its agreement with `arena score ccip`.

Runs on both databases (fixture ``db``) with a real pool of small PNGs (:mod:`tests.support.pool`)
and a CCIP-shaped ONNX stand-in loaded through the same code path as the published files. Both
surfaces score through :mod:`arena.scores`, so they must find the same references, write the
same model version and recognise each other's stored scores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from arena.cli.main import app
from arena.db import Database
from arena.jobs import queue
from arena.jobs.worker import run_worker
from arena.models import Job, MetricScore
from arena.scores import ccip_files_version, ccip_version, pool_images, references_for
from arena.settings import Settings
from metrics.ccip_model import load_ccip_model
from tests.support.ccip_stand_in import cached_ccip_stand_in
from tests.support.pool import CHARACTERS, build_pool

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_ccip_stand_in(tmp_path_factory.getbasetemp(), threshold=0.15)


def _score_job(db: Database, settings: Settings, checkpoint: str) -> Job:
    with db.session() as session:
        job, _ = queue.enqueue(session, "score", {"checkpoint": checkpoint}, max_attempts=3)
        job_id = job.id
    run_worker(db, settings, once=True, device="cpu", echo=lambda _line: None)
    with db.session(readonly=True) as session:
        done = session.get(Job, job_id)
        assert done is not None
        session.expunge(done)
        return done


def _scores(db: Database) -> list[MetricScore]:
    with db.session(readonly=True) as session:
        rows = session.scalars(select(MetricScore).order_by(MetricScore.id)).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def test_score_job_and_cli_share_references_version_and_stored_scores(
    arena_env: Database, arena_home: Path, model_dir: Path, tmp_path: Path
) -> None:
    db = arena_env
    pool = build_pool(db, arena_home, tmp_path / "pool")
    name = pool.checkpoints[0].name
    refs = tmp_path / "refs"
    with db.session(readonly=True) as session:
        groups = pool_images(session, arena_home, name)
    # CHARACTERS[0] has a subfolder of its own images; CHARACTERS[1]'s images lie directly in
    # the folder, which counts only for a character the caller names (the job names none).
    (refs / CHARACTERS[0]).mkdir(parents=True)
    for image in groups[CHARACTERS[0]]:
        shutil.copyfile(image.path, refs / CHARACTERS[0] / f"{image.sha256[:8]}.png")
    for image in groups[CHARACTERS[1]]:
        shutil.copyfile(image.path, refs / f"{image.sha256[:8]}.png")
    assert references_for(refs, CHARACTERS[1]).files == []
    assert len(references_for(refs, CHARACTERS[1], named=CHARACTERS[1]).files) == 2
    settings = Settings(home=arena_home, database_url=db.url, ccip_model_dir=model_dir,
                        ccip_references=refs)

    first = _score_job(db, settings, name)
    assert first.status == "done", first.error
    ccip = [s for s in first.result["scores"] if s["metric"] == "ccip"]
    assert [(s["character"], s["value"]) for s in ccip] == [(CHARACTERS[0], 1.0)]
    clip = next(s for s in first.result["scores"] if s["metric"] == "clip_score")
    assert "ARENA_CLIP_MODEL" in clip["skipped"]
    (stored,) = _scores(db)
    model = load_ccip_model(model_dir, device="cpu")
    assert stored.metric_version == ccip_files_version(model_dir) == ccip_version(
        model.feat_sha256, model.metrics_sha256
    )
    assert stored.parameters["references"] == str(refs / CHARACTERS[0])
    assert sorted(stored.images_used) == sorted(i.sha256 for i in groups[CHARACTERS[0]])

    again = _score_job(db, settings, name)
    assert again.status == "done"
    assert [s for s in again.result["scores"] if s["metric"] == "ccip"] == [
        {"metric": "ccip", "character": CHARACTERS[0], "score_id": stored.id, "already": True}
    ]
    assert len(_scores(db)) == 1

    # The CLI finds the same references for the same character and the same version: the
    # same score, which is stored once (scores are unique in the schema).
    result = runner.invoke(app, ["score", "ccip", "--references", str(refs), "--checkpoint",
                                 name, "--character", CHARACTERS[0], "--model-dir",
                                 str(model_dir), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["scores"]
    assert row["ccip"] == 1.0 and row["references"] == 2
    (cli_row,) = _scores(db)
    assert cli_row.id == row["score_id"] == stored.id
    assert (cli_row.metric_version, cli_row.parameters["references"], cli_row.details[
        "reference_sha256"]) == (stored.metric_version, stored.parameters["references"],
                                 stored.details["reference_sha256"])


def test_score_job_input_errors_fail_it_at_once_with_one_line(
    db: Database, model_dir: Path, tmp_path: Path
) -> None:
    """An unknown checkpoint (the service's NotFound) and an unusable CCIP folder (the metrics
    package's CCIPModelError) both fail the job on its first try with their one-line message."""
    home = tmp_path / "home"
    pool = build_pool(db, home, tmp_path / "pool")
    refs = tmp_path / "refs"
    (refs / CHARACTERS[0]).mkdir(parents=True)
    with db.session(readonly=True) as session:
        image = pool_images(session, home, pool.checkpoints[0].name)[CHARACTERS[0]][0]
    shutil.copyfile(image.path, refs / CHARACTERS[0] / "r.png")
    broken = tmp_path / "broken-ccip"
    shutil.copytree(model_dir, broken)
    (broken / "metrics.json").write_text("{not json")
    for folder, checkpoint, needle in [
        (model_dir, "no-such-checkpoint", "no-such-checkpoint"),
        (broken, pool.checkpoints[0].name, "metrics.json"),
    ]:
        settings = Settings(home=home, database_url=db.url, ccip_model_dir=folder,
                            ccip_references=refs)
        job = _score_job(db, settings, checkpoint)
        assert (job.status, job.attempts) == ("failed", 1), job.error
        assert job.error is not None and needle in job.error and "\n" not in job.error
    assert _scores(db) == []
