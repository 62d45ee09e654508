"""Pool generation: render a prompt set for one checkpoint into content-addressed PNGs.

Every (prompt, seed) of the set becomes one image, rendered with its own generator so the
same seed and settings give the same image. Images are written as
``<out>/images/<sha256[:2]>/<sha256>.png`` (the hash of the PNG bytes, which carry A1111
``parameters`` text) and listed in ``<out>/manifest.jsonl``, one JSON object per image with
the fields ``arena pool import`` reads (:data:`MANIFEST_FIELDS`).

A rerun renders only what is missing: an image counts as done when the manifest lists it
for this checkpoint, kind and prompt and seed, its file exists, and the file's parameters
match the settings. Under ``accelerate launch`` each process renders every n-th pending
image (n processes) on its own device and appends to the same manifest under a file lock.
Batches hold prompts of the same 75-token chunk count only, so no prompt is padded because
of its neighbours. Within a batch size, results are bit-identical run to run; across batch
sizes they can differ in the last bit of a few pixels (floating-point summation order).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.errors import GenerationError
from generation.files import write_once
from generation.parameters import ImageParameters, png_bytes, read_parameters
from generation.pipeline import (
    CheckpointSpec,
    LoadedPipeline,
    RenderSettings,
    Runtime,
    load_pipeline,
)
from generation.prompt_sets import PromptEntry, PromptSet

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "MANIFEST_FIELDS",
    "MANIFEST_NAME",
    "PoolItem",
    "PoolReport",
    "generate_pool",
    "pool_items",
    "read_manifest_rows",
]

MANIFEST_NAME = "manifest.jsonl"
MANIFEST_FIELDS = (
    "file",
    "sha256",
    "checkpoint",
    "prompt",
    "negative_prompt",
    "kind",
    "character",
    "seed",
    "sampler",
    "steps",
    "cfg",
    "width",
    "height",
)
_CPU_BATCH = 4
_MAX_AUTO_BATCH = 8


@dataclass(frozen=True)
class PoolItem:
    """One image of a pool: a prompt of the set and a seed."""

    entry: PromptEntry
    seed: int


@dataclass
class PoolReport:
    """What a ``generate_pool`` call did (in this process) and the set's manifest rows.

    ``rows`` are the manifest rows of every image of the set for this checkpoint that is
    done, from all processes; read them on the main process after the call.
    """

    out_dir: Path
    manifest: Path
    generated: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    process_index: int = 0
    num_processes: int = 1

    @property
    def is_main_process(self) -> bool:
        """True on the process that should import the rows (the only one without accelerate)."""
        return self.process_index == 0


def pool_items(prompt_set: PromptSet) -> list[PoolItem]:
    """Every (prompt, seed) of the set, prompts in file order, seeds in the given order."""
    return [PoolItem(entry, seed) for entry in prompt_set.entries for seed in prompt_set.seeds]


def read_manifest_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``manifest.jsonl`` (a missing file has none; a torn last line is skipped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # an interrupted append; the image is rendered again
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _expected(item: PoolItem, settings: RenderSettings, name: str, mhash: str) -> ImageParameters:
    second = settings.second_pass
    return ImageParameters(
        prompt=item.entry.prompt,
        negative_prompt=settings.negative_prompt,
        steps=settings.steps,
        sampler=settings.sampler,
        cfg=float(settings.cfg),
        seed=item.seed,
        width=settings.width,
        height=settings.height,
        model_hash=mhash,
        model_name=name,
        denoising_strength=second.strength if second else None,
        hires_upscale=second.scale if second else None,
        hires_steps=second.steps if second else None,
    )


def _key(checkpoint: str, kind: str, prompt: str, seed: int) -> tuple[str, str, str, int]:
    return checkpoint, kind, prompt, seed


def _done_rows(
    out_dir: Path, items: Sequence[PoolItem], settings: RenderSettings, spec: CheckpointSpec
) -> dict[PoolItem, dict[str, Any]]:
    """The manifest row of each item already rendered with these settings, by item."""
    name = spec.display_name
    known_hash = spec.sha256[:10] if spec.sha256 else None
    by_key: dict[tuple[str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in read_manifest_rows(out_dir / MANIFEST_NAME):
        try:
            by_key[_key(row["checkpoint"], row["kind"], row["prompt"], int(row["seed"]))].append(
                row
            )
        except (KeyError, TypeError, ValueError):
            continue
    done: dict[PoolItem, dict[str, Any]] = {}
    for item in items:
        for row in reversed(
            by_key.get(_key(name, item.entry.kind, item.entry.prompt, item.seed), [])
        ):
            path = out_dir / str(row.get("file", ""))
            if not path.is_file():
                continue
            try:
                found = read_parameters(path)
            except GenerationError:
                continue
            if found == _expected(item, settings, name, known_hash or found.model_hash):
                done[item] = row
                break
    return done


def _write_png(out_dir: Path, image: Image, params: ImageParameters) -> tuple[str, str]:
    """Write the PNG under its content hash (atomically); return its relative path and hash."""
    data = png_bytes(image, params)
    digest = hashlib.sha256(data).hexdigest()
    rel = f"images/{digest[:2]}/{digest}.png"
    write_once(out_dir / rel, data)
    return rel, digest


def _append_row(manifest: Path, row: dict[str, Any]) -> None:
    # One write per line under an exclusive lock: processes of one launch share the file.
    line = (json.dumps(row, ensure_ascii=False) + "\n").encode()
    fd = os.open(manifest, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
    finally:
        os.close(fd)


def _process_share(device: str | None) -> tuple[int, int, str | None, Any]:
    """This process's index, the process count, its device and the accelerate state."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch
        from accelerate import PartialState

        cpu = (
            device == "cpu"
            or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
            or not torch.cuda.is_available()
        )
        state = PartialState(cpu=cpu)
        return state.process_index, state.num_processes, device or str(state.device), state
    return 0, 1, device, None


