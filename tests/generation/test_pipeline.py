"""Loading tiny SDXL checkpoints offline and rendering reproducible images from them."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline

from generation.errors import GenerationError
from generation.pipeline import (
    CheckpointSpec,
    LoadedPipeline,
    LoraSpec,
    RenderSettings,
    SecondPass,
    load_pipeline,
    model_hash,
    pick_device_dtype,
)
from generation.samplers import SAMPLERS, make_scheduler
from generation.single_file import original_state_dict
from tests.support.generation import CPU, TinyFiles, pixels


def test_single_file_has_the_original_sdxl_layout(loaded: LoadedPipeline) -> None:
    keys = set(original_state_dict(loaded.pipe))
    # the keys diffusers' loader looks for to recognise an SDXL base checkpoint
    assert "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias" in keys
    assert (
        "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight"
        in keys
    )
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    # the original decoder numbers its levels from full resolution (no upsampler) down
    assert "first_stage_model.decoder.up.3.upsample.conv.weight" in keys
    assert "first_stage_model.decoder.up.0.upsample.conv.weight" not in keys
    assert all(k.split(".")[0] in {"model", "first_stage_model", "conditioner"} for k in keys)


def test_single_file_and_folder_give_identical_images(
    tiny: TinyFiles, loaded: LoadedPipeline, tiny_settings: RenderSettings
) -> None:
    folder = load_pipeline(CheckpointSpec(tiny.folder), CPU)
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        a, b = getattr(loaded.pipe, name).state_dict(), getattr(folder.pipe, name).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    prompts, seeds = ["1girl, hatsune miku, general", "1boy, general"], [3, 4]
    assert np.array_equal(
        pixels(loaded.render(prompts, seeds, tiny_settings)),
        pixels(folder.render(prompts, seeds, tiny_settings)),
    )


def test_same_seed_same_pixels_other_seed_other_pixels(
    loaded: LoadedPipeline, tiny_settings: RenderSettings
) -> None:
    first = pixels(loaded.render(["1girl, smile"] * 2, [7, 8], tiny_settings))
    again = pixels(loaded.render(["1girl, smile"] * 2, [7, 8], tiny_settings))
    assert np.array_equal(first, again)
    assert not np.array_equal(first[0], first[1])
    assert first.shape == (2, 64, 64, 3)
    # in a batch of another size, an image stays the same up to float summation order
    alone = pixels(loaded.render(["1girl, smile"], [8], tiny_settings))
    assert np.abs(alone[0].astype(int) - first[1].astype(int)).max() <= 2


def test_short_prompts_condition_as_diffusers_does(
    loaded: LoadedPipeline, tiny_settings: RenderSettings
) -> None:
    pipe = loaded.pipe
    ours = loaded.encode(["1girl, hatsune miku"], "worst quality")
    theirs = pipe.encode_prompt(
        "1girl, hatsune miku", negative_prompt="worst quality", device=torch.device("cpu")
    )
    embeds, negative, pooled, negative_pooled = theirs  # diffusers' order
    for a, b in zip(ours, (embeds, pooled, negative, negative_pooled), strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b)
    # no negative prompt: zeros, as SDXL's force_zeros_for_empty_prompt asks
    _, _, neg, neg_pooled = loaded.encode(["1girl"], "")
    assert not neg.any() and not neg_pooled.any()


def test_long_prompts_are_chunked_not_cut(
    loaded: LoadedPipeline, tiny_settings: RenderSettings
) -> None:
    head = "1girl, general, " + ", ".join(f"tag{i}" for i in range(14))  # 107 characters
    assert loaded.chunk_count(head) == 2  # one token per character with the tiny tokenizer
    embeds, _, neg, _ = loaded.encode([head], "worst quality")
    assert embeds.shape[1] == neg.shape[1] == 2 * 77
    # the words after the 75th token change the conditioning and the image
    other = head[:-1] + "9"
    changed, _, _, _ = loaded.encode([other], "worst quality")
    assert torch.equal(changed[:, :77], embeds[:, :77])
    assert not torch.equal(changed[:, 77:], embeds[:, 77:])
    images = pixels(loaded.render([head], [1], tiny_settings))
    assert not np.array_equal(images, pixels(loaded.render([other], [1], tiny_settings)))
    with pytest.raises(ValueError, match="same chunk count"):
        loaded.render([head, "1girl"], [1, 2], tiny_settings)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_renders(
    loaded: LoadedPipeline, tiny_settings: RenderSettings, sampler: str
) -> None:
    settings = dataclasses.replace(tiny_settings, sampler=sampler)
    image = loaded.render(["1girl"], [0], settings)[0]
    assert image.size == (64, 64)
    scheduler = make_scheduler(sampler, loaded.pipe.scheduler.config)
    assert scheduler.config.get("use_karras_sigmas", False) == sampler.endswith("Karras")


def test_second_pass_upscales_and_refines(
    loaded: LoadedPipeline, tiny_settings: RenderSettings
) -> None:
    settings = dataclasses.replace(tiny_settings, second_pass=SecondPass(strength=0.5, scale=1.5))
    assert settings.output_size == (96, 96)
    first = loaded.render(["1girl"], [2], settings)
    assert first[0].size == (96, 96)
    assert np.array_equal(pixels(first), pixels(loaded.render(["1girl"], [2], settings)))


def test_device_and_dtype_on_cpu() -> None:
    assert pick_device_dtype("cpu") == (torch.device("cpu"), torch.float32)
    assert pick_device_dtype("cpu", "bf16") == (torch.device("cpu"), torch.bfloat16)
    with pytest.raises(GenerationError, match="dtype 'fp8': expected one of fp32, fp16, bf16"):
        pick_device_dtype("cpu", "fp8")


def test_model_hash_is_the_web_ui_short_sha256(tiny: TinyFiles) -> None:
    import hashlib

    assert (
        model_hash(tiny.single_file)
        == hashlib.sha256(tiny.single_file.read_bytes()).hexdigest()[:10]
    )
    assert len(model_hash(tiny.folder)) == 10


def _lora(tmp_path: Path, pipe: StableDiffusionXLPipeline) -> Path:
    from peft import LoraConfig, get_peft_model_state_dict

    unet = pipe.unet
    unet.add_adapter(
        LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    )
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn_like(param) * 0.5)
    state = get_peft_model_state_dict(unet)
    StableDiffusionXLPipeline.save_lora_weights(str(tmp_path), unet_lora_layers=state)
    return tmp_path / "pytorch_lora_weights.safetensors"


def test_lora_changes_the_image_and_scale_zero_does_not(
    tiny: TinyFiles, loaded: LoadedPipeline, tmp_path: Path, tiny_settings: RenderSettings
) -> None:
    from tests.support.tiny_sdxl import build_tiny_pipeline

    lora = _lora(tmp_path, build_tiny_pipeline(1, tokenizer_dir=tmp_path / "tok"))
    base = CheckpointSpec(tiny.single_file, config_dir=tiny.config_dir)
    plain = pixels(loaded.render(["1girl"], [0], tiny_settings)).astype(int)
    strong = load_pipeline(dataclasses.replace(base, lora=LoraSpec(lora, 1.0)), CPU)
    off = load_pipeline(dataclasses.replace(base, lora=LoraSpec(lora, 0.0)), CPU)
    assert np.abs(plain - pixels(strong.render(["1girl"], [0], tiny_settings))).mean() > 1.0
    # at scale 0 the fused weights are the base weights; kernels may still sum differently
    weights, fused = loaded.pipe.unet.state_dict(), off.pipe.unet.state_dict()
    assert all(torch.equal(weights[k], fused[k]) for k in weights)
    assert np.abs(plain - pixels(off.render(["1girl"], [0], tiny_settings))).max() <= 2
    with pytest.raises(GenerationError, match=r"LoRA .*missing\.safetensors does not exist"):
        load_pipeline(
            dataclasses.replace(base, lora=LoraSpec(tmp_path / "missing.safetensors")), CPU
        )


# ---- errors a user can cause: one line, naming the input ----


def _one_line(spec: CheckpointSpec, match: str) -> None:
    with pytest.raises(GenerationError, match=match) as caught:
        load_pipeline(spec, CPU)
    assert "\n" not in str(caught.value)


def test_missing_checkpoint(tmp_path: Path) -> None:
    _one_line(
        CheckpointSpec(tmp_path / "nope.safetensors"),
        "checkpoint .*nope.safetensors does not exist",
    )


def test_corrupt_checkpoint(tiny: TinyFiles, tmp_path: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(tiny.single_file.read_bytes()[:4000])
    _one_line(
        CheckpointSpec(broken, config_dir=tiny.config_dir),
        "checkpoint .*broken.safetensors is not a readable .safetensors file",
    )


def test_not_an_sdxl_checkpoint(tiny: TinyFiles, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(other))
    _one_line(
        CheckpointSpec(other, config_dir=tiny.config_dir), "does not look like an SDXL checkpoint"
    )
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"\x80\x04")
    _one_line(CheckpointSpec(pickle), "expected a .safetensors file or a diffusers folder")


def test_single_file_needs_a_config_folder_offline(tiny: TinyFiles) -> None:
    _one_line(CheckpointSpec(tiny.single_file), "give a local diffusers SDXL config folder")


def test_config_folder_without_model_index(tiny: TinyFiles, tmp_path: Path) -> None:
    _one_line(CheckpointSpec(tiny.single_file, config_dir=tmp_path), "has no model_index.json")
    _one_line(CheckpointSpec(tmp_path), "checkpoint folder .* has no model_index.json")


def test_config_folder_that_does_not_match(tiny: TinyFiles, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong-config"
    shutil.copytree(tiny.config_dir, wrong)
    unet_config = wrong / "unet" / "config.json"
    data = json.loads(unet_config.read_text())
    data["block_out_channels"] = [8, 16, 32]
    unet_config.write_text(json.dumps(data))
    _one_line(
        CheckpointSpec(tiny.single_file, config_dir=wrong),
        "checkpoint .*tiny-a.safetensors does not match config folder .*wrong-config",
    )


def test_out_of_range_size_and_unknown_sampler() -> None:
    with pytest.raises(GenerationError, match="setting 'width': expected a multiple of 8"):
        RenderSettings(width=30)
    with pytest.raises(GenerationError, match=r"setting 'height'.*got 4104"):
        RenderSettings(height=4104)
    with pytest.raises(GenerationError, match="unknown sampler 'DDIM'"):
        RenderSettings(sampler="DDIM")
