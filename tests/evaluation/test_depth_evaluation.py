"""Depth metrics on hand-made arrays (every expected value worked out by hand below), the Eigen
crop, and DepthEvaluator end to end on tiny 16-bit depth PNGs of a temporary dataset."""

import json
import os

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation.testing import flatten_results_dict

from percep_det.data.depth_io import write_depth_png
from percep_det.evaluation import (
    DEPTH_METRICS,
    DepthEvaluator,
    compute_depth_metrics,
    depth_valid_mask,
    eigen_crop_box,
)

# Ground truth 1, 2, 4 m and one invalid pixel (0); predictions 1.6, 2, 3 m (and 7 m on the
# invalid pixel, which must not count). Per valid pixel:
#   d - d* = 0.6, 0, -1;  |d - d*| / d* = 0.6, 0, 0.25;  (d - d*)^2 / d* = 0.36, 0, 0.25
#   ln d - ln d* = ln 1.6 = 0.470004, 0, ln 0.75 = -0.287682
#   max(d / d*, d* / d) = 1.6, 1, 1.3333
GT = np.array([[1.0, 2.0], [4.0, 0.0]], np.float32)
PRED = np.array([[1.6, 2.0], [3.0, 7.0]], np.float32)
EXPECTED = {
    "AbsRel": 0.283333,  # (0.6 + 0 + 0.25) / 3
    "SqRel": 0.203333,  # (0.36 + 0 + 0.25) / 3
    "RMSE": 0.673300,  # sqrt((0.36 + 0 + 1) / 3)
    "RMSElog": 0.318153,  # sqrt((0.470004^2 + 0 + 0.287682^2) / 3)
    "log10": 0.109686,  # (0.204120 + 0 + 0.124939) / 3
    "delta1": 1 / 3,  # only the ratio 1 is < 1.25
    "delta2": 2 / 3,  # 1 and 1.3333 are < 1.5625, 1.6 is not
    "delta3": 1.0,  # all < 1.953125
}


def _approx(expected):
    return {k: pytest.approx(v, abs=1e-5) for k, v in expected.items()}


def test_metrics_by_hand():
    metrics = compute_depth_metrics(PRED, GT, min_depth=0.1, max_depth=10.0)
    assert list(metrics) == list(DEPTH_METRICS)
    assert metrics == _approx(EXPECTED)
    assert all(isinstance(v, float) for v in metrics.values())


def test_perfect_prediction():
    gt = np.full((3, 5), 2.5, np.float32)
    metrics = compute_depth_metrics(gt.copy(), gt, 0.1, 10.0)
    errors = {"AbsRel": 0, "SqRel": 0, "RMSE": 0, "RMSElog": 0, "log10": 0}
    assert metrics == {**_approx(errors), "delta1": 1.0, "delta2": 1.0, "delta3": 1.0}


def test_invalid_pixels_are_ignored():
    # 0 (invalid in the files), below min_depth, at/above max_depth: whatever is predicted there
    gt = np.array([[1.0, 0.0, 0.05, 10.0, 12.0]], np.float32)
    pred = np.array([[2.0, 9.0, 9.0, 1.0, 1.0]], np.float32)
    metrics = compute_depth_metrics(pred, gt, min_depth=0.1, max_depth=10.0)
    # only the first pixel: |2 - 1| / 1 = 1, (2 - 1)^2 / 1 = 1, ratio 2
    assert metrics["AbsRel"] == pytest.approx(1.0) and metrics["SqRel"] == pytest.approx(1.0)
    assert metrics["RMSE"] == pytest.approx(1.0)
    assert metrics["RMSElog"] == pytest.approx(0.693147, abs=1e-6)  # ln 2
    assert metrics["log10"] == pytest.approx(0.301030, abs=1e-6)  # log10 2
    assert (metrics["delta1"], metrics["delta2"], metrics["delta3"]) == (0.0, 0.0, 0.0)
    assert depth_valid_mask(gt, 0.1, 10.0).tolist() == [[True, False, False, False, False]]


