"""The admin checkpoint API: 202 with the queued jobs, refusals store nothing, state reads."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from arena.db import Database
from arena.jobs.worker import run_worker
from arena.models import Checkpoint, Job, TrainingConfigRecord
from arena.settings import Settings
from arena.web.app import create_app

ADMIN = {"Authorization": "Bearer admin-secret"}


@pytest.fixture
def settings(db: Database, tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", database_url=db.url, admin_token="admin-secret",
                    prompt_sets="default")


@pytest.fixture
def client(db: Database, settings: Settings) -> TestClient:
    return TestClient(create_app(settings, db, ui=False))


def _stored(db: Database) -> tuple[int, int, int]:
    with db.session(readonly=True) as s:
        return (s.scalar(select(func.count(Job.id))) or 0,
                s.scalar(select(func.count(TrainingConfigRecord.id))) or 0,
                s.scalar(select(func.count(Checkpoint.id))) or 0)


def _file(tmp_path: Path, name: str = "new.safetensors") -> Path:
    path = tmp_path / name
    path.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}" + b"z" * 100)
    return path


def test_register_answers_202_with_queued_jobs(client: TestClient, db: Database,
                                                settings: Settings, tmp_path: Path) -> None:
    path = _file(tmp_path)
    body = {"path": str(path), "config_data": {"name": "my-run", "batch_size": 64}, "step": 100,
            "metadata": {"ss_epoch": 3}}
    ok = client.post("/api/v1/checkpoints", json=body, headers=ADMIN)
    assert ok.status_code == 202, ok.text
    answer = ok.json()
    assert (answer["checkpoint"], answer["config"], answer["created"]) == ("new", "my-run", True)
    kinds = [(j["kind"], j["status"], j["after"]) for j in answer["jobs"]]
    ids = [j["id"] for j in answer["jobs"]]
    assert kinds == [("hash", "queued", None), ("generate", "queued", ids[0]),
                     ("score", "queued", ids[1])]
    # the file is not hashed in the request: the checkpoint is recorded by the hash job
    assert _stored(db) == (3, 1, 0)
    pending = client.get("/api/v1/checkpoints/new", headers=ADMIN).json()
    assert pending["registered"] is False and [j["id"] for j in pending["jobs"]] == ids
    job = client.get(f"/api/v1/jobs/{ids[0]}", headers=ADMIN).json()
    assert job["payload"]["path"] == str(path) and job["status"] == "queued"
    run_worker(db, settings, once=True, kinds=["hash"], echo=lambda _: None)
    state = client.get("/api/v1/checkpoints/new", headers=ADMIN).json()
    assert state["registered"] and state["step"] == 100 and state["config"] == "my-run"
    assert state["training_metadata"] == {"ss_epoch": 3}
    assert state["config_data"]["batch_size"] == 64
    assert [j["status"] for j in state["jobs"]] == ["done", "queued", "queued"]
    assert state["pool"] == {"images": 0, "by_kind": {}}
    assert state["scores"] == [] and state["ratings"] == []
    again = client.post("/api/v1/checkpoints", json=body, headers=ADMIN)
    assert again.status_code == 202 and again.json()["created"] is False
    assert [j["id"] for j in again.json()["jobs"]] == ids


def test_refusals_store_nothing(client: TestClient, db: Database, tmp_path: Path) -> None:
    path = _file(tmp_path)
    body = {"path": str(path), "config_data": {"name": "my-run"}}
    assert client.post("/api/v1/checkpoints", json=body).status_code in (401, 403)
    wrong = client.post("/api/v1/checkpoints", json=body, headers={"Authorization": "Bearer no"})
    assert wrong.status_code in (401, 403) and "token" in wrong.json()["error"]
    assert client.get("/api/v1/checkpoints/new").status_code in (401, 403)
    assert client.get("/api/v1/jobs/1").status_code in (401, 403)
    for bad, needle in [
        ({"path": str(path), "config_data": {"name": "x", "batch_size": -1}}, "batch_size"),
        ({"path": str(tmp_path / "missing.safetensors"), "config_data": {"name": "x"}},
         "does not exist"),
        ({"path": str(path), "config": "unknown-run"}, "unknown config"),
        ({"path": str(path)}, "exactly one of"),
    ]:
        refused = client.post("/api/v1/checkpoints", json=bad, headers=ADMIN)
        assert refused.status_code in (400, 404), refused.text
        assert needle in refused.json()["error"]
    assert _stored(db) == (0, 0, 0)
    assert client.get("/api/v1/checkpoints/nope", headers=ADMIN).status_code == 404
    assert client.get("/api/v1/jobs/42", headers=ADMIN).status_code == 404
    # the same name for another file is a conflict
    assert client.post("/api/v1/checkpoints", json=body, headers=ADMIN).status_code == 202
    (tmp_path / "b").mkdir()
    other = _file(tmp_path / "b", "new.safetensors")
    clash = client.post("/api/v1/checkpoints", headers=ADMIN,
                        json={"path": str(other), "config": "my-run"})
    assert clash.status_code == 409 and "already being registered" in clash.json()["error"]
    assert _stored(db) == (3, 1, 0)


def test_admin_api_disabled_without_token(db: Database, tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path, database_url=db.url), db, ui=False)
    refused = TestClient(app).post("/api/v1/checkpoints", headers=ADMIN,
                                   json={"path": str(_file(tmp_path)), "config": "x"})
    assert refused.status_code == 403 and "ARENA_ADMIN_TOKEN" in refused.json()["error"]
