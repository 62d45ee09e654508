"""The prompt builder: the report's tag order, its vocabularies, parsing back, safe mode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generation.errors import GenerationError
from generation.prompts import (
    QUALITY_TAGS,
    RATING_TAGS,
    YEAR_TAGS,
    PromptFields,
    apply_safe_mode,
    build_prompt,
    is_person_count_tag,
    parse_prompt,
)

# Free-form tags: words of letters (so never a vocabulary or person-count tag by accident).
_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=8)
_tag = (
    st.lists(_word, min_size=1, max_size=3)
    .map(" ".join)
    .filter(lambda t: t not in (*RATING_TAGS, *QUALITY_TAGS, *YEAR_TAGS))
)
_person = st.sampled_from(["1girl", "2girls", "1boy", "3boys", "6+girls", "1other", "no humans"])


@st.composite
def prompt_fields(draw: st.DrawFn, rating: bool | None = None) -> PromptFields:
    tags = draw(st.lists(_tag, min_size=0, max_size=10, unique=True))
    cuts = sorted(draw(st.lists(st.integers(0, len(tags)), min_size=2, max_size=2)))
    has_rating = draw(st.booleans()) if rating is None else rating
    return PromptFields(
        person_count=tuple(draw(st.lists(_person, max_size=2, unique=True))),
        characters=tuple(tags[: cuts[0]]),
        rating=draw(st.sampled_from(RATING_TAGS)) if has_rating else None,
        general=tuple(tags[cuts[0] : cuts[1]]),
        artists=tuple(tags[cuts[1] :]),
        quality=tuple(draw(st.lists(st.sampled_from(QUALITY_TAGS), max_size=2, unique=True))),
        year=tuple(draw(st.lists(st.sampled_from(YEAR_TAGS), max_size=1))),
    )


@given(prompt_fields(rating=True))
def test_with_a_rating_characters_are_found_by_position(fields: PromptFields) -> None:
    assert parse_prompt(build_prompt(fields), artists=fields.artists) == fields


@given(prompt_fields())
def test_parse_inverts_build_given_the_names(fields: PromptFields) -> None:
    text = build_prompt(fields)
    assert parse_prompt(text, characters=fields.characters, artists=fields.artists) == fields
    assert (
        build_prompt(parse_prompt(text, characters=fields.characters, artists=fields.artists))
        == text
    )


@given(prompt_fields())
def test_build_follows_the_report_order(fields: PromptFields) -> None:
    tags = build_prompt(fields).split(", ") if build_prompt(fields) else []
    slots = [
        *fields.person_count,
        *fields.characters,
        *([fields.rating] if fields.rating else []),
        *fields.general,
        *fields.artists,
        *fields.quality,
        *fields.year,
    ]
    assert tags == slots


@given(prompt_fields(rating=False))
def test_safe_mode_adds_general_after_the_characters(fields: PromptFields) -> None:
    safe = build_prompt(fields, safe=True)
    parsed = parse_prompt(safe, artists=fields.artists)
    assert parsed.rating == "general"
    assert parsed.characters == fields.characters
    assert apply_safe_mode(build_prompt(fields), characters=fields.characters) == safe


def test_report_prompts_parse_into_their_fields() -> None:
    doctor = parse_prompt("1boy, doctor, masterpiece, looking at viewer")
    assert doctor == PromptFields(
        person_count=("1boy",), general=("doctor", "looking at viewer"), quality=("masterpiece",)
    )
    miku = parse_prompt(
        "1girl, hatsune miku, angel, masterpiece, general", characters=["hatsune miku"]
    )
    assert miku.characters == ("hatsune miku",)
    assert miku.rating == "general"
    assert miku.general == ("angel",)
    assert build_prompt(miku) == "1girl, hatsune miku, general, angel, masterpiece"


def test_person_count_vocabulary() -> None:
    assert all(
        map(is_person_count_tag, ["1girl", "5boys", "6+others", "multiple girls", "no humans"])
    )
    assert not any(map(is_person_count_tag, ["girl", "7girls", "1girls x", "solo"]))


def test_safe_mode_refuses_other_ratings() -> None:
    with pytest.raises(GenerationError, match="safe mode needs the 'general' rating"):
        build_prompt(PromptFields(person_count=("1girl",), rating="sensitive"), safe=True)
    with pytest.raises(GenerationError, match="got questionable"):
        apply_safe_mode("1girl, questionable, smile")
    assert apply_safe_mode("1girl, general, smile") == "1girl, general, smile"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (PromptFields(quality=("great quality",)), "prompt field 'quality': expected one of"),
        (PromptFields(year=("2024",)), "prompt field 'year': expected one of"),
        (PromptFields(rating="safe"), "prompt field 'rating': expected one of general"),
        (PromptFields(person_count=("girl",)), "prompt field 'person_count'"),
        (PromptFields(general=("masterpiece",)), "'masterpiece' is a quality tag"),
        (PromptFields(characters=("a, b",)), "contains a comma"),
        (PromptFields(general=(" padded",)), "without leading, trailing"),
        (PromptFields(general=("smile",), artists=("smile",)), "already in field 'general'"),
    ],
)
def test_bad_fields_name_the_field(fields: PromptFields, message: str) -> None:
    with pytest.raises(GenerationError, match=message) as caught:
        build_prompt(fields)
    assert "\n" not in str(caught.value)


def test_two_ratings_are_an_error() -> None:
    with pytest.raises(GenerationError, match="at most one rating tag"):
        parse_prompt("1girl, general, explicit")
