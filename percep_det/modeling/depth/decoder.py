"""Depth decoders: backbone features -> per-pixel depth outputs at the input resolution.

Decoders are registered in ``DEPTH_HEAD_REGISTRY`` and chosen by ``MODEL.DEPTH.HEAD_NAME``; they are
called as ``head(features)`` and return ``(N, C_out, H, W)`` at the padded input size, with
``C_out`` = ``NUM_BINS`` (``OUTPUT "bins"``) or 1 (``"regression"``).
"""

from typing import Dict, List

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.utils.registry import Registry
from torch import Tensor, nn

__all__ = ["DEPTH_HEAD_REGISTRY", "PercepDepthDecoder", "build_depth_head"]

DEPTH_HEAD_REGISTRY = Registry("PERCEP_DEPTH_HEAD")
DEPTH_HEAD_REGISTRY.__doc__ = """
Registry for depth decoders: ``head(cfg, input_shape: Dict[str, ShapeSpec], out_channels)`` is
called as ``head(features)`` -> ``(N, out_channels, H, W)`` at the padded input size.
"""


def build_depth_head(cfg, input_shape: Dict[str, ShapeSpec], out_channels: int) -> nn.Module:
    """The decoder named by ``MODEL.DEPTH.HEAD_NAME``."""
    name = cfg.MODEL.DEPTH.HEAD_NAME
    if name not in DEPTH_HEAD_REGISTRY:
        raise KeyError(
            f"MODEL.DEPTH.HEAD_NAME {name!r} is not a registered depth decoder; known: "
            f"{sorted(k for k, _ in DEPTH_HEAD_REGISTRY)}"
        )
    return DEPTH_HEAD_REGISTRY.get(name)(cfg, input_shape, out_channels)


@DEPTH_HEAD_REGISTRY.register()
class PercepDepthDecoder(nn.Module):
    """
    A top-down (FPN-style) decoder: each input feature gets a 1x1 lateral conv to ``conv_dims``;
    from the coarsest, the running map is upsampled (bilinear) to the next finer feature, added
    to its lateral and refined by a 3x3 conv (norm, ReLU). A 1x1 predictor at the finest feature's
    stride (4 for res2) gives the outputs, upsampled bilinearly to the input size: a class map
    over depth bins (like the VNL decoder's last upsampling) or one regression channel.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        out_channels: int,
        conv_dims: int = 128,
        norm: str = "BN",
    ):
        """
        Args:
            input_shape: the used backbone features (e.g. res2..res5), any order.
            out_channels: channels of the output (bins, or 1 for regression).
            conv_dims: channels of the lateral and refinement convs.
            norm: norm of the convs ("" = none).
        """
        super().__init__()
        if not input_shape:
            raise ValueError(
                "PercepDepthDecoder needs at least one feature (MODEL.DEPTH.IN_FEATURES)"
            )
        ordered = sorted(input_shape.items(), key=lambda kv: -kv[1].stride)  # coarse -> fine
        self.in_features: List[str] = [k for k, _ in ordered]
        self.out_stride = ordered[-1][1].stride
        use_bias = norm == ""
        self.lateral = nn.ModuleList()
        self.refine = nn.ModuleList()
        for name, spec in ordered:
            lateral = Conv2d(
                spec.channels,
                conv_dims,
                1,
                bias=use_bias,
                norm=get_norm(norm, conv_dims),
                activation=F.relu,
            )
            refine = Conv2d(
                conv_dims,
                conv_dims,
                3,
                padding=1,
                bias=use_bias,
                norm=get_norm(norm, conv_dims),
                activation=F.relu,
            )
            weight_init.c2_msra_fill(lateral)
            weight_init.c2_msra_fill(refine)
            self.lateral.append(lateral)
            self.refine.append(refine)
        self.predictor = Conv2d(conv_dims, out_channels, 1)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0.0)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec], out_channels: int) -> dict:
        missing = [f for f in cfg.MODEL.DEPTH.IN_FEATURES if f not in input_shape]
        if missing:
            raise ValueError(
                f"MODEL.DEPTH.IN_FEATURES {missing} are not backbone outputs "
                f"{sorted(input_shape)} (MODEL.RESNETS.OUT_FEATURES)"
            )
        return {
            "input_shape": {f: input_shape[f] for f in cfg.MODEL.DEPTH.IN_FEATURES},
            "out_channels": out_channels,
            "conv_dims": cfg.MODEL.DEPTH.CONVS_DIM,
            "norm": cfg.MODEL.DEPTH.NORM,
        }

    def forward(self, features: Dict[str, Tensor]) -> Tensor:
        """``features`` -> ``(N, out_channels, s h, s w)``, s = the finest stride, h x w its map."""
        x = None
        for name, lateral, refine in zip(self.in_features, self.lateral, self.refine):
            y = lateral(features[name])
            if x is not None:
                y = y + F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False)
            x = refine(y)
        out = self.predictor(x)
        if self.out_stride > 1:
            out = F.interpolate(
                out, scale_factor=self.out_stride, mode="bilinear", align_corners=False
            )
        return out
