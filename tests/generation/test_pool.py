"""Pool generation: content-addressed PNGs, a manifest, parameters that parse back, resuming."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.errors import GenerationError
from generation.manifest import BATCH_FIELDS, MANIFEST_FIELDS, read_manifest_rows
from generation.parameters import png_bytes, read_parameters
from generation.pipeline import CheckpointSpec, LoadedPipeline, Runtime
from generation.pool import PIXEL_TOLERANCE, generate_pool, pool_items
from generation.prompt_sets import PromptSet
from tests.support.generation import CPU, TinyFiles, render_bare

REPO = Path(__file__).resolve().parents[2]


def spec(tiny: TinyFiles, name: str = "tiny-a") -> CheckpointSpec:
    return CheckpointSpec(tiny.single_file, name=name, config_dir=tiny.config_dir)


@pytest.fixture(scope="module")
def pool(tiny: TinyFiles, tiny_set: PromptSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pool of the tiny set for checkpoint ``tiny-a`` (8 images)."""
    import torch

    out = tmp_path_factory.mktemp("pool")
    torch.set_num_threads(1)
    report = generate_pool(spec(tiny), tiny_set, out, runtime=CPU, progress=False)
    assert len(report.generated) == len(pool_items(tiny_set)) == 8
    assert report.skipped == 0
    return out


def test_images_are_content_addressed_and_listed(pool: Path, tiny_set: PromptSet) -> None:
    rows = read_manifest_rows(pool / "manifest.jsonl")
    assert len(rows) == 8
    for row in rows:
        assert tuple(row) == MANIFEST_FIELDS
        data = (pool / row["file"]).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert row["sha256"] == digest
        assert row["file"] == f"images/{digest[:2]}/{digest}.png"
        assert (row["width"], row["height"]) == Image.open(pool / row["file"]).size == (64, 64)
    wanted = {
        (i.entry.kind, i.entry.prompt, i.entry.character, i.seed) for i in pool_items(tiny_set)
    }
    assert {(r["kind"], r["prompt"], r["character"], r["seed"]) for r in rows} == wanted
    assert {r["kind"] for r in rows} == {"fixed", "free", "ffa"}


def test_png_parameters_parse_back_to_the_recorded_values(pool: Path, tiny: TinyFiles) -> None:
    model_hash = hashlib.sha256(tiny.single_file.read_bytes()).hexdigest()[:10]
    for row in read_manifest_rows(pool / "manifest.jsonl"):
        params = read_parameters(pool / row["file"])
        assert params.prompt == row["prompt"]
        assert params.negative_prompt == row["negative_prompt"] == "worst quality"
        assert (params.seed, params.steps, params.sampler, params.cfg) == (
            row["seed"],
            row["steps"],
            row["sampler"],
            row["cfg"],
        )
        assert (params.width, params.height) == (row["width"], row["height"])
        assert (params.model_name, params.model_hash) == ("tiny-a", model_hash)


def test_rerun_generates_nothing_new(pool: Path, tiny: TinyFiles, tiny_set: PromptSet) -> None:
    before = (pool / "manifest.jsonl").read_bytes()
    report = generate_pool(spec(tiny), tiny_set, pool, runtime=CPU, progress=False)
    assert report.generated == []
    assert report.skipped == 8
    assert len(report.rows) == 8
    assert (pool / "manifest.jsonl").read_bytes() == before


def test_a_lost_image_is_rendered_again_with_the_same_bytes(
    pool: Path, tiny: TinyFiles, tiny_set: PromptSet
) -> None:
    rows = read_manifest_rows(pool / "manifest.jsonl")
    row = rows[3]
    assert row["batch_size"] == 4 and row["batch_pos"] == 3
    assert read_parameters(pool / row["file"]).batch_size == 4
    mates = [r for r in rows if r["batch"] == row["batch"]]
    assert [r["batch_pos"] for r in mates] == [0, 1, 2, 3]
    lost = pool / row["file"]
    original = lost.read_bytes()
    lost.unlink()
    # Asked for batches of one, the lost image is still rendered in its recorded batch of
    # four (its mates again, in order): the promised bit-identical case on this machine.
    report = generate_pool(spec(tiny), tiny_set, pool, batch_size=1, runtime=CPU, progress=False)
    assert [(r["prompt"], r["seed"]) for r in report.generated] == [(row["prompt"], row["seed"])]
    assert report.drifted == []  # the mates came out as their files
    assert report.generated[0]["file"] == row["file"]
    assert (report.generated[0]["batch"], report.generated[0]["batch_pos"]) == (row["batch"], 3)
    assert lost.read_bytes() == original


