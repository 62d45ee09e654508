"""End to end on the CPU: a tiny training loop registers its checkpoints through the hook,
the worker hashes, renders and CCIP-scores them, and they are served in matches; once through
the database URL, once through the HTTP API with the admin token (with the outbox holding
a registration while the arena is down). A prompt a voter typed is rendered by the worker
and then served in a free-prompt duel."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("onnxruntime")

from sqlalchemy import func, select

from arena.db import Database
from arena.jobs.worker import run_worker
from arena.matches import issue_match
from arena.models import Checkpoint, Image, Job, MatchImage, MetricScore
from arena.votes import record_vote
from metrics.file_hash import sha256_file
from tests.support.jobs import (
    CHARACTER,
    CONFIG,
    TinyWorld,
    bound_socket,
    build_world,
    tiny_training,
    worker_settings,
)
from tests.support.pool import serve_on
from training import hooks

pytestmark = pytest.mark.usefixtures("one_torch_thread")
VOTER = "voter-hooks-0001"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    return build_world(tmp_path_factory.mktemp("tiny-world"))




def _check_arena(db: Database, world: TinyWorld, settings, names: list[str],  # type: ignore[no-untyped-def]
                 metrics: tuple[str, ...] = ("ccip",)) -> None:
    lines: list[str] = []
    stats = run_worker(db, settings, once=True, echo=lines.append)
    assert not stats.failed and not stats.retried, lines
    assert len(stats.done) == 3 * len(names)  # hash, generate, score each
    with db.session(readonly=True) as session:
        assert set(session.scalars(select(Job.status))) == {"done"}
        rows = {c.name: c for c in session.scalars(select(Checkpoint))}
        assert sorted(rows) == sorted(names)
        for name in names:
            row = rows[name]
            assert row.sha256 == sha256_file(Path(row.path))
            assert row.config.name == CONFIG["name"] and row.config.data["unet_lr"] == 1e-5
            images = session.scalar(
                select(func.count(Image.id)).where(Image.checkpoint_id == row.id,
                                                   Image.hidden.is_(False))
            )
            assert images == 4  # two prompts x two seeds
            stored = session.scalars(
                select(MetricScore).where(MetricScore.checkpoint_id == row.id)
                .order_by(MetricScore.metric)
            ).all()
            expected = {"ccip": ("ccip", CHARACTER, 2), "clip": ("clip_score", None, 4)}
            assert [(s.metric, s.character, len(s.images_used)) for s in stored] == [
                expected[m] for m in metrics
            ]
            assert 0.0 <= stored[0].value <= 1.0
    # a second run has nothing to do, and the checkpoints are served in matches
    assert run_worker(db, settings, once=True, echo=lambda _: None).done == []
    shown = set()
    for _ in range(4):
        match = issue_match(db, settings, VOTER, "fixed")
        assert match.prompt.startswith("1girl, hatsune miku")
        with db.session(readonly=True) as session:
            shown |= {
                session.scalar(select(Checkpoint.name).join(MatchImage).where(
                    MatchImage.served_name == image.name))
                for image in match.images
            }
    assert shown == set(names)


def _vote_once(db: Database, settings) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """One fixed duel voted for the image at position 0: (winner, loser) checkpoint names."""
    match = issue_match(db, settings, VOTER, "fixed")
    reveal = record_vote(db, settings, match.token, VOTER, winner=0)
    names = {image.position: image.checkpoint for image in reveal.images}
    return names[0], names[1]


def _assert_board_after_one_vote(board: list, winner: str, loser: str) -> None:  # type: ignore[type-arg]
    """The Elo board after one decided duel: both checkpoints, one game each, winner first."""
    assert [r["checkpoint"] for r in board] == [winner, loser]
    assert [r["games"] for r in board] == [1, 1]
    assert board[0]["rating"] > board[1]["rating"]


def test_training_loop_registers_through_the_database_url(
    world: TinyWorld, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("open_clip")
    from tests.support.tiny_clip import write_tiny_clip

    clip_config, clip_weights, _ = write_tiny_clip(tmp_path, "tiny-jobs-clip")
    settings = worker_settings(world, tmp_path / "home", db, clip_model="tiny-jobs-clip",
                               clip_weights=clip_weights, clip_config=clip_config)
    # In database mode the hook queues the prompt sets its own environment names.
    monkeypatch.setenv("ARENA_PROMPT_SETS", str(world.prompt_set))
    answers = []

    def on_save(path: Path, step: int) -> None:
        answers.append(hooks.register_checkpoint(path, CONFIG, step=step, arena=db.url,
                                                 outbox=tmp_path / "outbox.jsonl"))

    tiny_training(world, tmp_path / "out", on_save)
    assert [a["checkpoint"] for a in answers] == ["tiny-step1", "tiny-step2"]  # type: ignore[index]
    assert [[j["kind"] for j in a["jobs"]] for a in answers] == [["hash", "generate", "score"]] * 2  # type: ignore[index]
    _check_arena(db, world, settings, ["tiny-step1", "tiny-step2"], ("ccip", "clip"))
    # the same work queued again (no dedup key) is a no-op: content hashes match
    from arena.jobs.queue import enqueue

    with db.session() as session:
        scores_before = session.scalar(select(func.count(MetricScore.id)))
        images_before = session.scalar(select(func.count(Image.id)))
        gen, _ = enqueue(session, "generate", {"checkpoint": "tiny-step1",
                                               "prompt_set": str(world.prompt_set)})
        score, _ = enqueue(session, "score", {"checkpoint": "tiny-step1"})
        ids = (gen.id, score.id)
    assert run_worker(db, settings, once=True, echo=lambda _: None).done == list(ids)
    with db.session(readonly=True) as session:
        assert session.scalar(select(func.count(MetricScore.id))) == scores_before
        assert session.scalar(select(func.count(Image.id))) == images_before
        gen_row, score_row = session.get(Job, ids[0]), session.get(Job, ids[1])
        assert gen_row is not None and gen_row.result["rendered"] == 0  # type: ignore[index]
        assert score_row is not None and all(
            s.get("already") for s in score_row.result["scores"]  # type: ignore[index]
        )
    # reading results back: the checkpoint's scores and the leaderboard
    status = hooks.scores("tiny-step1", arena=db.url)
    assert status["step"] == 1 and status["pool"]["images"] == 4
    assert sorted(s["metric"] for s in status["scores"]) == ["ccip", "clip_score"]
    winner, loser = _vote_once(db, settings)
    _assert_board_after_one_vote(hooks.leaderboard("overall", "elo", arena=db.url), winner, loser)
    # registering the same checkpoint again queues nothing new
    again = hooks.register_checkpoint(tmp_path / "out" / "tiny-step1.safetensors", CONFIG,
                                      step=1, arena=db.url)
    assert again is not None and again["created"] is False
    assert [j["id"] for j in again["jobs"]] == [j["id"] for j in answers[0]["jobs"]]  # type: ignore[index]


def test_training_loop_registers_through_the_http_api_with_outbox(
    world: TinyWorld, db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from arena.web.app import create_app

    settings = worker_settings(world, tmp_path / "home", db, admin_token="trainer-secret")
    outbox = tmp_path / "outbox.jsonl"
    sock = bound_socket()  # the arena's address, not answering yet
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    answers = []

    def on_save(path: Path, step: int) -> None:
        answers.append(hooks.register_checkpoint(path, CONFIG, step=step, arena=url,
                                                 token="trainer-secret", outbox=outbox))

    with caplog.at_level(logging.WARNING, logger="illustrious_arena.hooks"):
        tiny_training(world, tmp_path / "out", on_save, steps=1)
    assert answers == [None]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "outbox" in warnings[0].getMessage()
    assert "trainer-secret" not in outbox.read_text()
    with db.session(readonly=True) as session:
        assert session.scalar(select(func.count(Job.id))) == 0
    with serve_on(create_app(settings, db, ui=False), sock):
        # the arena is back: the next call delivers the kept registration first
        step2 = tmp_path / "out" / "tiny-step2.safetensors"
        tiny_training(world, tmp_path / "out2", lambda _p, _s: None, steps=2)
        (tmp_path / "out2" / "tiny-step2.safetensors").rename(step2)
        answer = hooks.register_checkpoint(step2, CONFIG, step=2, arena=url,
                                           token="trainer-secret", outbox=outbox)
        assert answer is not None and answer["checkpoint"] == "tiny-step2"
        assert not outbox.exists()
        with db.session(readonly=True) as session:
            assert sorted(session.scalars(select(Job.checkpoint_name).where(
                Job.kind == "hash"))) == ["tiny-step1", "tiny-step2"]
        _check_arena(db, world, settings, ["tiny-step1", "tiny-step2"])
        status = hooks.scores("tiny-step2", arena=url, token="trainer-secret")
        assert status["registered"] and status["config"] == CONFIG["name"]
        assert [s["character"] for s in status["scores"]] == [CHARACTER]
        winner, loser = _vote_once(db, settings)
        board = hooks.leaderboard("overall", "elo", arena=url, token="trainer-secret")
        _assert_board_after_one_vote(board, winner, loser)


def test_typed_prompt_is_rendered_then_served_in_a_free_duel(
    world: TinyWorld, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = worker_settings(world, tmp_path / "home", db, free_prompt_jobs_per_voter=1)
    monkeypatch.setenv("ARENA_PROMPT_SETS", str(world.prompt_set))
    tiny_training(world, tmp_path / "out", lambda path, step: hooks.register_checkpoint(
        path, CONFIG, step=step, arena=db.url, outbox=tmp_path / "outbox.jsonl"))
    run_worker(db, settings, once=True, echo=lambda _: None)
    from generation.prompts import apply_safe_mode

    typed = "1girl, kagamine rin, sailor collar, smile"
    stored = apply_safe_mode(typed)  # the pool's safe mode adds the 'general' rating tag
    first = issue_match(db, settings, VOTER, "free", typed)
    assert first.notice is not None and "queued for generation" in first.notice
    assert "kagamine rin" not in first.prompt
    # the same voter's next new prompt hits the per-voter bound: told so, nothing queued
    other = issue_match(db, settings, VOTER, "free", "1boy, kagamine len, headphones")
    assert other.notice is not None and "could not join the rendering queue" in other.notice
    assert "typed prompts waiting" in other.notice
    with db.session(readonly=True) as session:
        free_jobs = session.scalars(select(Job).where(Job.status == "queued")).all()
        assert sorted(j.checkpoint_name for j in free_jobs) == ["tiny-step1", "tiny-step2"]
        assert {j.payload["free_prompt"] for j in free_jobs} == {stored}
    stats = run_worker(db, settings, once=True, echo=lambda _: None)
    assert len(stats.done) == 2 and not stats.failed
    served = issue_match(db, settings, "voter-hooks-0002", "free", typed)
    assert served.notice is None and served.prompt == stored
    assert len(served.images) == 2
