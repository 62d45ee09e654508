"""Trainer hooks: a new checkpoint enters the arena by itself.

Importable without torch, transformers or lightning (the callbacks are built on first use):

- :func:`register_checkpoint` — one call for plain loops (diffusers / accelerate scripts);
- ``ArenaTrainerCallback`` — Hugging Face ``transformers.Trainer``: registers after each save
  (``on_save``, once the ``checkpoint-<step>`` folder is written);
- ``ArenaLightningCallback`` — PyTorch Lightning: registers each checkpoint file its
  ``ModelCheckpoint`` callbacks wrote, at the first hook after the file exists;
- ``arena watch DIR --config NAME`` (:mod:`training.watch`) for trainers without callbacks;
- :func:`leaderboard` and :func:`scores` to read results back (pick the best step, stop early).

A hook never raises into the training loop and never waits long: when the arena cannot be
reached it logs one warning, keeps the registration in a local outbox file
(:mod:`training.outbox`) and delivers it on the next call (or from ``arena watch``). A
registration the arena refuses for now (401/403 token, 404 unknown config, 409) is kept there
too; one it can never take as written (400, 422: a malformed payload) is logged and dropped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from metrics.boards import OVERALL
from metrics.rating_systems import DEFAULT_SYSTEM
from training.client import Arena, ArenaRefused, ArenaUnreachable
from training.outbox import Outbox

# ArenaTrainerCallback and ArenaLightningCallback are module attributes built on first use.
__all__ = [
    "deliver_outbox",
    "find_checkpoint",
    "leaderboard",
    "register_checkpoint",
    "scores",
]

log = logging.getLogger("illustrious_arena.hooks")

Export = Callable[[Path, int], "Path | str | None"]


def _payload(
    path: Path | str,
    config: str | Mapping[str, Any],
    step: int | None,
    name: str | None,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "path": str(Path(path).expanduser().resolve()),
        "step": step,
        "name": name,
        "metadata": dict(metadata or {}),
    }
    if isinstance(config, str):
        payload["config"] = config
    elif hasattr(config, "model_dump"):  # a training.config.TrainingConfig
        payload["config_data"] = config.model_dump(mode="json")
    else:
        payload["config_data"] = dict(config)
    return payload


def deliver_outbox(
    arena: str | None = None, token: str | None = None, outbox: Path | str | None = None
) -> int:
    """Deliver registrations kept while the arena was unreachable; returns how many went.

    ``token`` is used for entries bound for ``arena`` (the token is never written to disk).
    """
    box = Outbox(outbox)
    try:
        client = Arena.resolve(arena, token)
    except ArenaRefused:
        return 0  # no arena named: nothing of the outbox can be delivered
    return _deliver(box, client)


def _deliver(box: Outbox, client: Arena) -> int:
    """Deliver ``box``'s entries for ``client``'s arena with its token; log what happened."""
    delivered, dropped, kept = box.deliver(client.target, client.register)
    for entry in delivered:
        log.info("delivered the kept registration of %s", entry["payload"]["path"])
    for entry in dropped:
        log.warning("the arena refused the kept registration of %s, which cannot pass as "
                    "written; dropped it from the outbox: %s (payload %s)",
                    entry["payload"]["path"], entry["error"], json.dumps(entry["payload"]))
    for entry in kept:
        log.warning("the arena refused the kept registration of %s for now (%s); it stays in "
                    "the outbox %s", entry["payload"]["path"], entry["error"], box.path)
    return len(delivered)


def register_checkpoint(
    path: Path | str,
    config: str | Mapping[str, Any],
    *,
    step: int | None = None,
    name: str | None = None,
    arena: str | None = None,
    token: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    outbox: Path | str | None = None,
) -> dict[str, Any] | None:
    """Register a checkpoint with the arena, which queues its hashing, rendering and scoring.

    ``path`` is an SDXL ``.safetensors`` file or diffusers folder the arena's workers can read;
    ``config`` a registered config's name or a full training config (dict or
    ``TrainingConfig``); ``arena`` an http(s) URL (with the admin ``token``) or a database
    URL (default ``$ARENA_URL``, then ``$ARENA_DATABASE_URL``). Returns the arena's answer
    (checkpoint, config, queued jobs), or None when the registration was kept in the outbox
    or refused; never raises.
    """
    try:
        payload = _payload(path, config, step, name, metadata)
        client = Arena.resolve(arena, token)
    except Exception as exc:  # a hook must not stop training over a bad argument
        log.warning("arena: not registering %s: %s", path, exc)
        return None
    box = Outbox(outbox)
    try:
        _deliver(box, client)
        answer = client.register(payload)
    except ArenaUnreachable as exc:
        box.add(client.target, payload)
        log.warning("arena unreachable (%s); kept %s in the outbox %s for later delivery",
                    exc, payload["path"], box.path)
        return None
    except ArenaRefused as exc:
        if exc.may_pass_later:
            box.add(client.target, payload)
            log.warning("arena refused the registration of %s for now (%s); kept it in the "
                        "outbox %s to try again", payload["path"], exc, box.path)
        else:
            log.warning("arena refused the registration of %s: %s", payload["path"], exc)
        return None
    except Exception as exc:  # never crash the training loop
        box.add(client.target, payload)
        log.warning("arena registration of %s failed (%s: %s); kept in the outbox %s",
                    payload["path"], type(exc).__name__, exc, box.path)
        return None
    log.info("arena: registered %s as %s (%d jobs queued)", payload["path"],
             answer.get("checkpoint"), len(answer.get("jobs", [])))
    return answer


def leaderboard(
    board: str = OVERALL, system: str = DEFAULT_SYSTEM, *, arena: str | None = None,
    token: str | None = None,
) -> list[dict[str, Any]]:
    """Leaderboard rows of ``board`` in rating ``system`` (:mod:`metrics.rating_systems`), as
    the API shows them (:mod:`arena.leaderboard.rows`). Raises
    ``ArenaUnreachable`` / ``ArenaRefused`` (reading back is not on the training path)."""
    return Arena.resolve(arena, token).leaderboard(board, system)


def scores(
    checkpoint: str, *, arena: str | None = None, token: str | None = None
) -> dict[str, Any]:
    """A checkpoint's metric scores, ratings, pool size and jobs (``GET /checkpoints/NAME``)."""
    return Arena.resolve(arena, token).checkpoint(checkpoint)


