"""The training-config model: the knobs of the Illustrious report (Table 5 and section 3.2).

A config is loaded from YAML or JSON, validated field by field, and identified by a content
hash so the same configuration registered twice is stored once.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from metrics.errors import InputError
from metrics.file_hash import sha256_bytes

PromptStyle = Literal["tags", "tags+nl"]


class ConfigError(InputError):
    """A config file that cannot be read or does not validate; the message is one line."""


class StepsMismatchWarning(UserWarning):
    """steps != dataset_size x epochs / batch_size."""


class Resolution(BaseModel):
    """Training resolution in pixels (the report trains at 1024x1024 and 1536x1536)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class TrainingConfig(BaseModel):
    """One training run's configuration; unknown fields are rejected, free-form go in extras."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/ ]*$")
    base_model: str | None = Field(default=None, description="Checkpoint the run started from.")
    dataset_size: int | None = Field(default=None, gt=0, description="Training images.")
    batch_size: int | None = Field(default=None, gt=0)
    unet_lr: float | None = Field(default=None, gt=0, lt=1, description="U-Net learning rate.")
    text_encoder_lr: float | None = Field(default=None, ge=0, lt=1, description="0 = frozen.")
    epochs: float | None = Field(default=None, gt=0)
    steps: int | None = Field(default=None, gt=0)
    resolution: Resolution | None = None
    prompt_style: PromptStyle | None = Field(
        default=None, description="'tags' or 'tags+nl' (tags + natural language)."
    )
    multi_level_dropout: bool | None = Field(default=None, description="Report sec. 3.2.")
    protected_tokens: list[str] = Field(
        default_factory=list, description="No-dropout tokens never dropped from captions."
    )
    tag_manipulation: bool | None = None
    register_tokens: int | None = Field(default=None, ge=0, description="Quasi-register tokens.")
    multi_caption: bool | None = None
    lr_scheduler: str | None = None
    noise_offset: float | None = Field(default=None, ge=0, le=1)
    input_perturbation: float | None = Field(default=None, ge=0, le=1)
    loss: str | None = None
    extras: dict[str, Any] = Field(default_factory=dict, description="Free-form knobs.")

    @field_validator("resolution", mode="before")
    @classmethod
    def _parse_resolution(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"width": value, "height": value}
        if isinstance(value, str):
            parts = value.lower().replace(" ", "").split("x")
            if len(parts) == 2 and all(p.isdigit() for p in parts):
                return {"width": int(parts[0]), "height": int(parts[1])}
            raise ValueError(f"expected WIDTHxHEIGHT such as 1024x1024, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_steps(self) -> TrainingConfig:
        known = (self.dataset_size, self.epochs, self.batch_size, self.steps)
        if all(v is not None for v in known):
            expected = self.dataset_size * self.epochs / self.batch_size  # type: ignore[operator]
            if abs(expected - self.steps) > 0.5:  # type: ignore[operator]
                warnings.warn(
                    f"config {self.name!r}: steps={self.steps} but dataset_size x epochs / "
                    f"batch_size = {expected:g}",
                    StepsMismatchWarning,
                    stacklevel=2,
                )
        return self

    def content(self) -> dict[str, Any]:
        """Everything but the name, in JSON form: what the content hash covers."""
        data = self.model_dump(mode="json")
        data.pop("name")
        return data

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the content (key order and name do not matter)."""
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return sha256_bytes(canonical.encode())


def _one_line(exc: ValidationError, source: str) -> str:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{source}: field '{field}': {first['msg']}{more}"


def parse_config(data: Any, source: str = "config") -> TrainingConfig:
    """Validate a mapping into a TrainingConfig; errors name the source and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, source)) from None


def load_config(path: str | Path) -> TrainingConfig:
    """Load a config from a .yaml/.yml/.json file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        elif path.suffix.lower() in {".yaml", ".yml"}:
            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"config file {path}: expected a .yaml, .yml or .json file")
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0]
        raise ConfigError(
            f"config file {path} is not valid {path.suffix[1:].upper()}: {reason}"
        ) from None
    return parse_config(data, source=f"config file {path}")
