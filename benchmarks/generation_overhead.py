"""Pool generation overhead against bare diffusers calls, and SDXL speed-ups on a GPU.

1. Overhead (any machine): a tiny SDXL checkpoint (``tests.support.tiny_sdxl``) is loaded once,
   then the same images (``--prompts`` prompts of the default set x ``--seeds`` seeds,
   ``--size`` px, ``--steps`` steps, Euler a, CFG 6, batches of ``--batch-size``) are made
   ``--rounds`` times each way, alternating: (a) bare ``pipe(prompt=..., negative_prompt=...,
   generator=[...])`` calls that return PIL images, (b) ``generate_pool`` into a fresh folder
   (chunked prompt encoding, PNGs with parameters written under their hash, manifest).
   Printed: median seconds per image of each and the overhead (b / a - 1); target <= 10%.
   With CUDA available this runs once more on the GPU, as ``load_pipeline`` sets it up.
2. GPU (only where CUDA is available): an SDXL-sized pipeline (SDXL base's architecture,
   random weights: nothing is downloaded) at 1024x1024, 28 steps, batch 1:
   plain diffusers fp16 defaults (which already pick PyTorch SDPA attention), the same with
   the classic attention processor (what SDPA saves), bf16 + channels-last, and bf16 +
   channels-last + ``torch.compile``d UNet (compile time reported apart); then section 1's
   comparison on the optimised SDXL pipeline. Printed: seconds per image and speed-ups.

    python benchmarks/generation_overhead.py [--prompts 8] [--seeds 2] [--size 64]
        [--steps 4] [--batch-size 4] [--rounds 3] [--threads 1] [--gpu-images 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from generation.pipeline import (
    CheckpointSpec,
    LoadedPipeline,
    RenderSettings,
    Runtime,
    load_pipeline,
)
from generation.pool import generate_pool, pool_items
from generation.prompt_sets import PromptEntry, PromptSet, default_prompt_set
from generation.samplers import make_scheduler


def _short_set(count: int, seeds: int, settings: RenderSettings) -> PromptSet:
    """``count`` default-set prompts cut to one 75-token chunk of the tiny byte tokenizer.

    A bare diffusers call truncates at 77 tokens where the pool encodes every chunk, so
    both sides get prompts that fit one chunk to make the same images.
    """
    full = default_prompt_set()
    entries = []
    for entry in full.entries[:count]:
        tags: list[str] = []
        for tag in entry.prompt.split(", "):
            if len(", ".join([*tags, tag])) > 70:
                break
            tags.append(tag)
        entries.append(PromptEntry(entry.kind, ", ".join(tags), entry.character))
    return replace(full, entries=tuple(entries), seeds=tuple(range(seeds)), settings=settings)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bare(loaded: LoadedPipeline, ps: PromptSet, batch: int) -> Callable[[], None]:
    """Bare diffusers calls for every (prompt, seed) of ``ps``, ``batch`` at a time."""
    items = pool_items(ps)
    s = ps.settings
    pipe = loaded.pipe

    def run() -> None:
        pipe.scheduler = make_scheduler(s.sampler, loaded.scheduler_config)
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            pipe(
                prompt=[i.entry.prompt for i in chunk],
                negative_prompt=[s.negative_prompt] * len(chunk),
                generator=[torch.Generator("cpu").manual_seed(i.seed) for i in chunk],
                num_inference_steps=s.steps,
                guidance_scale=s.cfg,
                width=s.width,
                height=s.height,
            )
        _sync(loaded.device)

    return run


def _pool(loaded: LoadedPipeline, ps: PromptSet, batch: int, root: Path) -> Callable[[], None]:
    count = [0]

    def run() -> None:
        count[0] += 1
        out = root / f"pool-{count[0]}"
        report = generate_pool(loaded, ps, out, batch_size=batch, progress=False)
        assert len(report.generated) == len(pool_items(ps))
        _sync(loaded.device)

    return run


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(loaded: LoadedPipeline, ps: PromptSet, batch: int, rounds: int, label: str) -> float:
    """Print and return the pool's overhead per image against bare calls (same run)."""
    n = len(pool_items(ps))
    with tempfile.TemporaryDirectory() as tmp:
        bare, pool = _bare(loaded, ps, batch), _pool(loaded, ps, batch, Path(tmp))
        bare(), pool()  # warm-up: allocator, kernels, lazy imports
        bare_t, pool_t = [], []
        for _ in range(rounds):
            bare_t.append(_timed(bare) / n)
            pool_t.append(_timed(pool) / n)
    b, p = statistics.median(bare_t), statistics.median(pool_t)
    overhead = p / b - 1
    print(
        f"[{label}] {n} images/round, {rounds} rounds: bare diffusers {b * 1000:.1f} ms/image, "
        f"pool generator {p * 1000:.1f} ms/image, overhead {overhead * 100:+.1f}% "
        f"({'within' if overhead <= 0.10 else 'over'} the 10% target)"
    )
    return overhead


