"""A dilated ResNet (output stride 8 or 16) of any depth, ResNet-18/34 included.

detectron2's ``build_resnet_backbone`` refuses dilation for basic blocks (R18/R34) and its DeepLab
``build_resnet_deeplab_backbone`` accepts depths 50/101/152 only; PSPNet students are dilated
ResNet-18s (output stride 8). This builder reuses detectron2's ``ResNet``, ``BottleneckBlock``,
``BasicStem`` and DeepLab's ``DeepLabStem``; the only new block is :class:`PercepDilatedBasicBlock`
(``BasicBlock`` with dilated 3x3 convs, the same parameters).

The module names are detectron2's (``stem.conv1``, ``res2.0.conv1.norm``, ``res3.0.shortcut``,
...), so ImageNet weights load as for any detectron2 ResNet: MSRA / detectron2 ``.pkl`` files, or
torchvision's ``resnet{18,34,50,101}`` converted with detectron2's
``tools/convert-torchvision-to-d2.py`` (then ``STEM_TYPE "basic"``, ``STRIDE_IN_1X1 False``, RGB
input with torchvision's mean/std). Dilation changes no weight shape.

Config (``MODEL.RESNETS``, the DeepLab names): ``RES4_DILATION`` 1 or 2 and ``RES5_DILATION`` 1, 2
or 4 (res4 = 2 needs res5 = 4); a dilated stage keeps stride 1, and every 3x3 conv of its blocks has
that dilation. Output stride 8 is ``RES4_DILATION 2, RES5_DILATION 4``: res2..res5 have strides 4,
8, 8, 8. ``STEM_TYPE "deeplab"`` is the deep stem (3x3 convs with 64, 64, 128 channels for
``STEM_OUT_CHANNELS 128``), ``"basic"`` the 7x7 one. ``RES5_MULTI_GRID`` is not used (PSPNet has
none).
"""

from typing import List

from detectron2.config import CfgNode
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone.resnet import BasicBlock, BasicStem, BottleneckBlock, ResNet
from detectron2.projects.deeplab.resnet import DeepLabStem

__all__ = ["PercepDilatedBasicBlock", "PercepDilatedResNet", "build_percep_dilated_resnet_backbone"]

_BLOCKS_PER_STAGE = {
    18: [2, 2, 2, 2],
    34: [3, 4, 6, 3],
    50: [3, 4, 6, 3],
    101: [3, 4, 23, 3],
    152: [3, 8, 36, 3],
}
_STEMS = {"basic": BasicStem, "deeplab": DeepLabStem}


class PercepDilatedBasicBlock(BasicBlock):
    """detectron2's :class:`BasicBlock` whose two 3x3 convs have ``dilation`` (and padding
    ``dilation``, so the size is kept); parameters and their names are the parent's."""

    def __init__(self, in_channels: int, out_channels: int, *, stride=1, dilation=1, norm="BN"):
        """
        Args:
            in_channels, out_channels, stride, norm: see :class:`BasicBlock`.
            dilation: dilation of both 3x3 convs.
        """
        super().__init__(in_channels, out_channels, stride=stride, norm=norm)
        for conv in (self.conv1, self.conv2):
            conv.dilation = (dilation, dilation)
            conv.padding = (dilation, dilation)


class PercepDilatedResNet(ResNet):
    """detectron2's :class:`ResNet` that asks for inputs padded to a multiple of its total stride
    (8 at output stride 8), so a head's logits upsampled by its stride cover the padded input
    exactly (the padding is labelled ignore)."""

    @property
    def size_divisibility(self) -> int:
        return max(self._out_feature_strides.values())


