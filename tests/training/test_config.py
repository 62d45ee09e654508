"""The training-config model: presets carry the report's numbers, bad input names the field."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from training.config import ConfigError, StepsMismatchWarning, load_config, parse_config
from training.presets import PRESET_NAMES, load_preset

# (dataset size, batch, U-Net LR, TE LR, epochs, resolution, prompt style, steps): Table 5.
REPORT = {
    "illustrious-v0.1": (7_500_000, 192, 3.5e-5, 4.5e-6, 20, "1024x1024", "tags", 781_250),
    "illustrious-v1.0": (10_000_000, 128, 1e-5, 6e-6, 8, "1536x1536", "tags", 625_000),
    "illustrious-v1.1": (12_000_000, 512, 3e-5, 4e-6, 4, "1536x1536", "tags+nl", 93_750),
    "illustrious-v2.0": (20_000_000, 512, 4e-5, 3e-6, 2, "1536x1536", "tags+nl", 78_125),
}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_presets_carry_the_reports_numbers(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the presets' steps are consistent
        config = load_preset(name)
    got = (
        config.dataset_size, config.batch_size, config.unet_lr, config.text_encoder_lr,
        config.epochs, str(config.resolution), config.prompt_style, config.steps,
    )
    assert got == REPORT[name]
    assert config.multi_caption is (True if name == "illustrious-v2.0" else None)


def test_presets_have_distinct_hashes() -> None:
    assert len({load_preset(n).content_hash() for n in PRESET_NAMES}) == 4


def test_inconsistent_steps_warn() -> None:
    with pytest.warns(StepsMismatchWarning, match="steps=1000"):
        parse_config({"name": "x", "dataset_size": 100, "epochs": 2, "batch_size": 10,
                      "steps": 1000})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "x", "batch_size": "big"}, "batch_size"),
        ({"name": "x", "batch_size": -4}, "batch_size"),
        ({"name": "x", "unet_lr": 3.0}, "unet_lr"),
        ({"name": "x", "resolution": "wide"}, "resolution"),
        ({"name": "x", "prompt_style": "prose"}, "prompt_style"),
        ({"name": "x", "learning_rate": 1e-5}, "learning_rate"),
        ({"batch_size": 4}, "name"),
    ],
)
def test_bad_values_are_rejected_naming_the_field(data: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=f"field '{field}'") as info:
        parse_config(data, source="cfg.yaml")
    assert "\n" not in str(info.value)


def test_yaml_and_json_files_load_the_same(tmp_path: Path) -> None:
    data = {"name": "mine", "batch_size": 8, "resolution": 1024, "extras": {"ema": True}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "a.json").write_text(json.dumps(data))
    a, b = load_config(tmp_path / "a.yaml"), load_config(tmp_path / "a.json")
    assert a == b and str(a.resolution) == "1024x1024" and a.extras == {"ema": True}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.yaml", "name: [unclosed", "not valid YAML"),
        ("bad.json", "{", "not valid JSON"),
        ("list.yaml", "- 1\n- 2\n", "expected a mapping"),
        ("cfg.toml", "x = 1", "expected a .yaml"),
    ],
)
def test_unreadable_files_give_one_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(tmp_path / name)
    assert "\n" not in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/cfg.yaml")


@given(
    st.dictionaries(
        st.sampled_from(["batch_size", "epochs", "dataset_size"]),
        st.integers(min_value=1, max_value=10**6),
    )
)
def test_content_hash_ignores_name_and_key_order(fields: dict) -> None:
    a = parse_config({"name": "a", **fields})
    b = parse_config({"name": "b", **dict(reversed(list(fields.items())))})
    assert a.content_hash() == b.content_hash()