def _auto_batch(loaded: LoadedPipeline, settings: RenderSettings) -> int:
    import torch

    if loaded.device.type != "cuda":
        return _CPU_BATCH
    free, _ = torch.cuda.mem_get_info(loaded.device)
    width, height = settings.output_size
    # About 3 GiB of activations per megapixel image with CFG in half precision (SDXL, SDPA).
    per_image = 3 * (1 << 30) * (width * height) / 1_000_000
    return max(1, min(_MAX_AUTO_BATCH, int(free // per_image)))


def _batches(
    loaded: LoadedPipeline, items: Sequence[PoolItem], negative: str, size: int
) -> Iterator[list[PoolItem]]:
    # Only prompts with the same chunk count share a batch (see the module docstring).
    groups: dict[int, list[PoolItem]] = defaultdict(list)
    for item in items:
        groups[max(loaded.chunk_count(item.entry.prompt), loaded.chunk_count(negative))].append(
            item
        )
    for group in groups.values():
        for start in range(0, len(group), size):
            yield group[start : start + size]


def _render_fitting(
    loaded: LoadedPipeline, batch: list[PoolItem], settings: RenderSettings
) -> list[Image]:
    """Render a batch, halving it on a GPU out-of-memory error."""
    import torch

    try:
        return loaded.render([i.entry.prompt for i in batch], [i.seed for i in batch], settings)
    except torch.OutOfMemoryError:
        if len(batch) == 1:
            width, height = settings.output_size
            raise GenerationError(
                f"out of GPU memory rendering one {width}x{height} image; use a smaller size"
            ) from None
        torch.cuda.empty_cache()
        half = len(batch) // 2
        return _render_fitting(loaded, batch[:half], settings) + _render_fitting(
            loaded, batch[half:], settings
        )


def generate_pool(
    checkpoint: CheckpointSpec | LoadedPipeline,
    prompt_set: PromptSet,
    out_dir: Path,
    *,
    batch_size: int | None = None,
    runtime: Runtime | None = None,
    progress: bool = True,
) -> PoolReport:
    """Render every missing (prompt, seed) of ``prompt_set`` for ``checkpoint``.

    ``checkpoint`` is a spec, loaded (as ``runtime`` says) only if something is left to
    render, or a pipeline already loaded. ``batch_size`` of ``None`` picks one from free GPU
    memory (4 on a CPU); a batch that does not fit is halved. Raises ``GenerationError``
    (one line) for checkpoint, config or setting problems.
    """
    from tqdm import tqdm

    if batch_size is not None and batch_size < 1:
        raise GenerationError(f"batch size: expected an integer >= 1, got {batch_size}")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST_NAME
    preloaded = checkpoint if isinstance(checkpoint, LoadedPipeline) else None
    spec = preloaded.spec if preloaded else checkpoint
    if preloaded is not None and runtime is not None:
        raise ValueError("a loaded pipeline already has its runtime")
    runtime = runtime or Runtime()
    index, count, device, state = _process_share(runtime.device)
    settings = prompt_set.settings
    items = pool_items(prompt_set)
    done = _done_rows(out_dir, items, settings, spec)
    pending = [item for item in items if item not in done]
    mine = pending[index::count]
    report = PoolReport(
        out_dir=out_dir,
        manifest=manifest,
        skipped=len(items) - len(pending),
        process_index=index,
        num_processes=count,
    )
    if mine:
        loaded = preloaded or load_pipeline(spec, replace(runtime, device=device))
        size = batch_size or _auto_batch(loaded, settings)
        width, height = settings.output_size
        bar = tqdm(
            total=len(mine),
            desc=f"generate {loaded.name}" + (f" [{index}/{count}]" if count > 1 else ""),
            unit="image",
            position=index,
            disable=not progress,
        )
        # PNG compression runs in a worker thread while the next batch renders.
        with ThreadPoolExecutor(max_workers=1) as writer, bar:
            queued: list[tuple[PoolItem, ImageParameters, Future[tuple[str, str]]]] = []
            for batch in _batches(loaded, mine, settings.negative_prompt, size):
                images = _render_fitting(loaded, batch, settings)
                for item, image in zip(batch, images, strict=True):
                    params = _expected(item, settings, loaded.name, loaded.model_hash)
                    queued.append((item, params, writer.submit(_write_png, out_dir, image, params)))
                while queued and (queued[0][2].done() or len(queued) > 2 * size):
                    report.generated.append(_record(manifest, *queued.pop(0), width, height))
                    bar.update(1)
            for entry in queued:
                report.generated.append(_record(manifest, *entry, width, height))
                bar.update(1)
    if state is not None:
        state.wait_for_everyone()
    final = _done_rows(out_dir, items, settings, spec)
    report.rows = [final[item] for item in items if item in final]
    return report


def _record(
    manifest: Path,
    item: PoolItem,
    params: ImageParameters,
    written: Future[tuple[str, str]],
    width: int,
    height: int,
) -> dict[str, Any]:
    rel, digest = written.result()
    row = {
        "file": rel,
        "sha256": digest,
        "checkpoint": params.model_name,
        "prompt": params.prompt,
        "negative_prompt": params.negative_prompt,
        "kind": item.entry.kind,
        "character": item.entry.character,
        "seed": item.seed,
        "sampler": params.sampler,
        "steps": params.steps,
        "cfg": params.cfg,
        "width": width,
        "height": height,
    }
    _append_row(manifest, row)
    return row