def test_prediction_is_clipped_into_the_range():
    gt = np.array([[5.0, 2.0, 2.0, 4.0]], np.float32)
    pred = np.array([[20.0, 0.0, -3.0, np.inf]], np.float32)
    metrics = compute_depth_metrics(pred, gt, min_depth=1.0, max_depth=10.0)
    # clipped: 10, 1, 1, 10 -> |d - d*| / d* = 5/5, 1/2, 1/2, 6/4 -> mean 3.5 / 4
    assert metrics["AbsRel"] == pytest.approx(0.875)
    # (d - d*)^2 / d* = 25/5, 1/2, 1/2, 36/4 -> mean 15 / 4
    assert metrics["SqRel"] == pytest.approx(3.75)
    assert np.isfinite(metrics["RMSElog"]) and np.isfinite(metrics["log10"])  # no log of <= 0


def test_nan_prediction_gives_nan_metrics():
    gt = np.array([[1.0, 2.0]], np.float32)
    metrics = compute_depth_metrics(np.array([[np.nan, 2.0]], np.float32), gt, 0.1, 10.0)
    assert all(np.isnan(v) for v in metrics.values())


def test_no_valid_pixel_gives_none():
    assert compute_depth_metrics(np.ones((4, 4)), np.zeros((4, 4)), 0.1, 10.0) is None
    assert compute_depth_metrics(np.ones((4, 4)), np.full((4, 4), 20.0), 0.1, 10.0) is None
    # valid pixels only outside the Eigen crop
    gt = np.zeros((480, 640), np.float32)
    gt[:45] = 1.0
    assert compute_depth_metrics(np.ones_like(gt), gt, 0.1, 10.0, eigen_crop=True) is None


def test_bad_shapes_and_range():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        compute_depth_metrics(np.ones((2, 3)), np.ones((3, 2)), 0.1, 10.0)
    with pytest.raises(ValueError, match="min_depth 0"):
        compute_depth_metrics(np.ones((2, 2)), np.ones((2, 2)), 0.0, 10.0)
    with pytest.raises(ValueError, match=r"\(1, 2, 2\).*\(H, W\)"):
        compute_depth_metrics(np.ones((1, 2, 2)), np.ones((1, 2, 2)), 0.1, 10.0)


def test_eigen_crop():
    assert eigen_crop_box(480, 640) == (45, 471, 41, 601)
    assert eigen_crop_box(240, 320) == (23, 236, 21, 301)  # 22.5, 235.5, 20.5, 300.5 half up
    gt = np.ones((480, 640), np.float32)
    mask = depth_valid_mask(gt, 0.1, 10.0, eigen_crop=True)
    assert mask.sum() == 426 * 560
    assert not mask[44, 300] and mask[45, 300] and mask[470, 300] and not mask[471, 300]
    assert not mask[200, 40] and mask[200, 41] and mask[200, 600] and not mask[200, 601]
    # a prediction that is wrong only outside the crop
    pred = np.full_like(gt, 3.0)
    pred[45:471, 41:601] = 1.0
    assert compute_depth_metrics(pred, gt, 0.1, 10.0, eigen_crop=True)["AbsRel"] == 0.0
    assert compute_depth_metrics(pred, gt, 0.1, 10.0)["AbsRel"] == pytest.approx(
        2.0 * (1 - 426 * 560 / (480 * 640))
    )


DATASET = "percep_test_depth_eval_tiny"


