"""Pictures of depth models: draw_depth_comparison (image | truth | prediction | error), the depth
branch of draw_dataset_predictions on a temporary dataset of two tiny images, and
tools/visualize.py with a stand-in depth model."""

import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.catalog import Metadata

from percep_det.config import get_percep_cfg
from percep_det.data.depth_io import write_depth_png
from percep_det.utils.visualize import (
    DEPTH_INVALID_COLOUR,
    draw_dataset_predictions,
    draw_depth_comparison,
    draw_prediction,
)
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATASET = "percep_test_depth_pictures_tiny"
H, W = 24, 32
BAND = 16  # title band height at scale 1
GREY = np.array(DEPTH_INVALID_COLOUR)


def _gt() -> np.ndarray:
    """(H, W) ground truth: 2 m on the left half, 4 m on the right, invalid (0) in the top-left
    8x8 corner, beyond max_depth (12 m) in the bottom-right 4x4 corner."""
    gt = np.full((H, W), 2.0, np.float32)
    gt[:, W // 2 :] = 4.0
    gt[:8, :8] = 0.0
    gt[-4:, -4:] = 12.0
    return gt


def test_draw_depth_comparison_panels():
    image = np.random.RandomState(0).randint(0, 256, (H, W, 3)).astype(np.uint8)
    gt, pred = _gt(), torch.full((H, W), 2.0)  # right on the left half, 50 % short on the right
    picture = draw_depth_comparison(image, pred, gt, max_depth=10.0)
    assert picture.shape == (BAND + H, 4 * W, 3) and picture.dtype == np.uint8
    image_p, truth, prediction, error = (picture[BAND:, k * W : (k + 1) * W] for k in range(4))
    assert (image_p == image).all()
    invalid = np.zeros((H, W), bool)
    invalid[:8, :8] = invalid[-4:, -4:] = True
    for panel in (truth, error):
        assert (panel[invalid] == GREY).all()
        assert (panel[~invalid] != GREY).any(axis=-1).all()
    assert (prediction != GREY).any(axis=-1).all()  # the prediction has no invalid pixels
    # one colour scale: 2 m has the same colour in truth and prediction, 4 m another
    assert (truth[10, 2] == prediction[10, 2]).all() and (truth[10, 2] != truth[10, -8]).any()
    # no error on the left half, 0.5 on the right: different colours
    assert (error[10, 2] != error[10, -8]).any() and (error[10, 2] == error[12, 3]).all()
    assert picture[:BAND].max() > 100  # titles


def test_draw_depth_comparison_scale_and_no_truth():
    image = np.zeros((H, W, 3), np.uint8)
    picture = draw_depth_comparison(image, np.ones((H, W)), _gt(), 10.0, scale=2)
    assert picture.shape == (2 * BAND + 2 * H, 8 * W, 3)
    truth = picture[2 * BAND :, 2 * W : 4 * W]
    assert (truth[:16, :16] == GREY).all() and (truth[16:, :16] != GREY).any(axis=-1).all()
    only_prediction = draw_depth_comparison(image, np.ones((H, W)), None, 10.0)
    assert only_prediction.shape == (BAND + H, 2 * W, 3)
    with pytest.raises(ValueError, match=r"\(24, 30\).*\(24, 32\)"):
        draw_depth_comparison(image, np.ones((H, 30)), None, 10.0)
    with pytest.raises(ValueError, match=r"ground-truth.*\(20, 32\)"):
        draw_depth_comparison(image, np.ones((H, W)), np.ones((20, W)), 10.0)


def test_draw_prediction_depth_needs_max_depth():
    image = np.zeros((H, W, 3), np.uint8)
    with pytest.raises(KeyError, match="'percep_test_no_depth_range'.*'max_depth'"):
        draw_prediction(
            image, MetadataCatalog.get("percep_test_no_depth_range"), {"depth": torch.ones(H, W)}
        )
    picture = draw_prediction(image, Metadata(max_depth=5.0), {"depth": torch.ones(H, W)})
    assert picture.shape == (BAND + H, 2 * W, 3)


@pytest.fixture
def depth_dataset(tmp_path):
    """Two tiny RGB images with depth PNGs (millimetres), registered for the test only."""
    records = []
    for i in range(2):
        image = np.full((H, W, 3), 60 * (i + 1), np.uint8)
        cv2.imwrite(str(tmp_path / f"scene{i}.png"), image)
        write_depth_png(str(tmp_path / f"scene{i}_depth.png"), _gt())
        records.append(
            {
                "file_name": str(tmp_path / f"scene{i}.png"),
                "depth_file_name": str(tmp_path / f"scene{i}_depth.png"),
                "height": H,
                "width": W,
                "image_id": i,
            }
        )
    DatasetCatalog.register(DATASET, lambda: records)
    MetadataCatalog.get(DATASET).set(
        evaluator_type="depth",
        depth_scale=1000.0,
        intrinsics=(30.0, 30.0, W / 2, H / 2),
        min_depth=1e-3,
        max_depth=10.0,
        eigen_crop=False,
    )
    yield records
    DatasetCatalog.remove(DATASET)
    MetadataCatalog.remove(DATASET)


class _ConstantDepthModel(torch.nn.Module):
    """A stand-in depth model: 3 m everywhere, at the original size of each image."""

    def forward(self, batched_inputs):
        return [{"depth": torch.full((x["height"], x["width"]), 3.0)} for x in batched_inputs]


def test_draw_dataset_predictions_depth(depth_dataset, tmp_path):
    cfg = get_percep_cfg()
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 48, 64  # the model sees 2x the image
    out = tmp_path / "vis"
    paths = draw_dataset_predictions(cfg, _ConstantDepthModel(), DATASET, str(out), 5)
    assert [os.path.basename(p) for p in paths] == [
        f"{DATASET}_scene0.png",
        f"{DATASET}_scene1.png",
    ]
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in paths)
    picture = cv2.imread(paths[1])[:, :, ::-1]  # RGB
    assert picture.shape == (BAND + H, 4 * W, 3)
    assert (picture[BAND:, :W] == 120).all()  # the image panel
    truth = picture[BAND:, W : 2 * W]
    assert (truth[:8, :8] == GREY).all() and (truth[-4:, -4:] == GREY).all()  # from the PNG
    prediction = picture[BAND:, 2 * W : 3 * W]
    assert (prediction == prediction[0, 0]).all()  # constant 3 m


