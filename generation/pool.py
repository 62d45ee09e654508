"""Pool generation: render a prompt set for one checkpoint into content-addressed PNGs.

Every (prompt, seed) of the set becomes one image, rendered with its own generator seeded
with its seed. Images are written as ``<out>/images/<sha256[:2]>/<sha256>.png`` (the hash of
the PNG bytes, which carry A1111 ``parameters`` text) and listed in ``<out>/manifest.jsonl``,
one JSON object per image with the fields of :data:`generation.manifest.MANIFEST_FIELDS`.

Images are rendered in batches (one pipeline call for several images) for speed. Batches
hold prompts of the same 75-token chunk count only, so no prompt is padded because of its
neighbours. Each image's noise comes from its own seed, but its pixels also depend on the
batch it shares a call with: torch's CPU kernels and cuBLAS pick how they sum by the shape
of the batch, so the same image rendered in a batch of 4 and alone differs in the last bits
of its floats, and after 8-bit rounding in a few pixel values. The promise is therefore:

- Bit-identical: an image rendered again in the same batch composition (the same prompts
  and seeds in the same order, same settings), with the same software (torch, diffusers,
  the same torch thread count) on the same machine, has the same bytes. The manifest
  records each image's batch (``batch``, ``batch_size``, ``batch_pos``) and the PNG says
  ``Batch size: N, Batch pos: i``, so a rerun renders a lost image in the batch it was
  first rendered in (its batch mates again, in the same order, whatever ``batch_size`` is
  asked now) and writes the same file. The mates' renders are compared with their files
  and not written; one that differs is reported in ``PoolReport.drifted``: the software or
  the machine changed, and the new image is close to the lost one but not the same. A lost
  image whose batch cannot be rendered as it was (a manifest row without batch fields, a
  mate's row missing, a batch that no longer fits in GPU memory) is rendered in a new batch.
- Close: in another batch size, on another machine, or from the PNG's parameters alone
  with a plain diffusers call (batch of one), an image matches within the tolerance of
  :data:`PIXEL_TOLERANCE` (at most 4 in any 8-bit value, 0.1 on average), measured on the
  tiny test pipeline (fp32, CPU). A full-size checkpoint over 28 steps, or fp16 on a GPU,
  may drift further; that has not been measured.

A rerun renders only what is missing: an image counts as done when the manifest lists it
for this checkpoint, kind and prompt and seed, its file exists, and the file's parameters
match the settings. Under ``accelerate launch`` each process renders every n-th pending
batch (n processes) on its own device and appends to the same manifest under a file lock.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.errors import GenerationError
from generation.files import write_once
from generation.manifest import MANIFEST_NAME, read_manifest_rows
from generation.parameters import ImageParameters, png_bytes, read_parameters
from generation.pipeline import (
    CheckpointSpec,
    LoadedPipeline,
    RenderSettings,
    Runtime,
    load_pipeline,
)
from generation.prompt_sets import PromptEntry, PromptSet
from metrics.file_hash import sha256_bytes, short_hash

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "PIXEL_TOLERANCE",
    "PoolItem",
    "PoolReport",
    "generate_pool",
    "pool_items",
]

# How far an image may move (8-bit pixel values) when rendered in another batch size, with
# another thread count, on another CPU, or by a plain diffusers call: the largest difference
# of any pixel value, and the mean difference over all values. Measured with
# benchmarks/pool_reproducibility.py on the tiny test pipeline (64x64, fp32, CPU; 24 images,
# batches of 1, 4 and 8, 1 and 2 threads, 2 and 8 steps, on an AMD EPYC): at most 1, mean at
# most 0.0001. The bounds leave room for other CPUs; another seed is far outside them.
PIXEL_TOLERANCE = {"max": 4, "mean": 0.1}
_CPU_BATCH = 4
_MAX_AUTO_BATCH = 8
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolItem:
    """One image of a pool: a prompt of the set and a seed."""

    entry: PromptEntry
    seed: int


@dataclass
class PoolReport:
    """What a ``generate_pool`` call did (in this process) and the set's manifest rows.

    ``rows`` are the manifest rows of every image of the set for this checkpoint that is
    done, from all processes; read them on the main process after the call. ``drifted``
    lists the files of batch mates that came out different when a lost image's batch was
    rendered again (see the module docstring).
    """

    out_dir: Path
    manifest: Path
    generated: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    drifted: list[str] = field(default_factory=list)
    process_index: int = 0
    num_processes: int = 1

    @property
    def is_main_process(self) -> bool:
        """True on the process that should import the rows (the only one without accelerate)."""
        return self.process_index == 0


@dataclass(frozen=True)
class _Batch:
    """One render call: its items in order, the positions to write, and the id to record.

    A fresh batch writes every position. A recorded batch (a lost image's, read back from
    the manifest) writes only the lost positions; ``mates`` holds the manifest rows of the
    others, whose renders are compared with their files.
    """

    id: str
    items: tuple[PoolItem, ...]
    keep: frozenset[int]
    mates: dict[int, dict[str, Any]] = field(default_factory=dict)


def pool_items(prompt_set: PromptSet) -> list[PoolItem]:
    """Every (prompt, seed) of the set, prompts in file order, seeds in the given order."""
    return [PoolItem(entry, seed) for entry in prompt_set.entries for seed in prompt_set.seeds]


def _expected(item: PoolItem, settings: RenderSettings, name: str, mhash: str) -> ImageParameters:
    """The parameters an image of ``item`` has, rendered alone (no batch fields)."""
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


def _in_batch(params: ImageParameters, size: int, pos: int) -> ImageParameters:
    """``params`` with the web UI's batch fields (none for an image rendered alone)."""
    if size == 1:
        return replace(params, batch_size=None, batch_pos=None)
    return replace(params, batch_size=size, batch_pos=pos)