def find_checkpoint(folder: Path) -> Path | None:
    """The SDXL checkpoint a trainer's save folder holds: the folder itself when it is a
    diffusers pipeline (``model_index.json``), else its one ``.safetensors`` file."""
    if (folder / "model_index.json").is_file():
        return folder
    files = sorted(folder.glob("*.safetensors"))
    return files[0] if len(files) == 1 else None


class _Hook:
    """What both trainer callbacks share: where to register, and how to name a step."""

    def __init__(
        self,
        config: str | Mapping[str, Any],
        *,
        arena: str | None = None,
        token: str | None = None,
        export: Export | None = None,
        name_prefix: str | None = None,
        outbox: Path | str | None = None,
    ) -> None:
        self.config = config
        self.arena, self.token, self.outbox = arena, token, outbox
        self.export = export
        self.name_prefix = name_prefix
        self.registered: list[dict[str, Any]] = []

    def _register(self, saved: Path, step: int, run: str) -> None:
        try:
            path = self.export(saved, step) if self.export else find_checkpoint(saved)
        except Exception as exc:  # a failing export must not stop training
            log.warning("arena: exporting %s for registration failed: %s", saved, exc)
            return
        if path is None:
            log.warning("arena: no SDXL checkpoint found in %s (pass export=...)", saved)
            return
        name = f"{self.name_prefix or run}-step{step}"
        answer = register_checkpoint(
            path, self.config, step=step, name=name, arena=self.arena, token=self.token,
            outbox=self.outbox,
        )
        if answer is not None:
            self.registered.append(answer)


def _trainer_callback_class() -> type:
    from transformers import TrainerCallback

    class ArenaTrainerCallback(_Hook, TrainerCallback):
        """Registers each checkpoint a ``transformers.Trainer`` saves (see module docs).

        ``export(folder, step)`` turns the saved ``checkpoint-<step>`` folder into the SDXL
        checkpoint to register (default: :func:`find_checkpoint`).
        """

        def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                self._register(folder, int(state.global_step), Path(args.output_dir).name)
            return control

    return ArenaTrainerCallback


_STEP = re.compile(r"step=(\d+)")


def _lightning_callback_class() -> type:
    try:
        from lightning.pytorch import Callback
    except ImportError:
        from pytorch_lightning import Callback

    class ArenaLightningCallback(_Hook, Callback):
        """Registers each checkpoint file Lightning's ``ModelCheckpoint`` wrote (module docs).

        Lightning runs checkpoint callbacks after all others in a hook, so a file is seen at
        the next hook (the next batch, epoch or validation end, or the end of fitting).
        ``export(path, step)`` turns a ``.ckpt`` into the SDXL checkpoint to register.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._seen: set[str] = set()

        def _scan(self, trainer: Any) -> None:
            if not trainer.is_global_zero:
                return
            for callback in trainer.checkpoint_callbacks:
                paths = {*getattr(callback, "best_k_models", {}),
                         getattr(callback, "last_model_path", ""),
                         getattr(callback, "best_model_path", "")}
                for raw in sorted(p for p in paths if p):
                    path = Path(raw)
                    if str(path) in self._seen or not path.exists():
                        continue
                    self._seen.add(str(path))
                    found = _STEP.search(path.name)
                    step = int(found.group(1)) if found else int(trainer.global_step)
                    run = Path(callback.dirpath or path.parent).parent.name or "lightning"
                    self._register(path, step, run)

        def on_train_batch_end(self, trainer, *args, **kwargs):  # type: ignore[no-untyped-def]
            self._scan(trainer)

        def on_train_epoch_end(self, trainer, *args, **kwargs):  # type: ignore[no-untyped-def]
            self._scan(trainer)

        def on_validation_end(self, trainer, *args, **kwargs):  # type: ignore[no-untyped-def]
            self._scan(trainer)

        def on_fit_end(self, trainer, *args, **kwargs):  # type: ignore[no-untyped-def]
            self._scan(trainer)

    return ArenaLightningCallback


_BUILDERS = {
    "ArenaTrainerCallback": _trainer_callback_class,
    "ArenaLightningCallback": _lightning_callback_class,
}
_BUILT: dict[str, type] = {}


def __getattr__(name: str) -> type:
    # The callback classes derive from the trainers' base classes, imported on first use.
    if name in _BUILDERS:
        if name not in _BUILT:
            _BUILT[name] = _BUILDERS[name]()
        return _BUILT[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
