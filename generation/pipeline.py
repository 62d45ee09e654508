"""Load an SDXL checkpoint offline and render images with recorded, reproducible settings.

A checkpoint is a single original-layout ``.safetensors`` file (how Illustrious models are
shared; it needs a local diffusers config folder to load offline) or a diffusers folder. A
hub is reached only when ``CheckpointSpec.allow_download`` says so.

Rendering follows the report's recommendations (Park et al. 2024, Illustrious): Euler a,
28 steps, CFG 6, sizes around one megapixel such as 832x1216, and, for high resolution, a
second img2img pass at a chosen strength over the upscaled first image. Prompts longer than
CLIP's 77 tokens are not cut: they are encoded in 75-token chunks whose embeddings are
concatenated (the A1111 web UI's method), and the pooled embedding is the first chunk's.
Each image has its own CPU ``torch.Generator`` seeded with its seed, so its noise depends on
its seed only, on any device and in any batch. Its pixels also depend, in the last bits, on
the batch it is rendered in and the machine (kernels sum in an order chosen by shape); see
:mod:`generation.pool` for what is bit-identical and what is close.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.errors import GenerationError
from generation.samplers import DEFAULT_SAMPLER, check_sampler, make_scheduler
from metrics.file_hash import sha256_path, short_hash

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionXLPipeline
    from PIL.Image import Image

__all__ = [
    "DEFAULT_CFG",
    "DEFAULT_SIZE",
    "DEFAULT_STEPS",
    "MAX_SIDE",
    "MIN_SIDE",
    "CheckpointSpec",
    "LoadedPipeline",
    "LoraSpec",
    "RenderSettings",
    "Runtime",
    "SecondPass",
    "load_pipeline",
    "model_hash",
    "pick_device_dtype",
]

DEFAULT_STEPS = 28
DEFAULT_CFG = 6.0
DEFAULT_SIZE = (832, 1216)  # width, height: one of SDXL's ~1 MP training buckets
MIN_SIDE, MAX_SIDE = 64, 4096
_SIZE_MULTIPLE = 8


@dataclass(frozen=True)
class SecondPass:
    """The report's high-resolution method: upscale the image by ``scale``, then img2img.

    ``strength`` is the img2img denoising strength (0 < strength <= 1); ``steps`` defaults to
    the first pass's steps.
    """

    strength: float
    scale: float = 1.5
    steps: int | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.strength <= 1.0:
            raise GenerationError(
                f"setting 'second_pass.strength': expected a number in (0, 1], got "
                f"{self.strength!r}"
            )
        if not 1.0 <= self.scale <= 4.0:
            raise GenerationError(
                f"setting 'second_pass.scale': expected a number in [1, 4], got {self.scale!r}"
            )
        if self.steps is not None and not 1 <= self.steps <= 1000:
            raise GenerationError(
                f"setting 'second_pass.steps': expected an integer in [1, 1000], got {self.steps!r}"
            )


@dataclass(frozen=True)
class RenderSettings:
    """Everything besides prompt and seed that decides an image; defaults are the report's."""

    negative_prompt: str = ""
    steps: int = DEFAULT_STEPS
    cfg: float = DEFAULT_CFG
    sampler: str = DEFAULT_SAMPLER
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    second_pass: SecondPass | None = None

    def __post_init__(self) -> None:
        check_sampler(self.sampler)
        for name in ("width", "height"):
            value = getattr(self, name)
            if (
                not isinstance(value, int)
                or not MIN_SIDE <= value <= MAX_SIDE
                or value % _SIZE_MULTIPLE
            ):
                raise GenerationError(
                    f"setting {name!r}: expected a multiple of {_SIZE_MULTIPLE} between "
                    f"{MIN_SIDE} and {MAX_SIDE}, got {value!r}"
                )
        if not isinstance(self.steps, int) or not 1 <= self.steps <= 1000:
            raise GenerationError(
                f"setting 'steps': expected an integer in [1, 1000], got {self.steps!r}"
            )
        if not isinstance(self.cfg, int | float) or not 0.0 <= self.cfg <= 50.0:
            raise GenerationError(f"setting 'cfg': expected a number in [0, 50], got {self.cfg!r}")

    @property
    def output_size(self) -> tuple[int, int]:
        """Width and height of the final image (after the second pass, if any)."""
        if self.second_pass is None:
            return self.width, self.height
        return _scaled(self.width, self.second_pass.scale), _scaled(
            self.height, self.second_pass.scale
        )