def _key(checkpoint: str, kind: str, prompt: str, seed: int) -> tuple[str, str, str, int]:
    return checkpoint, kind, prompt, seed


def _row_key(row: dict[str, Any]) -> tuple[str, str, str, int] | None:
    try:
        return _key(str(row["checkpoint"]), str(row["kind"]), str(row["prompt"]), int(row["seed"]))
    except (KeyError, TypeError, ValueError):
        return None


def _same_settings(row: dict[str, Any], settings: RenderSettings) -> bool:
    """True when a manifest row was rendered with these settings, as far as its fields say."""
    try:
        return (
            row["negative_prompt"] == settings.negative_prompt
            and row["sampler"] == settings.sampler
            and int(row["steps"]) == settings.steps
            and float(row["cfg"]) == float(settings.cfg)
            and (int(row["width"]), int(row["height"])) == settings.output_size
        )
    except (KeyError, TypeError, ValueError):
        return False


def _has_batch(row: dict[str, Any]) -> bool:
    return (
        isinstance(row.get("batch"), str)
        and isinstance(row.get("batch_pos"), int)
        and isinstance(row.get("batch_size"), int)
    )


@dataclass
class _Scan:
    """The manifest read against the set: done rows by item, and lost images' last rows."""

    done: dict[PoolItem, dict[str, Any]]
    lost: dict[PoolItem, dict[str, Any]]
    batches: dict[str, dict[int, dict[str, Any]]]


