"""A tiny depth model config and inputs for the depth tests."""

from typing import Dict, List

import torch
from detectron2.config import CfgNode

from percep_det.config import get_percep_cfg


def tiny_depth_cfg(output: str = "bins", vnl: float = 0.0, percep: bool = False) -> CfgNode:
    """A ResNet-18 at 1/8 width (strides 4..32) with a 16-channel decoder and 16 bins; the loss
    net (when ``percep``) a 2-block, 8-channel VGG."""
    cfg = get_percep_cfg()
    cfg.MODEL.META_ARCHITECTURE = "PercepDepthEstimator"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.BACKBONE.NAME = "build_percep_dilated_resnet_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    rc = cfg.MODEL.RESNETS
    rc.DEPTH = 18
    rc.NORM = "BN"
    rc.STEM_TYPE = "basic"
    rc.STEM_OUT_CHANNELS = 8
    rc.RES2_OUT_CHANNELS = 8
    rc.RES4_DILATION = 1
    rc.RES5_DILATION = 1
    rc.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    dc = cfg.MODEL.DEPTH
    dc.CONVS_DIM = 16
    dc.OUTPUT = output
    dc.NUM_BINS = 16
    dc.MIN_DEPTH = 0.5
    dc.MAX_DEPTH = 10.0
    dc.VNL_WEIGHT = vnl
    dc.PERCEPTUAL = percep
    pc = cfg.MODEL.PERCEPTUAL_LOSS
    pc.BLOCKS = [1, 1]
    pc.WIDTHS = [8, 8]
    return cfg


def depth_inputs(
    num: int = 2, size=(64, 48), invalid_last: bool = False, seed: int = 0
) -> List[Dict]:
    """Random images with a slanted-plane depth (1.5 .. 6 m), a few holes, intrinsics."""
    g = torch.Generator().manual_seed(seed)
    h, w = size
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    out = []
    for i in range(num):
        depth = 6.0 - 4.5 * rows / h + 0.1 * i
        depth = depth * (torch.rand(h, w, generator=g) > 0.05)  # 5% holes (0 = invalid)
        if invalid_last and i == num - 1:
            depth = torch.zeros(h, w)
        out.append(
            {
                "image": torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
                "depth": depth,
                "intrinsics": torch.tensor([60.0, 60.0, w / 2, h / 2]),
                "height": h,
                "width": w,
            }
        )
    return out
