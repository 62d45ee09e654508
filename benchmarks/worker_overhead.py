"""The worker's added time per job against calling the same functions directly.

A tiny SDXL checkpoint (``tests.support.tiny_sdxl``) and a CCIP-shaped stand-in model
(``tests.support.ccip_stand_in``) are built once. Each round, on a fresh SQLite database and image
store, the same work is done two ways, alternating which goes first:

(a) direct: hash the file and record the checkpoint, ``load_pipeline`` + ``generate_pool``
    + ``import_records``, then ``arena.scores.score_ccip`` (CCIP, scored and stored);
(b) worker: register through ``arena.jobs.plan.queue_checkpoint`` and run ``run_worker``
    (``--once``): the hash, generate and score jobs, with claims, leases, heartbeats,
    progress rows, hidden import and the reveal.

Printed: median seconds of each, the worker's added seconds per job and its overhead
(b / a - 1); target at most 5%.

    python benchmarks/worker_overhead.py [--prompts 4] [--seeds 2] [--size 64] [--steps 2]
        [--rounds 3] [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image as PILImage

CHARACTER = "hatsune miku"


def _prompt_set(folder: Path, prompts: int, seeds: int, size: int, steps: int) -> Path:
    """A prompt set with ``prompts`` fixed prompts of one character (so CCIP scores them all)."""
    lines = [
        "name: bench", "safe: true", "negative_prompt: worst quality",
        f"seeds: {list(range(seeds))}", f"width: {size}", f"height: {size}", f"steps: {steps}",
        "cfg: 6", "fixed:",
    ]
    for i in range(prompts):
        lines.append(f"  - {{character: {CHARACTER}, prompt: '1girl, {CHARACTER}, general, "
                     f"pose {i}, masterpiece'}}")
    path = folder / "prompts.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _fresh(root: Path, tag: str):  # type: ignore[no-untyped-def]
    from arena.db import Database
    from arena.migrate import upgrade
    from arena.registry import add_config
    from training.config import parse_config

    folder = root / tag
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'arena.db'}"
    upgrade(url)
    db = Database(url)
    with db.session() as session:
        add_config(session, parse_config({"name": "bench-run"}, source="bench"))
    return db, folder / "home"


def direct(world: dict, root: Path, tag: str) -> float:
    from arena.pool import import_records
    from arena.registry import record_checkpoint
    from arena.scores import ScoreTarget, pool_images, references_for, score_ccip
    from generation.pipeline import CheckpointSpec, Runtime, load_pipeline
    from generation.pool import generate_pool
    from generation.prompt_sets import load_prompt_set
    from metrics.ccip_model import load_ccip_model
    from metrics.file_hash import sha256_path

    db, home = _fresh(root, tag)
    settings = world["settings"](db, home)
    start = time.perf_counter()
    digest = sha256_path(world["checkpoint"])
    with db.session() as session:
        record_checkpoint(session, world["checkpoint"], "bench-run", digest, "bench-ckpt")
    spec = CheckpointSpec(world["checkpoint"], name="bench-ckpt", config_dir=world["config"],
                          sha256=digest)
    loaded = load_pipeline(spec, Runtime(device="cpu"))
    report = generate_pool(loaded, load_prompt_set(world["prompts"]), home, progress=False)
    import_records(db, report.rows, settings, base=home, progress=False)
    model = load_ccip_model(world["ccip"], device="cpu")
    with db.session(readonly=True) as session:
        images = pool_images(session, home, "bench-ckpt")[CHARACTER]
    score_ccip(db, model, ScoreTarget.of_pool("bench-ckpt", CHARACTER, images),
               references_for(world["references"], CHARACTER))
    seconds = time.perf_counter() - start
    db.dispose()
    return seconds


def worker(world: dict, root: Path, tag: str) -> float:
    from arena.jobs.plan import CheckpointRequest, queue_checkpoint
    from arena.jobs.worker import run_worker

    db, home = _fresh(root, tag)
    settings = world["settings"](db, home)
    start = time.perf_counter()
    with db.session() as session:
        queue_checkpoint(session, settings, CheckpointRequest(
            str(world["checkpoint"]), config="bench-run", name="bench-ckpt"))
    stats = run_worker(db, settings, once=True, device="cpu", echo=lambda _: None)
    seconds = time.perf_counter() - start
    if len(stats.done) != 3:
        raise SystemExit(f"the worker did not finish every job: {stats}")
    db.dispose()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2 prompts, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.rounds = 2, 1
    torch.set_num_threads(args.threads)

    from arena.settings import Settings
    from tests.support.ccip_stand_in import build_ccip_stand_in
    from tests.support.tiny_sdxl import write_tiny_checkpoint

    with tempfile.TemporaryDirectory(prefix="worker-overhead-") as tmp:
        root = Path(tmp)
        ckpt = write_tiny_checkpoint(root / "tiny.safetensors", 1, root / "sdxl-config")
        refs = root / "refs" / CHARACTER
        refs.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for i in range(3):
            PILImage.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
                refs / f"r{i}.png")
        world = {
            "checkpoint": ckpt.checkpoint,
            "config": ckpt.config_dir,
            "prompts": _prompt_set(root, args.prompts, args.seeds, args.size, args.steps),
            "ccip": build_ccip_stand_in(root / "ccip"),
            "references": root / "refs",
        }
        world["settings"] = lambda db, home: Settings(
            home=home, database_url=db.url, prompt_sets=str(world["prompts"]),
            sdxl_config_dir=world["config"], ccip_model_dir=world["ccip"],
            ccip_references=world["references"],
        )
        direct(world, root, "warmup")  # imports, first-call costs: outside the timings
        times: dict[str, list[float]] = {"direct": [], "worker": []}
        for n in range(args.rounds):
            order = [("direct", direct), ("worker", worker)]
            for name, run in order if n % 2 == 0 else order[::-1]:
                times[name].append(run(world, root, f"{name}-{n}"))
        a, b = statistics.median(times["direct"]), statistics.median(times["worker"])
        images = args.prompts * args.seeds
        print(f"tiny SDXL, {args.prompts} prompts x {args.seeds} seeds = {images} images at "
              f"{args.size}px, {args.steps} steps, CCIP stand-in; {args.rounds} rounds")
        print(f"direct (hash + load + generate + import + CCIP + store): {a:.3f} s (median)")
        print(f"worker (3 jobs: hash, generate, score):                 {b:.3f} s (median)")
        print(f"added per job: {(b - a) / 3 * 1000:+.1f} ms; overhead {b / a - 1:+.1%} "
              f"(target <= 5%)")


if __name__ == "__main__":
    main()
