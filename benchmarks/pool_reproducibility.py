"""How far pool images move with batch size, thread count and a plain diffusers call.

Not a speed benchmark: it measures the numbers behind ``generation.pool.PIXEL_TOLERANCE``.
A tiny SDXL checkpoint (``tests.support.tiny_sdxl``, random weights, nothing downloaded) renders
``--prompts`` prompts of the default set x ``--seeds`` seeds at 64x64 on the CPU in fp32,
once per (thread count, batch size). The baseline is the same run's pool at 1 thread in
batches of 1; each other pool, and a bare ``StableDiffusionXLPipeline`` call per image
(batch of one, its own generator, parameters read back from the PNG), is compared with it.
Printed per pool: the largest difference of any 8-bit pixel value, the mean difference, and
how many images are bit-identical; then the tolerance the tests use.

    python benchmarks/pool_reproducibility.py [--prompts 8] [--seeds 3] [--steps 2]
        [--batch-sizes 1 4 8] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline
from PIL import Image

from generation.manifest import MANIFEST_NAME, read_manifest_rows
from generation.parameters import read_parameters
from generation.pipeline import CheckpointSpec, RenderSettings, Runtime
from generation.pool import PIXEL_TOLERANCE, generate_pool
from generation.prompt_sets import default_prompt_set
from tests.support.generation import render_bare
from tests.support.tiny_sdxl import write_tiny_checkpoint

Key = tuple[str, int]


def _pixels(folder: Path) -> dict[Key, np.ndarray]:
    return {
        (row["prompt"], row["seed"]): np.asarray(Image.open(folder / row["file"])).astype(int)
        for row in read_manifest_rows(folder / MANIFEST_NAME)
    }


def _compare(name: str, got: dict[Key, np.ndarray], base: dict[Key, np.ndarray]) -> None:
    diffs = [np.abs(got[key] - base[key]) for key in base]
    same = sum(int(d.max() == 0) for d in diffs)
    stacked = np.stack(diffs)
    print(
        f"{name:<28} max {stacked.max():>3}  mean {stacked.mean():.5f}  "
        f"bit-identical {same}/{len(diffs)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="pool-repro-"))
    config = root / "config"
    checkpoint = write_tiny_checkpoint(root / "tiny.safetensors", seed=1, config_dir=config)
    full = default_prompt_set()
    settings = RenderSettings(
        negative_prompt="worst quality", steps=args.steps, cfg=6.0, width=64, height=64
    )
    prompt_set = replace(
        full,
        entries=full.entries[: args.prompts],
        seeds=tuple(range(args.seeds)),
        settings=settings,
    )
    spec = CheckpointSpec(checkpoint.checkpoint, name="tiny", config_dir=config)
    pools: dict[str, dict[Key, np.ndarray]] = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        for size in args.batch_sizes:
            out = root / f"threads{threads}-batch{size}"
            generate_pool(
                spec,
                prompt_set,
                out,
                batch_size=size,
                runtime=Runtime(device="cpu"),
                progress=False,
            )
            pools[out.name] = _pixels(out)
    base_name = f"threads{args.threads[0]}-batch{args.batch_sizes[0]}"
    base = pools[base_name]
    print(f"{len(base)} images, {args.steps} steps; baseline: pool {base_name}")
    for name, got in pools.items():
        _compare(f"pool {name}", got, base)

    torch.set_num_threads(args.threads[0])
    pipe = StableDiffusionXLPipeline.from_single_file(
        str(checkpoint.checkpoint), config=str(config), local_files_only=True
    )
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    bare = {}
    any_pool = root / f"threads{args.threads[-1]}-batch{args.batch_sizes[-1]}"
    for row in read_manifest_rows(any_pool / MANIFEST_NAME):
        params = read_parameters(any_pool / row["file"])
        bare[(params.prompt, params.seed)] = render_bare(pipe, params)
    _compare("bare diffusers, batch 1", bare, base)
    print(f"tolerance in tests (generation.pool.PIXEL_TOLERANCE): {PIXEL_TOLERANCE}")


if __name__ == "__main__":
    main()