def test_changed_settings_and_another_checkpoint_render_anew(
    pool: Path, tiny: TinyFiles, tiny_set: PromptSet, tmp_path: Path
) -> None:
    small = replace(tiny_set, entries=tiny_set.entries[:1], seeds=(0,))
    more_steps = replace(small, settings=replace(small.settings, steps=3))
    assert (
        len(generate_pool(spec(tiny), more_steps, pool, runtime=CPU, progress=False).generated) == 1
    )
    other = CheckpointSpec(tiny.other, name="tiny-b", config_dir=tiny.config_dir)
    [b_row] = generate_pool(other, small, pool, runtime=CPU, progress=False).generated
    [a_row] = [
        r
        for r in read_manifest_rows(pool / "manifest.jsonl")
        if r["checkpoint"] == "tiny-a"
        and r["seed"] == 0
        and r["steps"] == 2
        and r["prompt"] == small.entries[0].prompt
    ]
    a = np.asarray(Image.open(pool / a_row["file"]))
    b = np.asarray(Image.open(pool / b_row["file"]))
    assert not np.array_equal(a, b)  # other weights, other image for the same seed


def test_bad_batch_size(tiny: TinyFiles, tiny_set: PromptSet, tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="batch size: expected an integer >= 1, got 0"):
        generate_pool(spec(tiny), tiny_set, tmp_path, batch_size=0, runtime=CPU)