def _scaled(side: int, scale: float) -> int:
    return max(_SIZE_MULTIPLE, round(side * scale / _SIZE_MULTIPLE) * _SIZE_MULTIPLE)


@dataclass(frozen=True)
class Runtime:
    """Where and how a checkpoint runs.

    ``device`` and ``dtype`` (``fp32|fp16|bf16``) are chosen from what is available when
    ``None``. ``compile_unet`` compiles the UNet with ``torch.compile`` (with bf16 and the
    channels-last layout on CUDA): about 1.9x faster per SDXL image on an H100 after a first
    call of about 90 s, so it pays off over a pool of a hundred images or more.
    """

    device: str | None = None
    dtype: str | None = None
    compile_unet: bool = False


@dataclass(frozen=True)
class LoraSpec:
    """A LoRA ``.safetensors`` file applied (fused) to the checkpoint at ``scale``."""

    path: Path
    scale: float = 1.0


@dataclass(frozen=True)
class CheckpointSpec:
    """Where a checkpoint is and how to load it.

    ``path`` is a single ``.safetensors`` file or a diffusers folder; ``config_dir`` is the
    local diffusers folder (configs and tokenizers) that a single file needs to load offline;
    ``name`` is the name recorded with its images (the file or folder name if not given);
    ``sha256``, when the caller knows it (the registry does), saves hashing the file again.
    """

    path: Path
    name: str | None = None
    config_dir: Path | None = None
    lora: LoraSpec | None = None
    allow_download: bool = False
    sha256: str | None = None

    @property
    def display_name(self) -> str:
        """The checkpoint's name as recorded in image parameters and manifests."""
        return self.name or (self.path.stem if self.path.suffix else self.path.name)


def model_hash(path: Path) -> str:
    """The A1111 web UI's model hash: the first 10 hex digits of the file's SHA-256.

    For a diffusers folder the SHA-256 is taken over a listing of its files (each relative
    path and content hash, in sorted order), the same definition ``arena registry`` uses.
    """
    return short_hash(sha256_path(path))


def pick_device_dtype(
    device: str | None = None, dtype: str | None = None, compiled: bool = False
) -> tuple[torch.device, torch.dtype]:
    """The device to run on (a GPU if there is one) and its dtype (fp32 on the CPU).

    On CUDA the choice follows ``benchmarks/generation_overhead.py`` on an H100 (SDXL,
    1024x1024, 28 steps): eager fp16 took 2.0 s an image against 2.9 s for eager bf16, and
    a compiled bf16 UNet 1.16 s against 1.28 s compiled fp16 (whose VAE diffusers upcasts
    to fp32). So fp16 runs eager and bf16 compiled; bf16 is used where fp16 is unavailable.
    """
    import torch

    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    dev = torch.device(device)
    if dtype is not None:
        names = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if dtype not in names:
            raise GenerationError(f"dtype {dtype!r}: expected one of {', '.join(names)}")
        return dev, names[dtype]
    if dev.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return dev, torch.bfloat16 if bf16 and compiled else torch.float16
    if dev.type == "mps":
        return dev, torch.float16
    return dev, torch.float32


def _check_single_file(path: Path) -> None:
    from safetensors import safe_open

    if path.suffix != ".safetensors":
        raise GenerationError(
            f"checkpoint {path}: expected a .safetensors file or a diffusers folder"
        )
    try:
        with safe_open(str(path), framework="pt") as fh:
            keys = list(fh.keys())
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise GenerationError(
            f"checkpoint {path} is not a readable .safetensors file ({_one_line(exc)})"
        ) from exc
    if not any(k.startswith("model.diffusion_model.") for k in keys) or not any(
        k.startswith("conditioner.embedders.1.") for k in keys
    ):
        raise GenerationError(
            f"checkpoint {path} does not look like an SDXL checkpoint (no "
            "model.diffusion_model.* and conditioner.embedders.1.* weights)"
        )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:200] + "...") if len(text) > 200 else text or type(exc).__name__


