"""`arena generate`: render a prompt set for a registered checkpoint and import the images."""

from __future__ import annotations

from pathlib import Path

import typer

from arena.cli.common import open_database, print_json


def generate(
    checkpoint: str = typer.Option(
        ..., "--checkpoint", help="Registered checkpoint name (see `arena registry list`)."
    ),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="Prompt set YAML; the shipped default set if not given."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Pool folder (images/ and manifest.jsonl); default ARENA_HOME."
    ),
    config_dir: Path | None = typer.Option(
        None,
        "--config-dir",
        help="Local diffusers SDXL folder (configs, tokenizers) for a single-file checkpoint.",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Images per batch; default from free GPU memory."
    ),
    device: str | None = typer.Option(None, "--device", help="cuda, cuda:1, mps or cpu; auto."),
    dtype: str | None = typer.Option(None, "--dtype", help="fp32, fp16 or bf16; auto."),
    compile_unet: bool = typer.Option(
        False, "--compile", help="torch.compile the UNet (pays off over large GPU pools)."
    ),
    lora: Path | None = typer.Option(None, "--lora", help="A LoRA .safetensors to fuse."),
    lora_scale: float = typer.Option(1.0, "--lora-scale", help="Strength of --lora."),
    allow_download: bool = typer.Option(
        False, "--allow-download", help="Let diffusers fetch a missing config from the hub."
    ),
    no_import: bool = typer.Option(
        False, "--no-import", help="Only write images and manifest; import later."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Render every (prompt, seed) not yet rendered, then record the images in the pool.

    Works under `accelerate launch`: each process renders its share; the main one imports.
    """
    from arena.pool import import_records
    from arena.registry import get_checkpoint
    from arena.settings import get_settings
    from generation.pipeline import CheckpointSpec, LoraSpec, Runtime
    from generation.pool import generate_pool
    from generation.prompt_sets import default_prompt_set, load_prompt_set

    settings = get_settings()
    db = open_database()
    with db.session() as session:
        row = get_checkpoint(session, checkpoint)
        spec = CheckpointSpec(
            Path(row.path),
            name=row.name,
            config_dir=config_dir,
            lora=LoraSpec(lora, lora_scale) if lora is not None else None,
            allow_download=allow_download,
            sha256=row.sha256,
        )
    folder = out or settings.home
    prompt_set = load_prompt_set(prompts) if prompts is not None else default_prompt_set()
    report = generate_pool(
        spec,
        prompt_set,
        folder,
        batch_size=batch_size,
        runtime=Runtime(device=device, dtype=dtype, compile_unet=compile_unet),
        progress=not as_json,
    )
    if not report.is_main_process:
        return
    imported = None
    if not no_import:
        imported = import_records(db, report.rows, settings, base=folder, progress=not as_json)
    summary = {
        "checkpoint": spec.display_name,
        "generated": len(report.generated),
        "already_generated": report.skipped,
        "manifest": str(report.manifest),
        "import": imported.as_dict() if imported is not None else None,
    }
    if as_json:
        print_json(summary)
    else:
        typer.echo(
            f"{spec.display_name}: generated {summary['generated']}, "
            f"already there {summary['already_generated']}; manifest {report.manifest}"
        )
        if imported is not None:
            typer.echo(
                f"imported {len(imported.imported)}, already in the pool "
                f"{len(imported.already_present)}, skipped {len(imported.skipped)}"
            )
            for skipped in imported.skipped:
                typer.echo(f"skipped {skipped.file}: {skipped.reason}")
    if imported is not None and report.rows and not imported.ok:
        typer.echo("error: none of the generated images could be imported", err=True)
        raise typer.Exit(2)