@pytest.fixture
def depth_dataset(tmp_path):
    """Three 2x2 depth PNGs (millimetres): GT above, a constant 2 m map, an all-invalid map."""
    maps = [GT, np.full((2, 2), 2.0, np.float32), np.zeros((2, 2), np.float32)]
    records = []
    for i, depth in enumerate(maps):
        path = str(tmp_path / f"{i}_depth.png")
        write_depth_png(path, depth, depth_scale=1000.0)
        records.append(
            {
                "file_name": str(tmp_path / f"{i}.jpg"),
                "depth_file_name": path,
                "height": 2,
                "width": 2,
                "image_id": i,
            }
        )
    DatasetCatalog.register(DATASET, lambda: records)
    MetadataCatalog.get(DATASET).set(
        evaluator_type="depth",
        depth_scale=1000.0,
        intrinsics=(2.0, 2.0, 1.0, 1.0),
        min_depth=0.1,
        max_depth=10.0,
        eigen_crop=False,
    )
    yield records
    DatasetCatalog.remove(DATASET)
    MetadataCatalog.remove(DATASET)


def _outputs(*maps):
    return [{"depth": torch.as_tensor(m)} for m in maps]


def test_evaluator_end_to_end(depth_dataset, tmp_path, caplog):
    out = tmp_path / "inference"
    evaluator = DepthEvaluator(DATASET, output_dir=str(out))
    evaluator.reset()
    evaluator.process(depth_dataset[:2], _outputs(PRED, np.full((2, 2), 2.0, np.float32)))
    # the mapper may drop depth_file_name (detectron2's drops sem_seg_file_name): found by file_name
    third = {k: v for k, v in depth_dataset[2].items() if k != "depth_file_name"}
    evaluator.process([third], _outputs(np.ones((2, 2), np.float32)))
    with caplog.at_level("WARNING"):
        results = evaluator.evaluate()
    assert "1 image(s)" in caplog.text and "2_depth.png" in caplog.text  # the all-invalid one

    # per-image averages (BTS): image 0 has EXPECTED, image 1 is perfect (0 errors, deltas 1)
    expected = {k: (v + (1.0 if k.startswith("delta") else 0.0)) / 2 for k, v in EXPECTED.items()}
    assert list(results) == ["depth"]
    assert results["depth"] == {**_approx(expected), "num_images": 2}
    flat = flatten_results_dict(results)  # what detectron2 writes into metrics.json
    assert flat["depth/AbsRel"] == pytest.approx(0.283333 / 2, abs=1e-5)

    assert sorted(os.listdir(out)) == ["depth_metrics.json"]  # no temporary file left
    with open(out / "depth_metrics.json") as f:
        written = json.load(f)
    assert [image["image_id"] for image in written["images"]] == [0, 1]
    assert written["images"][0] == {
        "file_name": depth_dataset[0]["file_name"],
        "image_id": 0,
        **_approx(EXPECTED),
    }
    assert written["skipped"] == [depth_dataset[2]["depth_file_name"]]
    assert written["summary"]["num_images"] == 2

    evaluator.reset()  # a second evaluation starts empty
    evaluator.process(depth_dataset[1:2], _outputs(np.full((2, 2), 4.0, np.float32)))
    assert evaluator.evaluate()["depth"]["AbsRel"] == pytest.approx(1.0)


def test_evaluator_errors(depth_dataset):
    evaluator = DepthEvaluator(DATASET, distributed=False)
    with pytest.raises(ValueError, match=r"\(3, 2\).*0_depth.png.*\(2, 2\)"):
        evaluator.process(depth_dataset[:1], _outputs(np.ones((3, 2), np.float32)))
    assert evaluator.evaluate() == {}  # nothing evaluated: a warning, no metrics

    MetadataCatalog.remove(DATASET)
    MetadataCatalog.get(DATASET).set(depth_scale=1000.0, min_depth=0.1, eigen_crop=True)
    with pytest.raises(KeyError, match=f"{DATASET}.*'max_depth'"):
        DepthEvaluator(DATASET)
    MetadataCatalog.get(DATASET).set(max_depth=0.05)
    with pytest.raises(ValueError, match=f"{DATASET}.*min_depth 0.1, max_depth 0.05"):
        DepthEvaluator(DATASET)
