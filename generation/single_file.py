"""Write an SDXL pipeline as one original-layout ``.safetensors`` file, plus its config folder.

Illustrious checkpoints are shared as single files in the layout of Stability AI's
``generative-models`` code (``model.diffusion_model.*`` for the UNet, ``first_stage_model.*``
for the VAE, ``conditioner.embedders.0.transformer.*`` for CLIP ViT-L and
``conditioner.embedders.1.model.*`` for OpenCLIP ViT-bigG). diffusers reads that layout with
``from_single_file``; this module writes it, so the tiny offline checkpoints used by the tests
and by ``arena demo`` go through the same loading path as a user's file. The renames are the
inverse of the layout differences: the UNet's numbered ``input_blocks`` / ``middle_block`` /
``output_blocks`` against diffusers' ``down_blocks`` / ``mid_block`` / ``up_blocks``, the VAE
decoder's reversed ``up`` numbering and 1x1-convolution attention, and OpenCLIP's fused
``in_proj`` attention weights and transposed ``text_projection``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionXLPipeline

__all__ = ["original_state_dict", "save_single_file", "write_config_folder"]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
CLIP_G_PREFIX = "conditioner.embedders.1.model."

_RESNET_UNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTN = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
_CLIP_G_LAYER = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def _rename_head(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def _unet_key(key: str, config: Any) -> str:
    per_down = config.layers_per_block + 1  # resnets + downsampler per level
    for old, new in _UNET_TOP.items():
        if key.startswith(old + "."):
            return new + key[len(old) :]
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = 1 + i * per_down + j
        if kind == "resnets":
            return f"input_blocks.{idx}.0.{_rename_head(rest, _RESNET_UNET)}"
        return f"input_blocks.{idx}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        idx = 1 + int(m[1]) * per_down + config.layers_per_block
        return f"input_blocks.{idx}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_rename_head(m[2], _RESNET_UNET)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = i * per_down + j
        if kind == "resnets":
            return f"output_blocks.{idx}.0.{_rename_head(rest, _RESNET_UNET)}"
        return f"output_blocks.{idx}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        i = int(m[1])
        idx = i * per_down + config.layers_per_block
        slot = 2 if "CrossAttn" in config.up_block_types[i] else 1
        return f"output_blocks.{idx}.{slot}.conv.{m[2]}"
    raise ValueError(f"UNet weight {key!r} has no place in the original SDXL layout")


def _vae_key(key: str, n_blocks: int) -> str:
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        rest = _rename_head(m[3], {"conv_shortcut": "nin_shortcut"})
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{rest}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        return f"{m[1]}.mid.attn_1.{_rename_head(m[2], _VAE_ATTN)}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        rest = _rename_head(m[3], {"conv_shortcut": "nin_shortcut"})
        return f"encoder.down.{m[1]}.block.{m[2]}.{rest}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    # The original decoder numbers its levels from the lowest resolution up.
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        rest = _rename_head(m[3], {"conv_shortcut": "nin_shortcut"})
        return f"decoder.up.{n_blocks - 1 - int(m[1])}.block.{m[2]}.{rest}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{n_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.fullmatch(r"(encoder|decoder)\.conv_norm_out\.(.+)", key):
        return f"{m[1]}.norm_out.{m[2]}"
    return key  # conv_in, conv_out, quant_conv, post_quant_conv keep their names


def _with_text_model(key: str) -> str:
    # transformers >= 5.6 flattens CLIPTextModel; the original layout keeps ``text_model.``.
    return key if key.startswith(("text_model.", "text_projection")) else "text_model." + key


def _clip_g_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    import torch

    sd = {_with_text_model(k): v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {
        "token_embedding.weight": sd.pop("text_model.embeddings.token_embedding.weight"),
        "positional_embedding": sd.pop("text_model.embeddings.position_embedding.weight"),
        "ln_final.weight": sd.pop("text_model.final_layer_norm.weight"),
        "ln_final.bias": sd.pop("text_model.final_layer_norm.bias"),
        # OpenCLIP multiplies ``x @ text_projection``; a torch Linear stores the transpose.
        "text_projection": sd.pop("text_projection.weight").T.contiguous(),
    }
    layers = sorted(
        {int(m[1]) for k in sd if (m := re.match(r"text_model\.encoder\.layers\.(\d+)\.", k))}
    )
    for i in layers:
        src = f"text_model.encoder.layers.{i}."
        dst = f"transformer.resblocks.{i}."
        for part in ("weight", "bias"):
            out[dst + f"attn.in_proj_{part}"] = torch.cat(
                [sd.pop(src + f"self_attn.{p}_proj.{part}") for p in ("q", "k", "v")]
            )
        for key in [k for k in sd if k.startswith(src)]:
            out[dst + _rename_head(key[len(src) :], _CLIP_G_LAYER)] = sd.pop(key)
    if sd:
        raise ValueError(f"text_encoder_2 weights with no original name: {sorted(sd)[:3]}")
    return out


def original_state_dict(pipe: StableDiffusionXLPipeline) -> dict[str, torch.Tensor]:
    """All of an SDXL pipeline's weights under their original single-file names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in pipe.unet.state_dict().items():
        out[UNET_PREFIX + _unet_key(key, pipe.unet.config)] = value
    n_vae = len(pipe.vae.config.down_block_types)
    for key, value in pipe.vae.state_dict().items():
        new = _vae_key(key, n_vae)
        # The original VAE attention uses 1x1 convolutions where diffusers uses Linear layers.
        if ".mid.attn_1." in new and new.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[VAE_PREFIX + new] = value
    for key, value in pipe.text_encoder.state_dict().items():
        out[CLIP_L_PREFIX + _with_text_model(key)] = value
    for key, value in _clip_g_state(dict(pipe.text_encoder_2.state_dict())).items():
        out[CLIP_G_PREFIX + key] = value
    return out


def save_single_file(pipe: StableDiffusionXLPipeline, path: Path) -> Path:
    """Write ``pipe``'s weights as one original-layout ``.safetensors`` checkpoint at ``path``."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in original_state_dict(pipe).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def write_config_folder(pipe: StableDiffusionXLPipeline, folder: Path) -> Path:
    """Write the diffusers folder ``from_single_file(config=...)`` needs, without weights.

    ``model_index.json``, each component's config and the tokenizer files: enough to load any
    single-file checkpoint of the same architecture offline.
    """
    from diffusers.configuration_utils import ConfigMixin

    folder.mkdir(parents=True, exist_ok=True)
    pipe.save_config(str(folder))
    for name, component in pipe.components.items():
        if component is None:
            continue
        target = folder / name
        if isinstance(component, ConfigMixin):
            component.save_config(str(target))
        elif hasattr(component, "save_vocabulary"):  # a tokenizer
            component.save_pretrained(str(target))
        else:  # a transformers model: its config only
            component.config.save_pretrained(str(target))
    return folder