def _load_diffusers(spec: CheckpointSpec, dtype: torch.dtype) -> StableDiffusionXLPipeline:
    from diffusers import StableDiffusionXLPipeline

    path = spec.path
    if not path.exists():
        raise GenerationError(f"checkpoint {path} does not exist")
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise GenerationError(
                f"checkpoint folder {path} has no model_index.json; expected a diffusers "
                "SDXL folder or a .safetensors file"
            )
        try:
            return StableDiffusionXLPipeline.from_pretrained(
                str(path), dtype=dtype, local_files_only=not spec.allow_download
            )
        except Exception as exc:
            raise GenerationError(
                f"checkpoint folder {path} could not be loaded ({_one_line(exc)})"
            ) from exc
    _check_single_file(path)
    config = spec.config_dir
    if config is None and not spec.allow_download:
        raise GenerationError(
            f"checkpoint {path} is a single file: give a local diffusers SDXL config folder "
            "(config_dir) to load it offline, or allow downloads"
        )
    if config is not None and not (config / "model_index.json").is_file():
        raise GenerationError(
            f"config folder {config} has no model_index.json; expected a diffusers SDXL "
            "folder with component configs and tokenizers"
        )
    try:
        return StableDiffusionXLPipeline.from_single_file(
            str(path),
            config=str(config) if config is not None else None,
            local_files_only=not spec.allow_download,
            dtype=dtype,
        )
    except Exception as exc:
        where = f"config folder {config}" if config is not None else "the hub's SDXL config"
        raise GenerationError(
            f"checkpoint {path} does not match {where} ({_one_line(exc)})"
        ) from exc


def load_pipeline(spec: CheckpointSpec, runtime: Runtime | None = None) -> LoadedPipeline:
    """Load ``spec`` as ``runtime`` says (by default: auto device and dtype, no compile).

    Raises ``GenerationError`` with a one-line message for a missing or unreadable
    checkpoint, a config folder that does not fit it, or a LoRA that does not apply.
    """
    import torch

    runtime = runtime or Runtime()
    dev, torch_dtype = pick_device_dtype(runtime.device, runtime.dtype, runtime.compile_unet)
    pipe = _load_diffusers(spec, torch_dtype)
    if spec.lora is not None:
        lora = spec.lora.path
        if not lora.is_file():
            raise GenerationError(f"LoRA {lora} does not exist")
        try:
            pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="lora")
            pipe.fuse_lora(lora_scale=spec.lora.scale)
            pipe.unload_lora_weights()  # the fused weights stay; the adapter layers go
        except Exception as exc:
            raise GenerationError(
                f"LoRA {lora} does not apply to checkpoint {spec.path} ({_one_line(exc)})"
            ) from exc
    pipe.to(dev)
    if runtime.compile_unet:
        # Channels-last slowed eager SDXL down by 10-13% on an H100, and sped it up compiled.
        if dev.type == "cuda":
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        pipe.unet = torch.compile(pipe.unet)
    pipe.set_progress_bar_config(disable=True)
    return LoadedPipeline(pipe, spec, dev)


def _chunks(tokenizer: Any, text: str) -> list[list[int]]:
    body = tokenizer.model_max_length - 2  # room for the start and end tokens
    # tokenize() neither adds start/end tokens nor warns about texts over 77 tokens
    ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text))
    return [ids[i : i + body] for i in range(0, len(ids), body)] or [[]]


def _chunk_tensor(tokenizer: Any, chunks: list[list[int]], n: int) -> torch.Tensor:
    import torch

    body = tokenizer.model_max_length - 2
    rows = []
    for chunk in chunks + [[]] * (n - len(chunks)):
        pad = [tokenizer.pad_token_id] * (body - len(chunk))
        rows.append([tokenizer.bos_token_id, *chunk, tokenizer.eos_token_id, *pad])
    return torch.tensor(rows)


