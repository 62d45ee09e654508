"""Tiny SDXL pipelines with random weights, built offline from configs.

The architecture is SDXL's (two CLIP text encoders, a text-time conditioned UNet, a KL VAE)
at toy widths, so a 64x64 image in two steps takes a fraction of a second on a CPU. It is
large enough in the places where diffusers' single-file loader recognises SDXL: a UNet with
three levels, a VAE with four, a second text encoder of ten layers, and two text encoders of
different widths. The tokenizer is CLIP's byte-level BPE with no merges (one token per
character), written to disk so nothing is downloaded. Tests, benchmarks and ``arena demo``
use these pipelines; each ``seed`` gives different weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from generation.single_file import save_single_file, write_config_folder

if TYPE_CHECKING:
    from diffusers import StableDiffusionXLPipeline

__all__ = ["TinyCheckpoint", "build_tiny_pipeline", "write_tiny_checkpoint", "write_tokenizer"]

VOCAB_SIZE = 514  # 256 bytes, the same 256 ending a word, start and end of text
BOS_ID, EOS_ID = 512, 513
CLIP_L_WIDTH, CLIP_G_WIDTH, PROJECTION_DIM = 32, 48, 32
TIME_EMBED_DIM = 8

# SDXL base's noise schedule (Podell et al. 2023), as its scheduler config states it.
SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}


def write_tokenizer(folder: Path) -> Path:
    """Write a byte-level CLIP tokenizer (``vocab.json``, ``merges.txt``) to ``folder``."""
    from tokenizers.pre_tokenizers import ByteLevel

    folder.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(ByteLevel.alphabet())
    tokens = [*alphabet, *(c + "</w>" for c in alphabet), "<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder


def _text_config(width: int, layers: int):  # -> CLIPTextConfig
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=EOS_ID,
        vocab_size=VOCAB_SIZE,
        hidden_size=width,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=layers,
        max_position_embeddings=77,
        hidden_act="gelu",
        projection_dim=PROJECTION_DIM,
    )


def build_tiny_pipeline(
    seed: int = 0, tokenizer_dir: Path | None = None
) -> StableDiffusionXLPipeline:
    """A tiny SDXL pipeline whose random weights are fixed by ``seed`` (fp32, on the CPU).

    ``tokenizer_dir`` is where the tokenizer files go (a temporary folder if not given).
    """
    import tempfile

    import torch
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(4, 8, 16),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4, 8),
            transformer_layers_per_block=(1, 1, 2),
            use_linear_projection=True,
            norm_num_groups=2,
            cross_attention_dim=CLIP_L_WIDTH + CLIP_G_WIDTH,
            addition_embed_type="text_time",
            addition_time_embed_dim=TIME_EMBED_DIM,
            # six micro-conditioning numbers (sizes, crop, target size) plus the pooled text
            projection_class_embeddings_input_dim=6 * TIME_EMBED_DIM + PROJECTION_DIM,
        )
        vae = AutoencoderKL(
            block_out_channels=(8, 16, 16, 16),
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            latent_channels=4,
            layers_per_block=2,
            norm_num_groups=8,
            sample_size=64,
            scaling_factor=0.13025,
        )
        text_encoder = CLIPTextModel(_text_config(CLIP_L_WIDTH, 5))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(CLIP_G_WIDTH, 10))
    folder = tokenizer_dir or Path(tempfile.mkdtemp(prefix="tiny-sdxl-tokenizer-"))
    tokenizer = CLIPTokenizer.from_pretrained(str(write_tokenizer(folder)), model_max_length=77)
    pipe = StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet.eval(),
        scheduler=EulerDiscreteScheduler(**SCHEDULER_CONFIG),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass(frozen=True)
class TinyCheckpoint:
    """Paths of a tiny checkpoint written to disk: the single file and its config folder."""

    checkpoint: Path
    config_dir: Path


def write_tiny_checkpoint(path: Path, seed: int, config_dir: Path) -> TinyCheckpoint:
    """Write a tiny SDXL checkpoint as one original-layout ``.safetensors`` file at ``path``.

    ``config_dir`` receives the local diffusers config folder (configs and tokenizer, no
    weights) that loads it offline; every tiny checkpoint can share one.
    """
    pipe = build_tiny_pipeline(seed, tokenizer_dir=config_dir / "tokenizer")
    if not (config_dir / "model_index.json").is_file():
        write_config_folder(pipe, config_dir)
    save_single_file(pipe, path)
    return TinyCheckpoint(path, config_dir)
