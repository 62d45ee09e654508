"""CLIPScore (Hessel et al. 2021) with a tiny random open_clip model built from local files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metrics.ccip import NothingToScoreError
from metrics.clip_score import CLIPSCORE_W, ClipModelError, clip_score, load_clip_model
from tests.support.tiny_clip import write_tiny_clip

PROMPTS = ["1girl, red hair, smile", "a blue sky over the sea", "green forest", "grey"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A config JSON, random weights, the same weights with the text projection negated, images."""
    import torch

    root = tmp_path_factory.mktemp("clip")
    config, weights, state = write_tiny_clip(root, "some-file-name")
    torch.save({**state, "text_projection": -state["text_projection"]}, root / "negated.pt")
    wrong = {k: v for k, v in state.items() if k != "text_projection"}
    torch.save(wrong, root / "wrong.pt")
    paths = {"config": config, "weights": weights, "negated": root / "negated.pt"}
    paths["wrong"] = root / "wrong.pt"
    rng = np.random.default_rng(1)
    for k in range(4):
        paths[f"img{k}"] = root / f"img{k}.png"
        Image.fromarray(rng.integers(0, 256, (70 + k, 90, 3), dtype=np.uint8)).save(
            paths[f"img{k}"]
        )
    paths["rgba"] = root / "rgba.png"
    Image.new("RGBA", (64, 64), (255, 0, 0, 100)).save(paths["rgba"])
    paths["corrupt"] = root / "corrupt.png"
    paths["corrupt"].write_bytes(b"not an image")
    return paths


def reference_scores(
    name: str, files: dict[str, Path], weights: Path, images, prompts
) -> np.ndarray:
    """CLIPScore computed directly with open_clip's own model, transform and tokenizer."""
    import open_clip
    import torch

    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(weights))
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    out = []
    with torch.no_grad():
        for path, prompt in zip(images, prompts, strict=True):
            image = Image.open(path)
            if image.mode == "RGBA":
                white = Image.new("RGBA", image.size, "white")
                white.paste(image, (0, 0), mask=image)
                image = white
            pixels = preprocess(image.convert("RGB")).unsqueeze(0)
            e_img = model.encode_image(pixels)
            e_txt = model.encode_text(tokenizer([prompt]))
            cos = torch.nn.functional.cosine_similarity(e_img, e_txt).item()
            out.append(2.5 * max(cos, 0.0))
    return np.array(out)


def test_scores_follow_the_clipscore_formula(files: dict[str, Path]) -> None:
    model = load_clip_model(
        "tiny-arena-clip", files["weights"], config=files["config"], device="cpu"
    )
    images = [files[f"img{k}"] for k in range(3)] + [files["rgba"]]
    result = clip_score(model, images, PROMPTS, batch_size=3, workers=2)
    want = reference_scores("tiny-arena-clip", files, files["weights"], images, PROMPTS)
    got = np.array([v for _, v in result.per_image])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert result.score == pytest.approx(want.mean(), abs=1e-5)
    assert result.count == 4 and result.w == CLIPSCORE_W == 2.5
    assert result.model_name == "tiny-arena-clip"
    assert result.config_sha256 is not None and len(result.weights_sha256) == 64
    assert result.image_sha256 == tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in images)


def test_negative_cosines_are_clipped_to_zero(files: dict[str, Path]) -> None:
    # Negating the text projection flips every cosine's sign: each pair scores w * max(c, 0) in
    # one model and w * max(-c, 0) in the other, so exactly one of the two is zero.
    images = [files[f"img{k}"] for k in range(4)]
    plain = load_clip_model(
        "tiny-arena-clip", files["weights"], config=files["config"], device="cpu"
    )
    flipped = load_clip_model(
        "tiny-arena-clip", files["negated"], config=files["config"], device="cpu"
    )
    a = np.array([v for _, v in clip_score(plain, images, PROMPTS).per_image])
    b = np.array([v for _, v in clip_score(flipped, images, PROMPTS).per_image])
    assert (a >= 0).all() and (b >= 0).all()
    assert ((a == 0) ^ (b == 0)).all()
    np.testing.assert_allclose(a + b, np.abs(a - b), atol=1e-6)


def test_unreadable_images_are_skipped_and_listed(files: dict[str, Path]) -> None:
    model = load_clip_model(
        "tiny-arena-clip", files["weights"], config=files["config"], device="cpu"
    )
    calls: list[int] = []
    images = [files["img0"], files["corrupt"], files["img1"]]
    result = clip_score(model, images, PROMPTS[:3], batch_size=2, progress=calls.append)
    assert [name for name, _ in result.per_image] == [str(files["img0"]), str(files["img1"])]
    assert [f.name for f in result.unreadable] == [str(files["corrupt"])]
    assert sum(calls) == 3
    with pytest.raises(NothingToScoreError):
        clip_score(model, [files["corrupt"]], ["x"])


def test_user_errors_name_the_input(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ClipModelError, match="weights: expected a local weights file"):
        load_clip_model("tiny-arena-clip", tmp_path / "none.pt", config=files["config"])
    with pytest.raises(ClipModelError, match="'no-such-arch' is not an open_clip architecture"):
        load_clip_model("no-such-arch", files["weights"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"embed_dim": 4}')
    with pytest.raises(ClipModelError, match="expected an open_clip model config with embed_dim"):
        load_clip_model("bad-arch", files["weights"], config=bad)
    with pytest.raises(ClipModelError, match="cannot load as weights for 'tiny-arena-clip'"):
        load_clip_model("tiny-arena-clip", files["wrong"], config=files["config"], device="cpu")
    model = load_clip_model(
        "tiny-arena-clip", files["weights"], config=files["config"], device="cpu"
    )
    with pytest.raises(ValueError, match=r"prompts: expected one per image \(2\), got 1"):
        clip_score(model, [files["img0"], files["img1"]], ["one"])
