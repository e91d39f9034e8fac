"""ResNet-FPN backbone of FCOS / CondInst: P3-P5 from the FPN, P6 and P7 from P5.

Built from detectron2's own ``build_resnet_backbone`` and ``FPN``, so detectron2's ImageNet
checkpoints (``R-50.pkl``) load through ``DetectionCheckpointer`` with the usual c2 name
conversion, and the names match AdelaiDet's ``build_fcos_resnet_fpn_backbone``.
"""

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7

__all__ = ["build_percep_fcos_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_percep_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """
    ResNet (``MODEL.RESNETS.*``) + FPN (``MODEL.FPN.*``) with ``MODEL.FCOS.TOP_LEVELS`` extra
    levels computed from P5: 2 gives P6 = conv(P5), P7 = conv(ReLU(P6)); 0 gives none.
    """
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    top_levels = cfg.MODEL.FCOS.TOP_LEVELS
    if top_levels == 2:
        # in_feature "p5": the extra levels are computed from the FPN output, not from res5.
        top_block = LastLevelP6P7(out_channels, out_channels, in_feature="p5")
    elif top_levels == 0:
        top_block = None
    else:
        raise NotImplementedError(
            f"MODEL.FCOS.TOP_LEVELS={top_levels} is not supported; use 2 (P6, P7) or 0."
        )
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=top_block,
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
