"""Shared helpers for the tests: tiny CondInst configs and synthetic inputs (CPU, seeded)."""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks

from percep_det import add_percep_det_config


def get_condinst_cfg(config_file: Optional[str] = None) -> CfgNode:
    """detectron2 defaults + percep_det keys (+ a YAML), on CPU."""
    cfg = get_cfg()
    add_percep_det_config(cfg)
    if config_file is not None:
        cfg.merge_from_file(config_file)
    cfg.MODEL.DEVICE = "cpu"
    return cfg


def tiny_condinst_cfg(num_classes: int = 3, semantic: bool = False) -> CfgNode:
    """A CondInst small enough to train a step on 64x64 images in well under a second:
    R18 with BN (random init), 64-channel FPN / towers, one conv per tower."""
    cfg = get_condinst_cfg()
    cfg.MODEL.META_ARCHITECTURE = "PercepCondInst"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.BACKBONE.NAME = "build_percep_fcos_resnet_fpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 64  # GN(32) needs > 1 value per group on 1x1 P7
    cfg.MODEL.PROPOSAL_GENERATOR.NAME = "PercepFCOS"
    cfg.MODEL.FCOS.NUM_CLASSES = num_classes
    cfg.MODEL.FCOS.NUM_CLS_CONVS = 1
    cfg.MODEL.FCOS.NUM_BOX_CONVS = 1
    cfg.MODEL.FCOS.THRESH_WITH_CTR = True
    cfg.MODEL.FCOS.SIZES_OF_INTEREST = [16, 32, 64, 128]
    cfg.MODEL.CONDINST.MAX_PROPOSALS = 50
    cfg.MODEL.CONDINST.MASK_BRANCH.CHANNELS = 16
    cfg.MODEL.CONDINST.MASK_BRANCH.NUM_CONVS = 2
    cfg.MODEL.CONDINST.MASK_BRANCH.SEMANTIC_LOSS_ON = semantic
    return cfg


def rect_instances(
    image_size: Tuple[int, int],
    boxes: Sequence[Sequence[float]],
    classes: Sequence[int],
    mask_format: str = "polygon",
) -> Instances:
    """Ground truth of rectangles: ``gt_boxes``, ``gt_classes`` and rectangle ``gt_masks``."""
    h, w = image_size
    inst = Instances(image_size)
    box_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    inst.gt_boxes = Boxes(box_t)
    inst.gt_classes = torch.tensor(classes, dtype=torch.long)
    if len(boxes) == 0:
        return inst  # like detectron2's mapper: no gt_masks field for an image without objects
    if mask_format == "polygon":
        polys = [
            [np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=np.float64)]
            for x0, y0, x1, y1 in box_t.tolist()
        ]
        inst.gt_masks = PolygonMasks(polys)
    else:
        masks = torch.zeros((len(boxes), h, w), dtype=torch.bool)
        for i, (x0, y0, x1, y1) in enumerate(box_t.round().long().tolist()):
            masks[i, y0:y1, x0:x1] = True
        inst.gt_masks = BitMasks(masks)
    return inst


def make_inputs(
    gts: List[Tuple[List[List[float]], List[int]]],
    size: Tuple[int, int] = (64, 64),
    seed: int = 0,
    mask_format: str = "polygon",
    with_instances: bool = True,
) -> List[Dict]:
    """Dataset dicts with a random uint8 image of ``size`` and rectangle ground truths."""
    gen = torch.Generator().manual_seed(seed)
    inputs = []
    for boxes, classes in gts:
        d = {
            "image": torch.randint(0, 256, (3, *size), generator=gen, dtype=torch.uint8),
            "height": size[0],
            "width": size[1],
        }
        if with_instances:
            d["instances"] = rect_instances(size, boxes, classes, mask_format)
        inputs.append(d)
    return inputs


# two rectangles (classes 0 and 2) / no object, as (boxes, classes) for make_inputs
TWO_OBJECTS = ([[5, 5, 40, 30], [20, 20, 60, 60]], [0, 2])
NO_OBJECT: Tuple[List[List[float]], List[int]] = ([], [])


def build(cfg, seed: int = 0):
    """The model of ``cfg`` with weights drawn after ``torch.manual_seed(seed)``."""
    import torch
    from detectron2.modeling import build_model

    torch.manual_seed(seed)
    return build_model(cfg)


def train_step(model, inputs):
    """One training forward (loss dict) under an EventStorage."""
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage():
        return model(inputs)


def assert_frozen_outside(model, frozen) -> None:
    """``frozen`` (a loss network or a teacher) has no trainable parameter and got no gradient, and
    none of its parameters is one of ``model``'s: the optimizer cannot see it."""
    assert all(not p.requires_grad and p.grad is None for p in frozen.parameters())
    assert {id(p) for p in frozen.parameters()}.isdisjoint(id(p) for p in model.parameters())


def load_script(path: str, name: str = ""):
    """Import a script of this repository that is not a package module (``tools/train_net.py``,
    ``datasets/prepare_nyu_v2.py``) as a fresh module; ``path`` absolute or relative to the root."""
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = path if os.path.isabs(path) else os.path.join(root, path)
    name = name or "percep_script_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
