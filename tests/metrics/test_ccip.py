"""CCIP library: chunked features, block differences, decisions, clustering, cache, scores.

Uses a CCIP-shaped stand-in exported to ONNX (tests.support.ccip_stand_in), loaded through the same
code path as published model folders; its metrics model returns (1 - cos) / 2.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metrics.ccip import (
    FeatureCache,
    FeatureKey,
    InMemoryFeatureCache,
    NothingToScoreError,
    cluster,
    differences,
    extract_features,
    pairwise_differences,
    same_character,
    score_character,
)
from metrics.ccip_model import CCIPModel, load_ccip_model
from tests.support.ccip_stand_in import cached_ccip_stand_in

COLOURS = {
    "red": (230, 20, 20),
    "red2": (225, 25, 22),
    "blue": (20, 30, 220),
    "green": (20, 200, 40),
    "white": (250, 250, 250),
    "orange": (200, 100, 50),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> CCIPModel:
    folder = cached_ccip_stand_in(tmp_path_factory.getbasetemp(), threshold=0.15)
    return load_ccip_model(folder, name="stand-in", device="cpu", threads=1)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Solid-colour PNGs of odd sizes, a textured one, a corrupt file and a missing path."""
    folder = tmp_path_factory.mktemp("ccip-images")
    paths: dict[str, Path] = {}
    for k, (name, rgb) in enumerate(COLOURS.items()):
        paths[name] = folder / f"{name}.png"
        Image.new("RGB", (61 + 7 * k, 83), rgb).save(paths[name])
    noise = np.random.default_rng(3).integers(0, 256, (97, 131, 3), dtype=np.uint8)
    paths["noise"] = folder / "noise.png"
    Image.fromarray(noise).save(paths["noise"])
    paths["red_copy"] = folder / "red_copy.png"
    paths["red_copy"].write_bytes(paths["red"].read_bytes())
    paths["corrupt"] = folder / "corrupt.png"
    paths["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    paths["missing"] = folder / "missing.png"
    return paths


def stand_in_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The stand-in's metric computed independently: (1 - cosine) / 2."""
    ua = a / np.linalg.norm(a, axis=1, keepdims=True)
    ub = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (1 - ua @ ub.T) / 2


def readable(images: dict[str, Path]) -> list[Path]:
    return [p for name, p in images.items() if name not in ("corrupt", "missing")]


def test_features_are_chunk_and_thread_invariant(model: CCIPModel, images: dict[str, Path]) -> None:
    paths = readable(images)
    reference = extract_features(model, paths, chunk_size=len(paths), workers=1)
    assert reference.features.shape == (len(paths), 768)
    assert reference.features.dtype == np.float32
    for chunk_size, workers in [(1, 1), (2, 3), (3, 2)]:
        other = extract_features(model, paths, chunk_size=chunk_size, workers=workers)
        assert other.names == reference.names
        np.testing.assert_allclose(other.features, reference.features, rtol=0, atol=1e-5)


def test_one_session_call_per_chunk_and_duplicates_embedded_once(
    model: CCIPModel, images: dict[str, Path]
) -> None:
    paths = readable(images)  # red_copy has the same bytes as red
    before = model.feature_calls
    result = extract_features(model, paths, chunk_size=3, workers=2)
    assert model.feature_calls - before == -(-len(paths) // 3)
    assert result.computed == len(paths) - 1
    by_name = dict(zip(result.names, result.features, strict=True))
    np.testing.assert_array_equal(by_name[str(images["red"])], by_name[str(images["red_copy"])])
    assert (
        result.sha256[result.names.index(str(images["red"]))]
        == hashlib.sha256(images["red"].read_bytes()).hexdigest()
    )


def test_unreadable_files_are_reported_and_skipped(
    model: CCIPModel, images: dict[str, Path]
) -> None:
    order = [images["blue"], images["corrupt"], images["green"], images["missing"], images["red"]]
    calls: list[int] = []
    result = extract_features(model, order, chunk_size=2, progress=calls.append)
    assert result.names == [str(images[n]) for n in ("blue", "green", "red")]
    assert [f.name for f in result.failures] == [str(images["corrupt"]), str(images["missing"])]
    assert result.failures[0].reason == "not an image file Pillow can read"
    assert result.failures[1].reason.startswith("FileNotFoundError")
    assert sum(calls) == len(order)


def test_metrics_model_and_block_differences_match_the_formula(
    model: CCIPModel, images: dict[str, Path]
) -> None:
    feats = extract_features(model, readable(images)).features
    square = pairwise_differences(model, feats)
    np.testing.assert_allclose(square, stand_in_differences(feats, feats), atol=1e-5)
    refs, gens = feats[:3], feats[1:]
    full = differences(model, refs, gens)
    assert full.shape == (3, len(gens))
    np.testing.assert_allclose(full, square[:3, 1:], atol=1e-6)
    for block in (1, 2, 5):
        before = model.metric_calls
        np.testing.assert_allclose(differences(model, refs, gens, block=block), full, atol=1e-6)
        # One metrics call per (ref block, gen block), each on a stack of at most 2 * block.
        assert model.metric_calls - before == -(-3 // block) * -(-len(gens) // block)
    blocked = pairwise_differences(model, feats, block=2)
    np.testing.assert_allclose(blocked, square, atol=1e-6)


def test_same_character_is_inclusive_at_the_threshold() -> None:
    diffs = np.array([[0.1, 0.15, 0.1500001]], np.float32)
    assert same_character(diffs, 0.15).tolist() == [[True, True, False]]


def test_clustering_groups_near_identical_colours(
    model: CCIPModel, images: dict[str, Path]
) -> None:
    names = ["red", "blue", "red2", "green", "red_copy", "blue"]
    feats = extract_features(model, [images[n] for n in names]).features
    labels = cluster(model, feats)
    assert labels.tolist() == [0, 1, 0, 2, 0, 1]
    assert cluster(model, feats, linkage="single").tolist() == [0, 1, 0, 2, 0, 1]
    # A cut just above float noise separates everything that is not byte-identical.
    assert cluster(model, feats, threshold=1e-5).tolist() == [0, 1, 2, 3, 0, 1]
    assert cluster(model, feats[:1]).tolist() == [0]
    with pytest.raises(ValueError, match="linkage: expected"):
        cluster(model, feats, linkage="ward")


def test_cache_reuse_skips_the_feature_model(model: CCIPModel, images: dict[str, Path]) -> None:
    cache = InMemoryFeatureCache()
    assert isinstance(cache, FeatureCache)
    paths = readable(images)
    cold = extract_features(model, paths, cache=cache)
    assert cold.cache_hits == 0 and cold.computed == len(paths) - 1
    assert len(cache.store) == len(paths) - 1
    assert all(key.model_key == model.key for key in cache.store)
    before = model.feature_calls
    warm = extract_features(model, paths, cache=cache)
    assert model.feature_calls == before
    assert warm.computed == 0 and warm.cache_hits == len(paths) - 1
    np.testing.assert_array_equal(warm.features, cold.features)
    # A different model key misses the cache.
    other = InMemoryFeatureCache(
        {FeatureKey(k.image_sha256, "other@0"): v for k, v in cache.store.items()}
    )
    assert extract_features(model, paths[:2], cache=other).cache_hits == 0


def test_known_hashes_skip_reading_cached_files(model: CCIPModel, images: dict[str, Path]) -> None:
    cache = InMemoryFeatureCache()
    red = extract_features(model, [images["red"]], cache=cache)
    gone = images["missing"]  # never created: only the cache can answer for it
    result = extract_features(model, [gone, gone], sha256=[red.sha256[0], "0" * 64], cache=cache)
    assert result.names == [str(gone)]
    np.testing.assert_array_equal(result.features[0], red.features[0])
    assert [f.reason.split(":")[0] for f in result.failures] == ["FileNotFoundError"]
    with pytest.raises(ValueError, match=r"sha256: expected one entry per source \(1\), got 2"):
        extract_features(model, [gone], sha256=["a", "b"])


def test_cached_feature_is_what_the_score_uses(model: CCIPModel, images: dict[str, Path]) -> None:
    # Plant a feature for blue equal to red's: the score must then count blue as red.
    cache = InMemoryFeatureCache()
    red = extract_features(model, [images["red"]], cache=cache)
    blue_sha = hashlib.sha256(images["blue"].read_bytes()).hexdigest()
    cache.put_many({FeatureKey(blue_sha, model.key): red.features[0]})
    result = score_character(model, [images["red"]], [images["blue"]], cache=cache)
    assert result.score == 1.0 and result.mean_difference < 1e-5
    assert (result.embedded, result.cache_hits) == (0, 2)


def test_score_matches_a_hand_computation(model: CCIPModel, images: dict[str, Path]) -> None:
    refs = [images["red"], images["red2"], images["orange"]]
    gens = [images["red_copy"], images["blue"], images["corrupt"], images["noise"], images["red2"]]
    result = score_character(model, refs, gens, chunk_size=2, block=2)

    ref_feats = extract_features(model, refs).features
    gen_feats = extract_features(model, [g for g in gens if g != images["corrupt"]]).features
    d = stand_in_differences(ref_feats, gen_feats)
    fractions = (d <= model.threshold).mean(axis=0)
    assert result.count == 4 and result.reference_count == 3
    assert result.score == pytest.approx(fractions.mean(), abs=1e-9)
    assert result.mean_difference == pytest.approx(d.mean(), abs=1e-5)
    assert [name for name, _, _ in result.per_image] == [
        str(images[n]) for n in ("red_copy", "blue", "noise", "red2")
    ]
    assert result.per_image[0][1] == pytest.approx(fractions[0])
    assert result.per_image[1][1] == 0.0  # blue is no red
    assert [f.name for f in result.unreadable] == [str(images["corrupt"])]
    assert result.threshold == 0.15 and result.model_key == model.key
    assert result.reference_sha256[0] == hashlib.sha256(images["red"].read_bytes()).hexdigest()
    assert len(result.image_sha256) == 4
    provenance = result.provenance()
    assert provenance["feat_sha256"] == model.feat_sha256
    assert provenance["metrics_sha256"] == model.metrics_sha256
    assert provenance["unreadable"] == [str(images["corrupt"])]


def test_nothing_to_score(model: CCIPModel, images: dict[str, Path]) -> None:
    with pytest.raises(NothingToScoreError, match="images: no readable generated image"):
        score_character(model, [images["red"]], [images["corrupt"], images["missing"]])
    with pytest.raises(NothingToScoreError, match="references: no readable reference image"):
        score_character(model, [images["corrupt"]], [images["red"]])


@pytest.mark.parametrize(("arg", "value"), [("chunk_size", 0), ("workers", 0)])
def test_bad_batching_arguments(
    model: CCIPModel, images: dict[str, Path], arg: str, value: int
) -> None:
    with pytest.raises(ValueError, match=f"{arg}: expected a positive integer, got 0"):
        extract_features(model, [images["red"]], **{arg: value})
