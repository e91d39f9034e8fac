"""Helpers of the semantic-segmentation tests: tiny configs (one per head), inputs, model files."""

import os
from typing import Dict, List, Tuple

import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from tests.helpers import get_condinst_cfg

HEADS = ("psp", "fpn", "deeplabv3plus", "deeplabv3")


def tiny_semseg_cfg(head: str = "psp", num_classes: int = 4, percep: bool = True) -> CfgNode:
    """A segmentor that trains a step on two 64x64 images in a fraction of a second: a dilated
    output-stride-8 ResNet-18 with 8..64 channels (an R18 FPN for "fpn") and a 16-channel head;
    with ``percep`` the perceptual meta-architecture with a 2-block, 8-channel loss net."""
    cfg = get_condinst_cfg()
    cfg.MODEL.META_ARCHITECTURE = "PercepSemanticSegmentor" if percep else "SemanticSegmentor"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    rc = cfg.MODEL.RESNETS
    rc.DEPTH = 18
    rc.NORM = "BN"
    rc.STEM_TYPE = "basic"
    if head == "fpn":  # the standard Panoptic-FPN semantic branch on an R18 FPN
        cfg.MODEL.BACKBONE.NAME = "build_resnet_fpn_backbone"
        rc.RES2_OUT_CHANNELS = 64
        rc.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
        cfg.MODEL.FPN.OUT_CHANNELS = 16
    else:
        cfg.MODEL.BACKBONE.NAME = "build_percep_dilated_resnet_backbone"
        rc.STEM_OUT_CHANNELS = 8
        rc.RES2_OUT_CHANNELS = 8
        rc.RES4_DILATION = 2
        rc.RES5_DILATION = 4
        rc.OUT_FEATURES = ["res2", "res4", "res5"]
    hc = cfg.MODEL.SEM_SEG_HEAD
    hc.NUM_CLASSES = num_classes
    hc.CONVS_DIM = 16
    hc.NORM = "BN"
    hc.IGNORE_VALUE = 255
    if head == "psp":
        hc.NAME = "PercepPSPHead"
        hc.IN_FEATURES = ["res5"]
        hc.AUX_IN_FEATURE = "res4"
    elif head == "fpn":
        hc.NAME = "SemSegFPNHead"
        hc.IN_FEATURES = ["p2", "p3", "p4", "p5"]
        hc.COMMON_STRIDE = 4
    elif head == "deeplabv3plus":
        hc.NAME = "DeepLabV3PlusHead"
        hc.IN_FEATURES = ["res2", "res5"]
        hc.PROJECT_CHANNELS = [8]
        hc.ASPP_CHANNELS = 16
        hc.ASPP_DILATIONS = [1, 2, 3]
        hc.COMMON_STRIDE = 4
        hc.LOSS_TYPE = "cross_entropy"
    elif head == "deeplabv3":
        hc.NAME = "DeepLabV3Head"
        hc.IN_FEATURES = ["res5"]
        hc.ASPP_CHANNELS = 16  # = CONVS_DIM: its predictor reads CONVS_DIM channels
        hc.ASPP_DILATIONS = [1, 2, 3]
        hc.COMMON_STRIDE = 8
        hc.LOSS_TYPE = "cross_entropy"
    else:
        raise ValueError(head)
    lc = cfg.MODEL.PERCEPTUAL_LOSS
    lc.BLOCKS = [1, 1]
    lc.WIDTHS = [8, 8]
    lc.CHUNK_SIZE = 2
    return cfg


def deterministic(cfg: CfgNode) -> CfgNode:
    """The same model without batch statistics or dropout: a training forward equals an
    inference forward (FrozenBN backbone, no norm in the head, dropout 0)."""
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.SEM_SEG_HEAD.NORM = ""
    cfg.MODEL.SEM_SEG_HEAD.PSP_DROPOUT = 0.0
    cfg.MODEL.SEM_SEG_HEAD.ASPP_DROPOUT = 0.0
    return cfg


def make_inputs(
    num_images: int = 2, size: Tuple[int, int] = (64, 64), num_classes: int = 4, seed: int = 0
) -> List[Dict]:
    """Dataset dicts with a random uint8 image and labels of blocky regions, some pixels 255."""
    gen = torch.Generator().manual_seed(seed)
    inputs = []
    for _ in range(num_images):
        cells = torch.randint(0, num_classes, (size[0] // 8, size[1] // 8), generator=gen)
        labels = cells.repeat_interleave(8, 0).repeat_interleave(8, 1)
        labels[: size[0] // 4, : size[1] // 4] = 255
        inputs.append(
            {
                "image": torch.randint(0, 256, (3, *size), generator=gen, dtype=torch.uint8),
                "sem_seg": labels,
                "height": size[0],
                "width": size[1],
            }
        )
    return inputs


def build(cfg: CfgNode, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(cfg)


def write_model(
    tmp_dir: str, cfg: CfgNode, name: str = "teacher", seed: int = 5
) -> Tuple[str, str]:
    """Save a randomly initialised model of ``cfg``: returns (config_file, weights_file)."""
    model = build(cfg, seed)
    config_file = os.path.join(tmp_dir, f"{name}.yaml")
    weights = os.path.join(tmp_dir, f"{name}.pth")
    with open(config_file, "w") as f:
        f.write(cfg.dump())
    torch.save({"model": model.state_dict()}, weights)
    return config_file, weights


def teacher_cfg_of(cfg: CfgNode, config_file: str, weights: str, temperature: float = 1.0):
    """``cfg`` with TARGET "teacher" reading the given teacher files."""
    cfg = cfg.clone()
    pc = cfg.MODEL.SEM_SEG_PERCEPTUAL
    pc.TARGET = "teacher"
    pc.TEMPERATURE = temperature
    pc.TEACHER.CONFIG_FILE = config_file
    pc.TEACHER.WEIGHTS = weights
    return cfg
