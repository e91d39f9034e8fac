"""tools/depth_baselines.py on two tiny hand-made depth datasets."""

import os

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from percep_det.data import write_depth_png
from tests.helpers import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool():
    module = load_script(os.path.join(ROOT, "tools", "depth_baselines.py"), "depth_baselines")
    return module


def _register(name, maps, tmp_path):
    records = []
    for i, d in enumerate(maps):
        path = os.path.join(tmp_path, f"{name}_{i}.png")
        write_depth_png(path, np.asarray(d, np.float32))
        records.append(
            {"file_name": path, "depth_file_name": path, "height": 2, "width": 2, "image_id": i}
        )
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(
        evaluator_type="depth", depth_scale=1000.0, min_depth=0.1, max_depth=10.0, eigen_crop=False
    )


def test_baselines_by_hand(tmp_path):
    names = ("percep_test_baseline_train", "percep_test_baseline_test")
    try:
        # train: valid depths 1, 3 (image 0) and 2, 2 (image 1; zeros are invalid): mean 2, median 2
        _register(names[0], [[[1.0, 0.0], [3.0, 0.0]], [[2.0, 0.0], [2.0, 0.0]]], tmp_path)
        _register(names[1], [[[4.0, 1.0], [2.0, 0.0]]], tmp_path)
        out = _tool().baselines(*names)
        # predicting 2 against 4, 1, 2: |2-4|/4, |2-1|/1, 0 -> AbsRel (0.5 + 1 + 0) / 3
        assert out["train mean"]["AbsRel"] == pytest.approx(0.5, abs=1e-6)
        # per-pixel prior: (1+2)/2 = 1.5, no valid training depth at (0, 1) -> the mean 2,
        # (3+2)/2 = 2.5: |1.5-4|/4, |2-1|/1, |2.5-2|/2 -> (0.625 + 1 + 0.25) / 3
        assert out["per-pixel train mean"]["AbsRel"] == pytest.approx(1.875 / 3, abs=1e-6)
    finally:
        for n in names:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)