_WORKER = """
import sys
from dataclasses import replace
from pathlib import Path
import torch
torch.set_num_threads(1)
from generation.pipeline import CheckpointSpec, Runtime
from generation.pool import generate_pool
from generation.prompt_sets import default_prompt_set
ps = default_prompt_set()
ps = replace(ps, entries=ps.entries[:2], seeds=(0, 1),
             settings=replace(ps.settings, width=64, height=64, steps=2))
spec = CheckpointSpec(Path(sys.argv[1]), name="tiny-a", config_dir=Path(sys.argv[2]))
report = generate_pool(spec, ps, Path(sys.argv[3]), runtime=Runtime(device="cpu"), progress=False)
print(report.process_index, report.num_processes, len(report.generated), len(report.rows))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_processes_of_a_launch_share_the_work(tiny: TinyFiles, tmp_path: Path) -> None:
    """Two processes with the environment ``accelerate launch`` sets render half each."""
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "WORLD_SIZE": "2",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
            "ACCELERATE_USE_CPU": "true",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(REPO),
        }
        args = [
            sys.executable,
            "-c",
            _WORKER,
            str(tiny.single_file),
            str(tiny.config_dir),
            str(tmp_path),
        ]
        procs.append(
            subprocess.Popen(
                args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        outputs.append(out.split()[-4:])
    assert sorted(outputs) == [["0", "2", "2", "4"], ["1", "2", "2", "4"]]
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert len({(r["prompt"], r["seed"]) for r in rows}) == 4


def test_a_loaded_pipeline_renders_the_same_files(
    pool: Path, loaded: LoadedPipeline, tiny_set: PromptSet, tmp_path: Path
) -> None:
    report = generate_pool(loaded, tiny_set, tmp_path, progress=False)
    first = {
        r["sha256"]
        for r in read_manifest_rows(pool / "manifest.jsonl")
        if r["checkpoint"] == "tiny-a" and r["steps"] == 2
    }
    assert {r["sha256"] for r in report.generated} <= first
    assert len(report.generated) == 8
    with pytest.raises(ValueError, match="already has its runtime"):
        generate_pool(loaded, tiny_set, tmp_path, runtime=Runtime(device="cpu"))


def test_png_parameters_alone_reproduce_the_image_with_a_bare_diffusers_call(
    pool: Path, tiny: TinyFiles
) -> None:
    """The promise's second half: from its PNG alone, a plain diffusers call (batch of one,
    its own generator) renders each pool image within the stated tolerance."""
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_single_file(
        str(tiny.single_file), config=str(tiny.config_dir), local_files_only=True
    )
    pipe.set_progress_bar_config(disable=True)
    schedulers = {"Euler a": EulerAncestralDiscreteScheduler}  # the web UI's sampler names
    files = {
        r["file"]
        for r in read_manifest_rows(pool / "manifest.jsonl")
        if r["checkpoint"] == "tiny-a" and r["steps"] == 2
    }
    assert len(files) == 8

    batched = 0
    for file in sorted(files):
        params = read_parameters(pool / file)
        batched += (params.batch_size or 1) > 1
        ours = np.asarray(Image.open(pool / file)).astype(int)
        pipe.scheduler = schedulers[params.sampler].from_config(pipe.scheduler.config)
        diff = np.abs(ours - render_bare(pipe, params))
        assert diff.max() <= PIXEL_TOLERANCE["max"], file
        assert diff.mean() <= PIXEL_TOLERANCE["mean"], file
    assert batched == 8  # the pool was rendered in batches, the bare calls one by one
    # the tolerance is far below what tells two images apart: another seed is far outside it
    other = np.abs(ours - render_bare(pipe, replace(params, seed=params.seed + 1)))
    assert other.mean() > 10 * PIXEL_TOLERANCE["mean"]


def test_a_batch_mate_that_renders_differently_is_reported(
    pool: Path, tiny: TinyFiles, tiny_set: PromptSet, tmp_path: Path
) -> None:
    """When a recorded batch no longer renders as before, the report says so."""
    copy = tmp_path / "pool"
    shutil.copytree(pool, copy)
    rows = read_manifest_rows(copy / "manifest.jsonl")
    lost, mate = rows[4], rows[5]
    assert lost["batch"] == mate["batch"] and lost["batch_size"] > 1
    # The mate's file now holds other pixels, as if another machine had rendered it.
    with Image.open(copy / mate["file"]) as im:
        params = read_parameters(copy / mate["file"])
        altered = png_bytes(Image.eval(im, lambda v: 255 - v), params)
    (copy / mate["file"]).unlink()
    rewritten = dict(mate, sha256=hashlib.sha256(altered).hexdigest())
    (copy / mate["file"]).write_bytes(altered)
    with (copy / "manifest.jsonl").open("a") as fh:
        fh.write(json.dumps(rewritten) + "\n")
    (copy / lost["file"]).unlink()
    report = generate_pool(spec(tiny), tiny_set, copy, runtime=CPU, progress=False)
    assert [r["file"] for r in report.generated] == [lost["file"]]
    assert report.drifted == [mate["file"]]


def test_a_lost_image_without_a_recorded_batch_is_rendered_in_a_new_one(
    pool: Path, tiny: TinyFiles, tiny_set: PromptSet, tmp_path: Path
) -> None:
    """A manifest written before batches were recorded: the image comes back, close."""
    copy = tmp_path / "pool"
    shutil.copytree(pool, copy)
    rows = [
        {k: v for k, v in r.items() if k not in BATCH_FIELDS}
        for r in read_manifest_rows(copy / "manifest.jsonl")
    ]
    (copy / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lost = rows[2]
    before = np.asarray(Image.open(copy / lost["file"])).astype(int)
    (copy / lost["file"]).unlink()
    report = generate_pool(spec(tiny), tiny_set, copy, batch_size=1, runtime=CPU, progress=False)
    [row] = report.generated
    assert (row["prompt"], row["seed"]) == (lost["prompt"], lost["seed"])
    assert row["batch_size"] == 1 and row["batch"] not in {r.get("batch") for r in rows}
    after = np.asarray(Image.open(copy / row["file"])).astype(int)
    assert np.abs(after - before).max() <= PIXEL_TOLERANCE["max"]
    assert read_parameters(copy / row["file"]).batch_size is None  # rendered alone