class LoadedPipeline:
    """A loaded SDXL pipeline with its identity (name, hash) and the render function."""

    def __init__(self, pipe: StableDiffusionXLPipeline, spec: CheckpointSpec, device: Any):
        self.pipe = pipe
        self.spec = spec
        self.device = device
        self.name = spec.display_name
        self._hash: str | None = None
        # the checkpoint's own noise schedule, which every sampler is built on
        self.scheduler_config = dict(pipe.scheduler.config)
        self._img2img: Any = None

    @property
    def model_hash(self) -> str:
        """A1111-style model hash of the checkpoint file (computed once, on first use)."""
        if self._hash is None:
            known = self.spec.sha256
            self._hash = short_hash(known) if known else model_hash(self.spec.path)
        return self._hash

    def chunk_count(self, text: str) -> int:
        """How many 75-token chunks ``text`` is encoded in."""
        return max(len(_chunks(tok, text)) for tok in (self.pipe.tokenizer, self.pipe.tokenizer_2))

    def encode(
        self, prompts: Sequence[str], negative_prompt: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Chunked SDXL conditioning for ``prompts`` and the shared ``negative_prompt``.

        Returns prompt embeddings, pooled embeddings, and the negative pair, every prompt
        padded with empty chunks to the longest one. An empty negative prompt is "none":
        zeros when the pipeline is configured with ``force_zeros_for_empty_prompt`` (SDXL
        base is), as diffusers does.
        """
        import torch

        pipe = self.pipe
        encoders = [(pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)]
        texts = [*prompts, negative_prompt]
        chunks = [[_chunks(tok, t) for t in texts] for tok, _ in encoders]
        n = max(len(c) for per_encoder in chunks for c in per_encoder)
        parts = []
        with torch.inference_mode():
            for (tok, enc), per_text in zip(encoders, chunks, strict=True):
                ids = torch.cat([_chunk_tensor(tok, c, n) for c in per_text]).to(enc.device)
                out = enc(ids, output_hidden_states=True)
                if out[0].ndim == 2:  # the projected encoder's pooled text embedding
                    pooled = out[0].reshape(len(texts), n, -1)[:, 0]
                # SDXL conditions on the penultimate layer; a text's chunks follow one another.
                hidden = out.hidden_states[-2]
                parts.append(hidden.reshape(len(texts), -1, hidden.shape[-1]))
        embeds = torch.cat(parts, dim=-1)
        dtype = pipe.unet.dtype
        prompt_embeds = embeds[:-1].to(self.device, dtype)
        pooled_embeds = pooled[:-1].to(self.device, dtype)
        neg, neg_pooled = embeds[-1:], pooled[-1:]
        if not negative_prompt and pipe.config.force_zeros_for_empty_prompt:
            neg, neg_pooled = torch.zeros_like(neg), torch.zeros_like(neg_pooled)
        count = len(prompts)
        return (
            prompt_embeds,
            pooled_embeds,
            neg.expand(count, -1, -1).to(self.device, dtype),
            neg_pooled.expand(count, -1).to(self.device, dtype),
        )

    def render(
        self, prompts: Sequence[str], seeds: Sequence[int], settings: RenderSettings
    ) -> list[Image]:
        """Render one image per (prompt, seed) pair in one batch."""
        import torch

        if len(prompts) != len(seeds):
            raise ValueError("render needs one seed per prompt")
        # Padding a prompt with empty chunks changes its image, so a batch never mixes
        # chunk counts: each image stays what it would be alone, up to float rounding.
        negative_chunks = self.chunk_count(settings.negative_prompt)
        if len({max(self.chunk_count(p), negative_chunks) for p in prompts}) > 1:
            raise ValueError("render batches only prompts of the same chunk count")
        pe, pooled, npe, npooled = self.encode(prompts, settings.negative_prompt)

        def generators() -> list[torch.Generator]:
            return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]

        with _diffusers_errors_only():
            pipe = self.pipe
            pipe.scheduler = make_scheduler(settings.sampler, self.scheduler_config)
            images = pipe(
                prompt_embeds=pe,
                pooled_prompt_embeds=pooled,
                negative_prompt_embeds=npe,
                negative_pooled_prompt_embeds=npooled,
                num_inference_steps=settings.steps,
                guidance_scale=settings.cfg,
                width=settings.width,
                height=settings.height,
                generator=generators(),
            ).images
            second = settings.second_pass
            if second is None:
                return images
            from PIL import Image as PILImage

            size = settings.output_size
            upscaled = [im.resize(size, PILImage.Resampling.LANCZOS) for im in images]
            img2img = self._img2img_pipe()
            img2img.scheduler = make_scheduler(settings.sampler, self.scheduler_config)
            return img2img(
                image=upscaled,
                prompt_embeds=pe,
                pooled_prompt_embeds=pooled,
                negative_prompt_embeds=npe,
                negative_pooled_prompt_embeds=npooled,
                strength=second.strength,
                num_inference_steps=second.steps or settings.steps,
                guidance_scale=settings.cfg,
                width=size[0],
                height=size[1],
                generator=generators(),
            ).images

    def _img2img_pipe(self) -> Any:
        if self._img2img is None:
            from diffusers import StableDiffusionXLImg2ImgPipeline

            self._img2img = StableDiffusionXLImg2ImgPipeline.from_pipe(self.pipe)
            self._img2img.set_progress_bar_config(disable=True)
        return self._img2img


@contextmanager
def _diffusers_errors_only() -> Iterator[None]:
    """Show only diffusers' errors while rendering.

    In fp16 it warns on every call that it moves SDXL's VAE to fp32 and back (the VAE's
    ``force_upcast``), and ``from_pipe`` warns that it re-casts shared modules; both are
    expected here.
    """
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)
