"""`arena score`: CCIP character fidelity and CLIP prompt alignment, stored with provenance.

Both commands score either a folder of images (``--images DIR``) or a checkpoint's images in
the pool (``--checkpoint NAME``, repeatable), print a table per checkpoint and character (or
``--json``, or write ``--csv FILE``), store each score as a ``metric_scores`` row linked to the
checkpoint, list unreadable images by name and skip them, and exit non-zero only when nothing
could be scored. Which images, which references, scoring and storing are :mod:`arena.scores`',
the same code the ``score`` job runs; this module parses options and prints.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from arena.cli.common import new_app, open_database, print_json
from arena.csv_cells import inert_cell
from arena.errors import UserError
from arena.image_store import IMAGE_SUFFIXES, image_files

if TYPE_CHECKING:  # arena.scores loads numpy and the metric modules: only when a command runs
    from arena.scores import References, ScoreTarget

app = new_app("Metric scores: CCIP character fidelity and CLIP score, stored with provenance.")


# The options `arena score ccip` and `arena score clip` share.
ImagesOpt = Annotated[Path | None, typer.Option("--images", help="A folder of generated images.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, help="Image decoding threads.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
CsvOpt = Annotated[Path | None, typer.Option("--csv", help="Also write the table as CSV.")]


@dataclass
class Group:
    """One row of the report: images of one checkpoint (or folder) and character."""

    target: ScoreTarget
    prompts: list[str] = field(default_factory=list)
    no_prompt: dict[Path, str] = field(default_factory=dict)  # why an image has no prompt
    references: References | None = None  # set by _attach_references (CCIP)
    problem: str | None = None  # why the group cannot be scored at all


def _folder_group(folder: Path, character: str | None) -> Group:
    from arena.scores import ScoreTarget

    files = image_files(folder)
    if not files:
        raise UserError(f"--images {folder}: expected image files ({', '.join(IMAGE_SUFFIXES)})")
    names = {str(p): p.relative_to(folder).as_posix() for p in files}
    return Group(ScoreTarget(None, character, files, names=names))


def _pool_groups(
    checkpoints: list[str], character: str | None, fixed_only: bool
) -> tuple[Any, list[Group]]:
    from arena.scores import ScoreTarget, pool_images
    from arena.settings import get_settings

    db = open_database()
    home = get_settings().home
    groups: list[Group] = []
    with db.session() as session:
        for name in checkpoints:
            found = pool_images(session, home, name, character=character, fixed_only=fixed_only)
            if not found:
                what = f"character {character!r}" if character else "scorable images"
                groups.append(Group(ScoreTarget(name, character, []),
                                    problem=f"no {what} in the pool"))
            for char, rows in sorted(found.items(), key=lambda kv: kv[0] or ""):
                groups.append(Group(ScoreTarget.of_pool(name, char, rows),
                                    prompts=[r.prompt for r in rows]))
    return db, groups


def _attach_references(groups: list[Group], folder: Path, named: str | None) -> None:
    """Each group's references, by the rule of :func:`arena.scores.references_for`."""
    from arena.scores import references_for

    if not folder.is_dir():
        raise UserError(f"--references {folder}: expected a folder of reference images")
    for group in groups:
        group.references = references_for(folder, group.target.character, named)
        character = group.target.character
        if not group.references.files and group.problem is None:
            where = f"{folder}/{character}/" if character else str(folder)
            group.problem = f"no reference images in {where}"


def _check_output(as_json: bool, csv_file: Path | None) -> None:
    if as_json and csv_file is not None:
        raise UserError("--json and --csv: choose one output")


def _run(
    groups: list[Group],
    score_one: Callable[[Group, Callable[[int], None]], tuple[dict[str, Any], list[Any]]],
    as_json: bool,
) -> list[dict[str, Any]]:
    """Score every group with a progress bar; a group that cannot be scored is reported."""
    from tqdm import tqdm

    from metrics.ccip import NothingToScoreError

    total = sum(len(g.target.images) + len(g.references.files if g.references else [])
                for g in groups if g.problem is None)
    rows: list[dict[str, Any]] = []
    with tqdm(total=total, unit="img", desc="scoring", disable=as_json) as bar:
        for group in groups:
            target = group.target
            row: dict[str, Any] = {"checkpoint": target.checkpoint, "character": target.character}
            if group.problem is not None:
                rows.append({**row, "error": group.problem, "unreadable": []})
                continue
            try:
                values, unreadable = score_one(group, bar.update)
            except NothingToScoreError as exc:
                values, unreadable = {"error": str(exc)}, list(exc.unreadable)
            refs = group.references.files if group.references else []
            shown = {**target.names, **{str(p): p.name for p in refs}}
            row.update(values)
            row["unreadable"] = [
                {"name": shown.get(f.name, f.name), "reason": f.reason} for f in unreadable
            ]
            rows.append(row)
    return rows