def _scan(
    out_dir: Path, items: Sequence[PoolItem], settings: RenderSettings, spec: CheckpointSpec
) -> _Scan:
    name = spec.display_name
    known_hash = short_hash(spec.sha256) if spec.sha256 else None
    by_key: dict[tuple[str, str, str, int], list[dict[str, Any]]] = defaultdict(list)
    batches: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in read_manifest_rows(out_dir / MANIFEST_NAME):
        key = _row_key(row)
        if key is None:
            continue
        by_key[key].append(row)
        if _has_batch(row):
            batches[row["batch"]][row["batch_pos"]] = row  # the last row of a place wins
    done: dict[PoolItem, dict[str, Any]] = {}
    lost: dict[PoolItem, dict[str, Any]] = {}
    for item in items:
        rows = by_key.get(_key(name, item.entry.kind, item.entry.prompt, item.seed), [])
        for row in reversed(rows):
            path = out_dir / str(row.get("file", ""))
            if not path.is_file():
                continue
            try:
                found = read_parameters(path)
            except GenerationError:
                continue
            alone = replace(found, batch_size=None, batch_pos=None)
            if alone == _expected(item, settings, name, known_hash or found.model_hash):
                done[item] = row
                break
        else:
            recorded = [r for r in rows if _same_settings(r, settings) and _has_batch(r)]
            if recorded:
                lost[item] = recorded[-1]
    return _Scan(done, lost, batches)


def _item_of(row: dict[str, Any]) -> PoolItem:
    entry = PromptEntry(
        prompt=str(row["prompt"]), kind=str(row["kind"]), character=row.get("character")
    )
    return PoolItem(entry, int(row["seed"]))


def _recorded_batches(
    scan: _Scan, pending: Sequence[PoolItem]
) -> tuple[list[_Batch], set[PoolItem]]:
    """The recorded batches that hold lost images, and the lost images they cover.

    A batch whose rows are incomplete (a torn manifest line) cannot be rendered as it was;
    its lost images are rendered afresh.
    """
    keep: dict[str, set[int]] = defaultdict(set)
    covered: set[PoolItem] = set()
    for item in pending:
        row = scan.lost.get(item)
        if row is None:
            continue
        places = scan.batches.get(row["batch"], {})
        if sorted(places) != list(range(row["batch_size"])):
            continue
        keep[row["batch"]].add(int(row["batch_pos"]))
        covered.add(item)
    batches = []
    for batch_id, positions in keep.items():
        places = scan.batches[batch_id]
        members = tuple(_item_of(places[pos]) for pos in range(len(places)))
        mates = {pos: row for pos, row in places.items() if pos not in positions}
        batches.append(_Batch(batch_id, members, frozenset(positions), mates))
    return batches, covered


def _write_png(out_dir: Path, image: Image, params: ImageParameters) -> tuple[str, str]:
    """Write the PNG under its content hash (atomically); return its relative path and hash."""
    data = png_bytes(image, params)
    digest = sha256_bytes(data)
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


