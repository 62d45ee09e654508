"""Presets for the four published Illustrious runs, with the report's numbers (Table 5)."""

from __future__ import annotations

from importlib import resources

from training.config import TrainingConfig, load_config

PRESET_NAMES = ("illustrious-v0.1", "illustrious-v1.0", "illustrious-v1.1", "illustrious-v2.0")


def preset_path(name: str) -> str:
    """File path of a shipped preset YAML."""
    if name not in PRESET_NAMES:
        raise KeyError(f"unknown preset {name!r}; expected one of {', '.join(PRESET_NAMES)}")
    return str(resources.files("training") / "presets" / f"{name}.yaml")


def load_preset(name: str) -> TrainingConfig:
    """The validated config of one published run."""
    return load_config(preset_path(name))

