import json
import os
import subprocess
import sys

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes, Instances

import percep_det  # noqa: F401
from percep_det import add_percep_det_config
from percep_det.utils.plot import load_metrics, plot_metrics
from percep_det.utils.visualize import draw_dataset_predictions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _metrics(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def test_plot_metrics_writes_png_and_resume_overrides(tmp_path):
    path = tmp_path / "metrics.json"
    rows = [{"iteration": i, "total_loss": 2.0 / (i + 1), "loss_mask": 1.0 / (i + 1)} for i in range(50)]
    rows.append({"iteration": 49, "segm/AP": 12.5, "bbox/AP": 10.0})
    rows.append({"iteration": 10, "total_loss": 9.0})  # a resumed run re-logs iteration 10
    _metrics(path, rows)
    series = load_metrics(str(path))
    assert dict(series["total_loss"])[10] == 9.0 and len(series["total_loss"]) == 50
    assert series["segm/AP"] == [(49, 12.5)]
    out = plot_metrics(str(path), str(tmp_path / "curves.png"))
    assert os.path.getsize(out) > 10_000


def test_plot_tool_errors_are_clear(tmp_path):
    tool = os.path.join(ROOT, "tools", "plot_metrics.py")
    r = subprocess.run([sys.executable, tool, str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert r.returncode == 2 and "missing.json" in r.stderr
    empty = tmp_path / "metrics.json"
    _metrics(empty, [{"iteration": 1, "lr": 0.1}])
    r = subprocess.run([sys.executable, tool, str(empty)], capture_output=True, text=True)
    assert r.returncode == 2 and "no loss_" in r.stderr


class _FixedModel(torch.nn.Module):
    """Predicts one box/mask at the image centre: enough to test the drawing path."""

    def forward(self, batched_inputs):
        outs = []
        for x in batched_inputs:
            h, w = x["height"], x["width"]
            inst = Instances((h, w))
            inst.pred_boxes = Boxes(torch.tensor([[w / 4, h / 4, 3 * w / 4, 3 * h / 4]]))
            inst.scores = torch.tensor([0.9])
            inst.pred_classes = torch.tensor([1])
            mask = torch.zeros(1, h, w, dtype=torch.bool)
            mask[:, h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
            inst.pred_masks = mask
            outs.append({"instances": inst})
        return outs


def test_draw_dataset_predictions(tmp_path):
    cfg = get_cfg()
    add_percep_det_config(cfg)
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 128, 213
    paths = draw_dataset_predictions(cfg, _FixedModel(), "percep_shapes_val", str(tmp_path), 2, scale=2)
    assert len(paths) == 2
    import cv2

    img = cv2.imread(paths[0])
    assert img.shape == (256, 512, 3)  # ground truth | prediction, drawn at scale 2
    left, right = img[:, :256].astype(int), img[:, 256:].astype(int)
    assert np.abs(left - right).mean() > 1  # different overlays on the two panels
