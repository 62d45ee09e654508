"""Prompt-set YAML files: the shipped default set and one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from generation.errors import GenerationError
from generation.pipeline import RenderSettings, SecondPass
from generation.prompt_sets import default_prompt_set, load_prompt_set, parse_prompt_set


def test_default_set_uses_the_report_prompts_and_settings() -> None:
    ps = default_prompt_set()
    prompts = {e.prompt for e in ps.entries}
    assert "1girl, hatsune miku, angel, masterpiece, general" in prompts
    # safe mode put "general" after the person count of the report's doctor prompt
    assert "1boy, general, doctor, masterpiece, looking at viewer" in prompts
    assert {e.kind for e in ps.entries} == {"fixed", "free", "ffa"}
    assert all(e.character for e in ps.entries if e.kind == "fixed")
    assert ps.settings == RenderSettings(
        negative_prompt=ps.settings.negative_prompt,
        steps=28,
        cfg=6.0,
        sampler="Euler a",
        width=832,
        height=1216,
    )
    assert ps.safe
    assert all("general" in e.prompt.split(", ") for e in ps.entries)


def test_structured_tags_and_second_pass(tmp_path: Path) -> None:
    path = tmp_path / "set.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "seeds": [5],
                "second_pass": {"strength": 0.4, "scale": 2},
                "fixed": [
                    {
                        "character": "kagamine rin",
                        "tags": {
                            "person_count": "1girl",
                            "characters": ["kagamine rin"],
                            "general": ["smile"],
                            "quality": ["masterpiece"],
                            "year": "newest",
                        },
                    }
                ],
            }
        )
    )
    ps = load_prompt_set(path)
    assert ps.name == "set"
    assert ps.entries[0].prompt == "1girl, kagamine rin, general, smile, masterpiece, newest"
    assert ps.settings.second_pass == SecondPass(strength=0.4, scale=2.0)
    assert ps.settings.output_size == (1664, 2432)


def _base(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"seeds": [0], "free": ["1girl, smile"]}
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_base(sampler="Euler b"), "unknown sampler 'Euler b'; expected one of 'Euler a'"),
        (_base(width=100), "'width': expected a multiple of 8 between 64 and 4096, got 100"),
        (_base(height=8192), "'height': expected a multiple of 8 between 64 and 4096"),
        (_base(steps=0), "'steps': expected an integer in \\[1, 1000\\]"),
        (_base(steps=2.5), "'steps': expected an integer, got 2.5"),
        (_base(cfg="high"), "'cfg': expected a number, got 'high'"),
        (_base(seeds=[1, 1]), "'seeds': expected distinct seeds"),
        (_base(seeds=[-1]), "'seeds\\[0\\]': expected an integer in \\[0, 4294967295\\]"),
        (_base(seeds=[]), "'seeds': expected a non-empty list"),
        (_base(steps_count=3), "'steps_count': expected one of"),
        (_base(fixed=["1girl, hatsune miku"]), "'fixed\\[0\\].character': expected the character"),
        (
            _base(fixed=[{"character": "kagamine rin", "prompt": "1girl, hatsune miku"}]),
            "'fixed\\[0\\].prompt': expected a prompt that names its character 'kagamine rin'",
        ),
        (_base(free=["1girl, explicit"]), "'free\\[0\\]': prompt '1girl, explicit': safe mode"),
        (
            _base(free=["a, b", "a,  b"]),
            "'free\\[1\\]': expected a prompt not already in free\\[0\\]",
        ),
        (_base(free=[{"tags": {"quality": "great"}}]), "prompt field 'quality': expected one of"),
        (_base(free=[{"tags": {"colour": "red"}}]), "'free\\[0\\].tags.colour'"),
        (_base(second_pass={"strength": 1.5}), "'second_pass.strength': expected a number in"),
        (_base(free=[]), "'fixed/free/ffa': expected at least one prompt"),
    ],
)
def test_errors_name_the_field(data: dict[str, Any], message: str) -> None:
    with pytest.raises(GenerationError, match=message) as caught:
        parse_prompt_set(data, "sets/x.yaml")
    text = str(caught.value)
    assert text.startswith("prompt set sets/x.yaml: ")
    assert "\n" not in text


def test_unsafe_sets_keep_their_rating() -> None:
    ps = parse_prompt_set(_base(safe=False, free=["1girl, sensitive, smile"]))
    assert ps.entries[0].prompt == "1girl, sensitive, smile"


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="could not be read"):
        load_prompt_set(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("free: [unclosed\n")
    with pytest.raises(GenerationError, match="is not valid YAML") as caught:
        load_prompt_set(bad)
    assert "\n" not in str(caught.value)