def _check(cfg: CfgNode, depth: int, res4_dilation: int, res5_dilation: int) -> None:
    rc = cfg.MODEL.RESNETS
    if depth not in _BLOCKS_PER_STAGE:
        raise ValueError(
            f"MODEL.RESNETS.DEPTH must be one of {sorted(_BLOCKS_PER_STAGE)} for "
            f"build_percep_dilated_resnet_backbone, got {depth}"
        )
    if res4_dilation not in (1, 2) or res5_dilation not in (1, 2, 4):
        raise ValueError(
            "MODEL.RESNETS.RES4_DILATION must be 1 or 2 and RES5_DILATION 1, 2 or 4, got "
            f"{res4_dilation} and {res5_dilation}"
        )
    if res4_dilation == 2 and res5_dilation != 4:
        raise ValueError(
            "MODEL.RESNETS.RES4_DILATION 2 needs RES5_DILATION 4 (output stride 8), got "
            f"RES5_DILATION {res5_dilation}"
        )
    if rc.STEM_TYPE not in _STEMS:
        raise ValueError(
            f"MODEL.RESNETS.STEM_TYPE must be one of {sorted(_STEMS)}, got {rc.STEM_TYPE!r}"
        )
    if any(rc.DEFORM_ON_PER_STAGE):
        raise ValueError(
            "MODEL.RESNETS.DEFORM_ON_PER_STAGE is not supported by "
            "build_percep_dilated_resnet_backbone (pure Python); set it to all False"
        )
    if depth < 50 and rc.NUM_GROUPS != 1:
        raise ValueError(f"MODEL.RESNETS.NUM_GROUPS must be 1 for R{depth}, got {rc.NUM_GROUPS}")


@BACKBONE_REGISTRY.register()
def build_percep_dilated_resnet_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> ResNet:
    """
    A dilated ResNet from ``MODEL.RESNETS`` (see the module docstring).

    Returns:
        a :class:`PercepDilatedResNet` with the ``MODEL.RESNETS.OUT_FEATURES`` (e.g. res4 / res5 of
        ``(N, C, H/8, W/8)`` at output stride 8), frozen up to ``MODEL.BACKBONE.FREEZE_AT``.
    """
    rc = cfg.MODEL.RESNETS
    depth = rc.DEPTH
    res4_dilation, res5_dilation = rc.RES4_DILATION, rc.RES5_DILATION
    _check(cfg, depth, res4_dilation, res5_dilation)
    stem = _STEMS[rc.STEM_TYPE](
        in_channels=input_shape.channels, out_channels=rc.STEM_OUT_CHANNELS, norm=rc.NORM
    )
    in_channels = rc.STEM_OUT_CHANNELS
    out_channels = rc.RES2_OUT_CHANNELS
    bottleneck_channels = rc.NUM_GROUPS * rc.WIDTH_PER_GROUP
    dilations = {2: 1, 3: 1, 4: res4_dilation, 5: res5_dilation}
    last_stage = max({"res2": 2, "res3": 3, "res4": 4, "res5": 5}[f] for f in rc.OUT_FEATURES)
    stages: List[list] = []
    for stage_idx in range(2, last_stage + 1):
        num_blocks = _BLOCKS_PER_STAGE[depth][stage_idx - 2]
        dilation = dilations[stage_idx]
        first_stride = 1 if stage_idx == 2 or dilation > 1 else 2
        kwargs = {
            "num_blocks": num_blocks,
            "stride_per_block": [first_stride] + [1] * (num_blocks - 1),
            "in_channels": in_channels,
            "out_channels": out_channels,
            "norm": rc.NORM,
            "dilation": dilation,
        }
        if depth < 50:
            kwargs["block_class"] = PercepDilatedBasicBlock
        else:
            kwargs["block_class"] = BottleneckBlock
            kwargs["bottleneck_channels"] = bottleneck_channels
            kwargs["stride_in_1x1"] = rc.STRIDE_IN_1X1
            kwargs["num_groups"] = rc.NUM_GROUPS
        stages.append(ResNet.make_stage(**kwargs))
        in_channels = out_channels
        out_channels *= 2
        bottleneck_channels *= 2
    return PercepDilatedResNet(
        stem, stages, out_features=rc.OUT_FEATURES, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT
    )