def _load_tool(name):
    module = load_script(os.path.join(ROOT, "tools", f"{name}.py"), f"percep_tool_{name}")
    return module


def test_visualize_tool_depth(depth_dataset, tmp_path, monkeypatch, capsys):
    visualize = _load_tool("visualize")
    monkeypatch.setattr(visualize, "build_model", lambda cfg: _ConstantDepthModel())
    config = tmp_path / "depth.yaml"
    config.write_text(
        "MODEL: {DEVICE: cpu, WEIGHTS: ''}\n"
        f"DATASETS: {{TEST: [{DATASET}]}}\n"
        "INPUT: {MIN_SIZE_TEST: 24, MAX_SIZE_TEST: 32}\n"
    )
    out = tmp_path / "vis"
    args = ["--config-file", str(config), "--output", str(out)]
    assert visualize.main(args + ["--dataset", DATASET, "--num", "1", "--scale", "2"]) == 0
    picture = cv2.imread(str(out / f"{DATASET}_scene0.png"))
    assert picture.shape == (2 * BAND + 2 * H, 8 * W, 3)
    assert visualize.main(args + ["--input", depth_dataset[0]["file_name"]]) == 0
    assert cv2.imread(str(out / "scene0_pred.png")).shape == (BAND + H, 2 * W, 3)
    assert "wrote 1 overlays" in capsys.readouterr().out
    # image files without a depth test set: the colour range of MODEL.DEPTH
    cfg = get_percep_cfg()
    cfg.DATASETS.TEST = ()
    metadata = visualize.image_metadata(cfg)
    assert metadata.max_depth == cfg.MODEL.DEPTH.MAX_DEPTH
    assert metadata.min_depth == cfg.MODEL.DEPTH.MIN_DEPTH
    assert MetadataCatalog.get("__unused").get("max_depth", None) is None  # catalog unchanged