def _report(
    rows: list[dict[str, Any]],
    columns: list[tuple[str, str]],
    as_json: bool,
    csv_file: Path | None,
    extra: dict[str, Any],
) -> None:
    """Print the table (or JSON), write the CSV, and exit 2 when no row was scored."""
    scored = [r for r in rows if "error" not in r]
    if as_json:
        print_json({**extra, "scores": rows})
    else:
        header = ["checkpoint", "character", *(title for _, title in columns)]
        table = [
            [r["checkpoint"] or "-", r["character"] or "-"]
            + [_cell(r.get(key)) if "error" not in r else "" for key, _ in columns]
            for r in rows
        ]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *table, strict=False)]
        typer.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
        for line, r in zip(table, rows, strict=True):
            text = "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            typer.echo(text + (f"  not scored: {r['error']}" if "error" in r else ""))
        for r in rows:
            for bad in r["unreadable"]:
                typer.echo(f"skipped {bad['name']}: {bad['reason']}")
    if csv_file is not None:
        keys = ["checkpoint", "character", *(key for key, _ in columns), "unreadable", "error"]
        with csv_file.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            for r in rows:
                row = {**r, "unreadable": len(r["unreadable"])}
                writer.writerow({key: inert_cell(value) for key, value in row.items()})
    if not scored:
        typer.echo("error: nothing could be scored", err=True)
        raise typer.Exit(2)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@app.command("ccip")
def ccip(
    references: Path | None = typer.Option(
        None, "--references", help="Reference images of the character, or one subfolder each."
    ),
    images: ImagesOpt = None,
    checkpoint: list[str] | None = typer.Option(
        None, "--checkpoint", help="Score this checkpoint's pool images (repeatable)."
    ),
    character: str | None = typer.Option(None, "--character", help="Only this character."),
    model_dir: Path | None = typer.Option(
        None, "--model-dir", help="CCIP folder: model_feat.onnx, model_metrics.onnx, metrics.json."
    ),
    pairs: tuple[Path, Path] | None = typer.Option(
        None, "--pairs", help="Print the CCIP difference between two images."
    ),
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 4,
    chunk_size: int = typer.Option(32, "--chunk-size", min=1, help="Images per model call."),
    as_json: JsonOpt = False,
    csv_file: CsvOpt = None,
) -> None:
    """CCIP character fidelity: the mean fraction of references judged the same character."""
    from metrics.ccip import extract_features
    from metrics.ccip_model import load_ccip_model

    _check_output(as_json, csv_file)
    if model_dir is None:
        raise UserError("--model-dir: expected a CCIP model folder")
    if pairs is not None and (references or images or checkpoint):
        raise UserError("--pairs: use it alone, without --references, --images or --checkpoint")
    if pairs is None and (references is None or (images is None) == (not checkpoint)):
        raise UserError("expected --references DIR and either --images DIR or --checkpoint NAME")
    model = load_ccip_model(model_dir, device=device)

    if pairs is not None:
        feats = extract_features(model, list(pairs), workers=2)
        if feats.failures:
            bad = feats.failures[0]
            raise UserError(f"--pairs {bad.name}: {bad.reason}")
        diff = float(model.run_metrics(feats.features)[0, 1])
        same = diff <= model.threshold
        if as_json:
            print_json(
                {
                    "difference": diff,
                    "same_character": same,
                    "threshold": model.threshold,
                    "model": model.name,
                }
            )
        else:
            verdict = "same character" if same else "different characters"
            typer.echo(f"{diff:.6f}  ({verdict} at threshold {model.threshold:.6f})")
        return

    from arena.scores import score_ccip

    if references is None:  # checked above; narrows the type without an assert
        raise UserError("expected --references DIR")
    if images is not None:
        groups = [_folder_group(images, character)]
        db = open_database()
    else:
        db, groups = _pool_groups(checkpoint or [], character, fixed_only=True)
    _attach_references(groups, references, character)

    def score_one(group: Group, progress: Callable[[int], None]):  # type: ignore[no-untyped-def]
        result, score_id = score_ccip(db, model, group.target, group.references,
                                      chunk_size=chunk_size, workers=workers, progress=progress)
        values = {
            "ccip": result.score,
            "mean_difference": result.mean_difference,
            "images": result.count,
            "references": result.reference_count,
            "embedded": result.embedded,
            "cache_hits": result.cache_hits,
            "score_id": score_id,
        }
        return values, list(result.unreadable)

    rows = _run(groups, score_one, as_json)
    columns = [
        ("images", "images"),
        ("references", "refs"),
        ("ccip", "ccip"),
        ("mean_difference", "mean diff"),
        ("score_id", "score id"),
    ]
    model_info = {
        "name": model.name,
        "key": model.key,
        "threshold": model.threshold,
        "feat_sha256": model.feat_sha256,
        "metrics_sha256": model.metrics_sha256,
    }
    _report(rows, columns, as_json, csv_file, {"metric": "ccip", "model": model_info})


