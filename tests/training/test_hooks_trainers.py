"""The trainer callbacks fire in real trainers: transformers' Trainer and PyTorch Lightning,
each with a tiny model, register every saved step with the arena (database URL)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from sqlalchemy import select

from arena.db import Database
from arena.models import Job
from training import hooks

torch = pytest.importorskip("torch")


def _export(out: Path):  # type: ignore[no-untyped-def]
    """An export step: what a real script does to turn a save into an SDXL file (here, a small
    valid safetensors file standing in for it; the worker is not run in these tests)."""

    def export(saved: Path, step: int) -> Path:
        assert saved.exists()
        header = json.dumps({"__metadata__": {"from": saved.name}}).encode()
        target = out / f"sdxl-step{step}.safetensors"
        out.mkdir(parents=True, exist_ok=True)
        target.write_bytes(struct.pack("<Q", len(header)) + header)
        return target

    return export


def _registered(db: Database) -> list[tuple[str | None, int | None]]:
    with db.session(readonly=True) as session:
        jobs = session.scalars(select(Job).where(Job.kind == "hash").order_by(Job.id)).all()
        return [(j.checkpoint_name, j.payload["step"]) for j in jobs]


def test_transformers_trainer_fires_the_callback(db: Database, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    from transformers import Trainer, TrainingArguments

    monkeypatch.setenv("ARENA_PROMPT_SETS", "default")

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def forward(self, x, labels):  # type: ignore[no-untyped-def]
            return {"loss": ((self.lin(x) - labels) ** 2).mean()}

    torch.manual_seed(0)
    data = [{"x": torch.randn(4), "labels": torch.randn(1)} for _ in range(8)]
    args = TrainingArguments(
        output_dir=str(tmp_path / "run-a"), max_steps=4, save_steps=2,
        per_device_train_batch_size=2, report_to=[], use_cpu=True, logging_strategy="no",
        disable_tqdm=True,
    )
    callback = hooks.ArenaTrainerCallback(
        {"name": "hf-run", "batch_size": 2}, arena=db.url, export=_export(tmp_path / "sdxl"),
        outbox=tmp_path / "outbox.jsonl",
    )
    Trainer(model=Tiny(), args=args, train_dataset=data, callbacks=[callback]).train()
    assert _registered(db) == [("run-a-step2", 2), ("run-a-step4", 4)]
    assert [len(a["jobs"]) for a in callback.registered] == [3, 3]


def test_lightning_trainer_fires_the_callback(db: Database, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    lightning = pytest.importorskip("lightning.pytorch")
    monkeypatch.setenv("ARENA_PROMPT_SETS", "default")

    class Tiny(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 1)

        def training_step(self, batch, _index):  # type: ignore[no-untyped-def]
            x, y = batch
            return ((self.lin(x) - y) ** 2).mean()

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 1))
    saver = lightning.callbacks.ModelCheckpoint(
        dirpath=tmp_path / "ckpts", every_n_train_steps=2, save_top_k=-1,
        filename="{step}",
    )
    callback = hooks.ArenaLightningCallback(
        "lit-run", arena=db.url, export=_export(tmp_path / "sdxl"), name_prefix="lit",
        outbox=tmp_path / "outbox.jsonl",
    )
    from arena.registry import add_config
    from training.config import parse_config

    with db.session() as session:
        add_config(session, parse_config({"name": "lit-run"}, source="test"))
    trainer = lightning.Trainer(
        max_steps=4, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[saver, callback],
    )
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=2))
    assert _registered(db) == [("lit-step2", 2), ("lit-step4", 4)]
