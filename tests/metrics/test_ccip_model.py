"""Loading CCIP model folders: the published layout loads, anything else is refused clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from metrics.ccip_model import CCIPModelError, load_ccip_model
from metrics.file_hash import sha256_file
from tests.support.ccip_stand_in import cached_ccip_stand_in


@pytest.fixture(scope="module")
def valid_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_ccip_stand_in(tmp_path_factory.getbasetemp(), threshold=0.15)


@pytest.fixture
def copy_dir(valid_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(valid_dir, target)
    return target


def test_valid_folder_loads_with_identity_and_threshold(valid_dir: Path) -> None:
    model = load_ccip_model(valid_dir, name="stand-in", threads=1)
    assert model.threshold == 0.15
    assert model.feat_sha256 == sha256_file(valid_dir / "model_feat.onnx")
    assert model.metrics_sha256 == sha256_file(valid_dir / "model_metrics.onnx")
    assert model.key == f"stand-in@{model.feat_sha256[:16]}"
    assert model.providers[-1] == "CPUExecutionProvider"
    feats = model.run_features(np.zeros((3, 3, 384, 384), np.float32))
    assert feats.shape == (3, 768)
    diffs = model.run_metrics(feats)
    assert diffs.shape == (3, 3)


def test_name_defaults_to_folder_name(valid_dir: Path) -> None:
    assert load_ccip_model(valid_dir, device="cpu", threads=1).name == valid_dir.name


def test_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "model_feat.onnx").write_bytes(b"")
    with pytest.raises(CCIPModelError, match=r"missing model_metrics\.onnx, metrics\.json"):
        load_ccip_model(tmp_path)


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(CCIPModelError, match="expected a CCIP model folder"):
        load_ccip_model(tmp_path / "nope")


@pytest.mark.parametrize(
    ("content", "found"),
    [
        ("{}", "None"),
        ('{"threshold": "0.2"}', "'0.2'"),
        ('{"threshold": 1.5}', "1.5"),
        ('{"threshold": true}', "True"),
        ("[0.2]", "None"),
    ],
)
def test_bad_threshold_is_refused(copy_dir: Path, content: str, found: str) -> None:
    (copy_dir / "metrics.json").write_text(content)
    with pytest.raises(
        CCIPModelError,
        match=rf"metrics\.json: expected a 'threshold' number in \[0, 1\], found {found}",
    ):
        load_ccip_model(copy_dir)


def test_unparseable_metrics_json(copy_dir: Path) -> None:
    (copy_dir / "metrics.json").write_text("{not json")
    with pytest.raises(CCIPModelError, match="expected a JSON object"):
        load_ccip_model(copy_dir)


def test_corrupt_onnx_is_refused(copy_dir: Path) -> None:
    (copy_dir / "model_metrics.onnx").write_bytes(b"\x00not an onnx file")
    with pytest.raises(CCIPModelError, match=r"model_metrics\.onnx: not a loadable ONNX model"):
        load_ccip_model(copy_dir)


def test_feature_model_with_wrong_output_width_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = cached_ccip_stand_in(tmp_path_factory.getbasetemp(), feature_dim=512)
    with pytest.raises(CCIPModelError) as err:
        load_ccip_model(folder)
    message = str(err.value)
    assert (
        "model_feat.onnx: expected input 'input' float32 [N, 3, 384, 384]"
        " -> output 'output' [N, 768]" in message
    )
    assert "found output 'output' tensor(float) [N, 512]" in message


def test_feature_model_with_wrong_input_size_is_refused(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = cached_ccip_stand_in(tmp_path_factory.getbasetemp(), input_size=224)
    with pytest.raises(
        CCIPModelError, match=r"found input 'input' tensor\(float\) \[N, 3, 224, 224\]"
    ):
        load_ccip_model(folder)


def test_wrong_tensor_names_are_refused(copy_dir: Path) -> None:
    import onnx

    path = copy_dir / "model_feat.onnx"
    graph_model = onnx.load(str(path))
    old = graph_model.graph.input[0].name
    graph_model.graph.input[0].name = "pixel_values"
    for node in graph_model.graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = "pixel_values"
    onnx.save(graph_model, str(path))
    with pytest.raises(CCIPModelError, match=r"found input 'pixel_values'"):
        load_ccip_model(copy_dir)


def test_fixed_batch_is_refused(copy_dir: Path) -> None:
    import onnx

    path = copy_dir / "model_metrics.onnx"
    graph_model = onnx.load(str(path))
    dim = graph_model.graph.input[0].type.tensor_type.shape.dim[0]
    dim.dim_value = 4  # replaces the symbolic batch axis with a fixed size
    onnx.save(graph_model, str(path))
    with pytest.raises(
        CCIPModelError,
        match=r"expected input 'input' float32 \[N, 768\].*"
        r"found input 'input' tensor\(float\) \[4, 768\]",
    ):
        load_ccip_model(copy_dir)


def test_device_choices(valid_dir: Path) -> None:
    import onnxruntime as ort

    with pytest.raises(CCIPModelError, match="device: expected 'auto', 'cpu' or 'cuda', got 'tpu'"):
        load_ccip_model(valid_dir, device="tpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(CCIPModelError, match="device 'cuda' requested"):
            load_ccip_model(valid_dir, device="cuda")
        assert load_ccip_model(valid_dir, device="auto", threads=1).providers == [
            "CPUExecutionProvider"
        ]


def test_threshold_json_can_hold_other_published_keys(copy_dir: Path) -> None:
    (copy_dir / "metrics.json").write_text(
        json.dumps({"threshold": 0.178, "f1": 0.9, "precision": 0.93})
    )
    assert load_ccip_model(copy_dir, threads=1).threshold == 0.178