def _prompts_from_files(group: Group, prompt: str | None) -> None:
    """Each folder image's prompt: ``--prompt``, else the PNG's A1111 parameters text; an image
    without one is reported with the reason, not scored."""
    from generation.errors import GenerationError
    from generation.parameters import read_parameters

    for path in group.target.images:
        if prompt is not None:
            group.prompts.append(prompt)
            continue
        try:
            group.prompts.append(read_parameters(path).prompt)
        except GenerationError as exc:
            group.prompts.append("")
            group.no_prompt[path] = f"no prompt: {exc} (pass --prompt)"


@app.command("clip")
def clip(
    images: ImagesOpt = None,
    checkpoint: list[str] | None = typer.Option(
        None, "--checkpoint", help="Score this checkpoint's pool images (repeatable)."
    ),
    character: str | None = typer.Option(
        None, "--character", help="Only this character's fixed prompts."
    ),
    model: str | None = typer.Option(None, "--model", help="open_clip model name."),
    weights: Path | None = typer.Option(None, "--weights", help="Local weights file (.pt)."),
    config: Path | None = typer.Option(None, "--config", help="open_clip model config JSON."),
    prompt: str | None = typer.Option(
        None, "--prompt", help="Prompt for every --images file (default: its parameters text)."
    ),
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 4,
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Images per model call."),
    as_json: JsonOpt = False,
    csv_file: CsvOpt = None,
) -> None:
    """CLIPScore (Hessel et al. 2021): 2.5 * max(cos(image, prompt), 0), averaged."""
    from metrics.clip_score import CLIPSCORE_W, load_clip_model

    _check_output(as_json, csv_file)
    if model is None or weights is None:
        raise UserError("--model and --weights: expected an open_clip model name and weights file")
    if (images is None) == (not checkpoint):
        raise UserError("expected either --images DIR or --checkpoint NAME")
    if images is not None:
        groups = [_folder_group(images, character)]
        _prompts_from_files(groups[0], prompt)
        db = open_database()
    else:
        db, groups = _pool_groups(checkpoint or [], character, fixed_only=False)
    clip_model = load_clip_model(model, weights, config=config, device=device)

    from arena.scores import ScoreTarget, score_clip
    from metrics.ccip import NothingToScoreError
    from metrics.ccip_preprocess import ImageFailure

    def score_one(group: Group, progress: Callable[[int], None]):  # type: ignore[no-untyped-def]
        target = group.target
        usable = [(p, t) for p, t in zip(target.images, group.prompts, strict=True) if t]
        missing = [ImageFailure(str(p), why) for p, why in group.no_prompt.items()]
        progress(len(missing))
        if not usable:
            raise NothingToScoreError("images: no image with a prompt to score", missing)
        scored = ScoreTarget(target.checkpoint, target.character, [p for p, _ in usable],
                             names=target.names)
        try:
            result, score_id = score_clip(db, clip_model, scored, [t for _, t in usable],
                                          batch_size=batch_size, workers=workers,
                                          progress=progress)
        except NothingToScoreError as exc:
            raise NothingToScoreError(str(exc), [*missing, *exc.unreadable]) from exc
        values = {"clip_score": result.score, "images": result.count, "score_id": score_id}
        return values, [*missing, *result.unreadable]

    rows = _run(groups, score_one, as_json)
    columns = [("images", "images"), ("clip_score", "clip score"), ("score_id", "score id")]
    model_info = {
        "name": clip_model.name,
        "weights_sha256": clip_model.weights_sha256,
        "config_sha256": clip_model.config_sha256,
        "w": CLIPSCORE_W,
    }
    _report(rows, columns, as_json, csv_file, {"metric": "clip_score", "model": model_info})