def overhead_section(args: argparse.Namespace, runtime: Runtime) -> None:
    from tests.support.tiny_sdxl import write_tiny_checkpoint

    settings = replace(
        default_prompt_set().settings,
        width=args.size,
        height=args.size,
        steps=args.steps,
        sampler="Euler a",
        negative_prompt="worst quality, bad quality, lowres",
    )
    ps = _short_set(args.prompts, args.seeds, settings)
    with tempfile.TemporaryDirectory() as tmp:
        written = write_tiny_checkpoint(
            Path(tmp) / "tiny.safetensors", seed=0, config_dir=Path(tmp) / "config"
        )
        spec = CheckpointSpec(written.checkpoint, config_dir=written.config_dir)
        loaded = load_pipeline(spec, runtime)
        where = f"{loaded.device} {loaded.pipe.unet.dtype}"
        print(
            f"tiny SDXL on {where} ({torch.get_num_threads()} CPU thread(s)), "
            f"{args.size}x{args.size}, {args.steps} steps, batch {args.batch_size}"
        )
        compare(loaded, ps, args.batch_size, args.rounds, f"tiny, {where}")


def _sdxl(device: torch.device, dtype: torch.dtype):  # -> StableDiffusionXLPipeline
    """SDXL base's architecture (Podell et al. 2023) with random weights, on ``device``."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModel,
        CLIPTextModelWithProjection,
        CLIPTokenizer,
    )

    from tests.support.tiny_sdxl import BOS_ID, EOS_ID, SCHEDULER_CONFIG, write_tokenizer

    def text(width: int, layers: int, heads: int, act: str) -> CLIPTextConfig:
        return CLIPTextConfig(
            vocab_size=49408,
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            max_position_embeddings=77,
            hidden_act=act,
            projection_dim=width,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            pad_token_id=EOS_ID,
        )

    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(
            sample_size=128,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            cross_attention_dim=2048,
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            sample_size=1024,
            scaling_factor=0.13025,
            force_upcast=True,
        )
        text_encoder = CLIPTextModel(text(768, 12, 12, "quick_gelu"))
        text_encoder_2 = CLIPTextModelWithProjection(text(1280, 32, 20, "gelu"))
    tokenizer = CLIPTokenizer.from_pretrained(
        str(write_tokenizer(Path(tempfile.mkdtemp()) / "tokenizer")), model_max_length=77
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SCHEDULER_CONFIG),
    )
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def gpu_section(
    args: argparse.Namespace,
    device: torch.device,
    build: Callable[[torch.device, torch.dtype], Any] = _sdxl,
    size: int = 1024,
) -> None:
    """Time the variants on ``device``; ``build`` and ``size`` exist for a dry run on a CPU."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    print(f"device: {name}, torch {torch.__version__}")
    prompt = "1girl, hatsune miku, general, angel, looking at viewer, masterpiece"
    negative = "worst quality, bad quality, lowres"

    def per_image(pipe, n: int) -> float:  # type: ignore[no-untyped-def]
        def call() -> None:
            pipe(
                prompt=prompt,
                negative_prompt=negative,
                num_inference_steps=28,
                guidance_scale=6.0,
                width=size,
                height=size,
                generator=torch.Generator("cpu").manual_seed(0),
            )
            _sync(device)

        return statistics.median(_timed(call) for _ in range(n))

    results: dict[str, float] = {}
    pipe = build(device, torch.float16)
    per_image(pipe, 1)  # warm-up
    results["fp16, diffusers defaults (SDPA)"] = per_image(pipe, args.gpu_images)
    pipe.unet.set_attn_processor(AttnProcessor())
    pipe.vae.set_attn_processor(AttnProcessor())
    per_image(pipe, 1)
    results["fp16, classic attention"] = per_image(pipe, args.gpu_images)
    pipe.unet.set_attn_processor(AttnProcessor2_0())
    pipe.vae.set_attn_processor(AttnProcessor2_0())
    pipe.to(dtype=torch.bfloat16)
    pipe.unet.to(memory_format=torch.channels_last)
    pipe.vae.to(memory_format=torch.channels_last)
    per_image(pipe, 1)
    results["bf16 + SDPA + channels-last"] = per_image(pipe, args.gpu_images)
    pipe.unet = torch.compile(pipe.unet)
    compile_s = _timed(lambda: per_image(pipe, 1))
    results["bf16 + SDPA + channels-last + compiled UNet"] = per_image(pipe, args.gpu_images)

    base = results["fp16, diffusers defaults (SDPA)"]
    print(
        f"SDXL-sized random weights, {size}x{size}, 28 steps, CFG 6, batch 1, "
        f"{args.gpu_images} timed"
    )
    for name, seconds in results.items():
        print(f"  {name:<45} {seconds:6.3f} s/image  speed-up x{base / seconds:.2f}")
    print(f"  first compiled call (compile + one image): {compile_s:.1f} s")

    spec = CheckpointSpec(Path("random-sdxl"), name="random-sdxl", sha256="0" * 64)
    loaded = LoadedPipeline(pipe, spec, device)
    settings = RenderSettings(negative_prompt=negative, width=size, height=size, steps=28)
    ps = _short_set(2, 2, settings)
    compare(loaded, ps, 1, 1, "SDXL-sized, GPU, bf16 + compiled UNet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--gpu-images", type=int, default=3, help="timed images per GPU variant")
    parser.add_argument("--skip-cpu", action="store_true", help="run the GPU section only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.skip_cpu:
        overhead_section(args, Runtime(device="cpu"))
    if torch.cuda.is_available():
        overhead_section(args, Runtime())  # the load path's own GPU choice (eager fp16)
        gpu_section(args, torch.device("cuda"))
    else:
        print("GPU section skipped: CUDA is not available on this machine")


if __name__ == "__main__":
    main()