def _fresh_batches(
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


def _render(
    loaded: LoadedPipeline, items: Sequence[PoolItem], settings: RenderSettings
) -> list[Image]:
    return loaded.render([i.entry.prompt for i in items], [i.seed for i in items], settings)


def _render_fitting(
    loaded: LoadedPipeline, items: list[PoolItem], settings: RenderSettings
) -> list[tuple[_Batch, list[Image]]]:
    """Render new images, halving the batch on a GPU out-of-memory error; each call that
    ran becomes one recorded batch."""
    import torch

    try:
        images = _render(loaded, items, settings)
    except torch.OutOfMemoryError:
        if len(items) == 1:
            width, height = settings.output_size
            raise GenerationError(
                f"out of GPU memory rendering one {width}x{height} image; use a smaller size"
            ) from None
        torch.cuda.empty_cache()
        half = len(items) // 2
        return _render_fitting(loaded, items[:half], settings) + _render_fitting(
            loaded, items[half:], settings
        )
    batch = _Batch(uuid.uuid4().hex, tuple(items), frozenset(range(len(items))))
    return [(batch, images)]


def _render_recorded(
    loaded: LoadedPipeline, batch: _Batch, settings: RenderSettings
) -> list[tuple[_Batch, list[Image]]]:
    """Render a recorded batch as it was; if it no longer fits in GPU memory, its lost
    images are rendered alone instead (new batches, close to the lost images, not equal)."""
    import torch

    try:
        return [(batch, _render(loaded, batch.items, settings))]
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
    _log.warning(
        "batch %s no longer fits in GPU memory; its lost images are rendered alone", batch.id
    )
    out = []
    for pos in sorted(batch.keep):
        out += _render_fitting(loaded, [batch.items[pos]], settings)
    return out


def _drifted(
    out_dir: Path,
    batch: _Batch,
    images: list[Image],
    settings: RenderSettings,
    loaded: LoadedPipeline,
) -> list[str]:
    """The files of ``batch``'s mates whose new render differs from the bytes they hold."""
    size = len(batch.items)
    changed = []
    for pos, row in sorted(batch.mates.items()):
        path = out_dir / str(row.get("file", ""))
        if not path.is_file():
            continue
        params = _in_batch(
            _expected(batch.items[pos], settings, loaded.name, loaded.model_hash), size, pos
        )
        if sha256_bytes(png_bytes(images[pos], params)) != row.get("sha256"):
            changed.append(str(row["file"]))
    return changed


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
    memory (4 on a CPU); a batch that does not fit is halved. A lost image is rendered in
    the batch the manifest records for it, whatever ``batch_size`` says. Raises
    ``GenerationError`` (one line) for checkpoint, config or setting problems.
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
    scan = _scan(out_dir, items, settings, spec)
    pending = [item for item in items if item not in scan.done]
    recorded, covered = _recorded_batches(scan, pending)
    recorded = recorded[index::count]
    fresh = [item for item in pending if item not in covered][index::count]
    report = PoolReport(
        out_dir=out_dir,
        manifest=manifest,
        skipped=len(items) - len(pending),
        process_index=index,
        num_processes=count,
    )
    if recorded or fresh:
        loaded = preloaded or load_pipeline(spec, replace(runtime, device=device))
        size = batch_size or _auto_batch(loaded, settings)
        width, height = settings.output_size
        bar = tqdm(
            total=sum(len(b.keep) for b in recorded) + len(fresh),
            desc=f"generate {loaded.name}" + (f" [{index}/{count}]" if count > 1 else ""),
            unit="image",
            position=index,
            disable=not progress,
        )

        def rendered() -> Iterator[tuple[_Batch, list[Image]]]:
            for batch in recorded:
                for done_batch, images in _render_recorded(loaded, batch, settings):
                    report.drifted += _drifted(out_dir, done_batch, images, settings, loaded)
                    yield done_batch, images
            for group in _fresh_batches(loaded, fresh, settings.negative_prompt, size):
                yield from _render_fitting(loaded, group, settings)

        # PNG compression runs in a worker thread while the next batch renders.
        with ThreadPoolExecutor(max_workers=1) as writer, bar:
            queued: list[tuple[_Batch, int, ImageParameters, Future[tuple[str, str]]]] = []
            for batch, images in rendered():
                for pos in sorted(batch.keep):
                    params = _in_batch(
                        _expected(batch.items[pos], settings, loaded.name, loaded.model_hash),
                        len(batch.items),
                        pos,
                    )
                    written = writer.submit(_write_png, out_dir, images[pos], params)
                    queued.append((batch, pos, params, written))
                while queued and (queued[0][3].done() or len(queued) > 2 * size):
                    report.generated.append(_record(manifest, *queued.pop(0), width, height))
                    bar.update(1)
            for entry in queued:
                report.generated.append(_record(manifest, *entry, width, height))
                bar.update(1)
        if report.drifted:
            _log.warning(
                "%d batch mate(s) of lost images rendered differently than before (other "
                "software or machine): the images rendered again are close to the lost ones, "
                "not identical",
                len(report.drifted),
            )
    if state is not None:
        state.wait_for_everyone()
    final = _scan(out_dir, items, settings, spec).done
    report.rows = [final[item] for item in items if item in final]
    return report


def _record(
    manifest: Path,
    batch: _Batch,
    pos: int,
    params: ImageParameters,
    written: Future[tuple[str, str]],
    width: int,
    height: int,
) -> dict[str, Any]:
    rel, digest = written.result()
    item = batch.items[pos]
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
        "batch": batch.id,
        "batch_size": len(batch.items),
        "batch_pos": pos,
    }
    _append_row(manifest, row)
    return row
