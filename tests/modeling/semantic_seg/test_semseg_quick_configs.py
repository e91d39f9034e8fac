"""The CPU quick configs of semantic segmentation: each builds and trains a step on a 128 x 128
batch; the perceptual-teacher config uses a teacher saved from the teacher config."""

import os

import pytest
import torch
from detectron2.modeling import build_model

from percep_det.config import get_percep_cfg
from tests.helpers import train_step
from tests.modeling.semantic_seg.semseg_helpers import make_inputs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
QUICK = os.path.join(ROOT, "configs", "quick_schedules")
CONFIGS = {
    "baseline": "semseg_psp_R18_shapes_cpu.yaml",
    "teacher": "semseg_psp_R18_teacher_shapes_cpu.yaml",
    "percep_gt": "semseg_psp_R18_percep_gt_shapes_cpu.yaml",
    "percep_teacher": "semseg_psp_R18_percep_teacher_shapes_cpu.yaml",
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_quick_config_trains_a_step(name, tmp_path):
    opts = []
    if name == "percep_teacher":
        teacher_file = os.path.join(QUICK, CONFIGS["teacher"])
        torch.manual_seed(0)
        teacher = build_model(get_percep_cfg(teacher_file))
        weights = str(tmp_path / "teacher.pth")
        torch.save({"model": teacher.state_dict()}, weights)
        opts = [
            "MODEL.SEM_SEG_PERCEPTUAL.TEACHER.CONFIG_FILE",
            teacher_file,
            "MODEL.SEM_SEG_PERCEPTUAL.TEACHER.WEIGHTS",
            weights,
        ]
    cfg = get_percep_cfg(os.path.join(QUICK, CONFIGS[name]), opts)
    assert cfg.DATASETS.TRAIN == ("percep_shapes_sem_seg_train",)
    assert cfg.DATASETS.TEST == ("percep_shapes_sem_seg_val",)
    assert cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES == 5  # background + 4 shapes
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.backbone.output_shape()["res5"].stride == 8
    losses = train_step(model, make_inputs(2, (128, 128), num_classes=5))
    assert {"loss_sem_seg", "loss_sem_seg_aux"} <= set(losses)
    assert ("loss_sem_seg_percep" in losses) == name.startswith("percep")
    assert all(torch.isfinite(v) for v in losses.values())
