"""Helpers of the perceptual-CondInst tests: tiny perceptual configs and teacher files on disk."""

import os
from typing import Tuple

import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from tests.helpers import tiny_condinst_cfg


def tiny_percep_cfg(target: str = "gt", **percep) -> CfgNode:
    """:func:`tiny_condinst_cfg` with the perceptual head and a 2-block, 8-channel loss net."""
    cfg = tiny_condinst_cfg()
    cfg.MODEL.CONDINST.MASK_HEAD.NAME = "PercepPerceptualDynamicMaskHead"
    cfg.MODEL.PERCEPTUAL_LOSS.BLOCKS = [1, 1]
    cfg.MODEL.PERCEPTUAL_LOSS.WIDTHS = [8, 8]
    cfg.MODEL.PERCEPTUAL_LOSS.CHUNK_SIZE = 4
    cfg.MODEL.CONDINST.PERCEPTUAL.TARGET = target
    for key, value in percep.items():
        cfg.MODEL.CONDINST.PERCEPTUAL[key] = value
    return cfg


def tiny_teacher_cfg() -> CfgNode:
    """A teacher that differs from the student in depth-independent widths (mask branch
    channels, head channels) but shares strides, levels and normalisation."""
    cfg = tiny_condinst_cfg()
    cfg.MODEL.CONDINST.MASK_BRANCH.CHANNELS = 8
    cfg.MODEL.CONDINST.MASK_HEAD.CHANNELS = 4
    return cfg


def write_teacher(tmp_dir: str, cfg: CfgNode = None, seed: int = 5) -> Tuple[str, str]:
    """Save a randomly initialised teacher: returns (config_file, weights_file)."""
    cfg = tiny_teacher_cfg() if cfg is None else cfg
    torch.manual_seed(seed)
    model = build_model(cfg)
    config_file = os.path.join(tmp_dir, "teacher.yaml")
    weights = os.path.join(tmp_dir, "teacher.pth")
    with open(config_file, "w") as f:
        f.write(cfg.dump())
    torch.save({"model": model.state_dict()}, weights)
    return config_file, weights


def teacher_student_cfg(tmp_dir: str, **percep) -> CfgNode:
    """A student with TARGET "teacher" and a teacher written to ``tmp_dir``."""
    config_file, weights = write_teacher(tmp_dir)
    cfg = tiny_percep_cfg("teacher", **percep)
    cfg.MODEL.CONDINST.PERCEPTUAL.TEACHER.CONFIG_FILE = config_file
    cfg.MODEL.CONDINST.PERCEPTUAL.TEACHER.WEIGHTS = weights
    return cfg
