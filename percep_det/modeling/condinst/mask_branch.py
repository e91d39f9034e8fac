"""CondInst's mask branch: the shared mask features the dynamic mask heads run on.

Shape shorthand: N images, C FPN channels, Cm = MASK_BRANCH.CHANNELS, Co = MASK_BRANCH.OUT_CHANNELS,
K classes, H, W the size of the first input level (stride 8 with the default P3).
"""

from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.structures import Instances
from torch import nn
from torchvision.ops import sigmoid_focal_loss

from ..layers import aligned_bilinear, conv_norm_relu, prior_bias
from .checks import check_int

__all__ = ["PercepMaskBranch", "build_mask_branch"]


def build_mask_branch(cfg, input_shape: Dict[str, ShapeSpec]) -> "PercepMaskBranch":
    """Build the mask branch from ``MODEL.CONDINST.MASK_BRANCH.*``."""
    return PercepMaskBranch(cfg, input_shape)


class PercepMaskBranch(nn.Module):
    """
    Refine each input level (conv3x3 + norm + ReLU), upsample to the first level with
    :func:`aligned_bilinear` and sum, then a tower of conv3x3 + norm + ReLU and a 1x1 conv to
    ``Co`` channels. Optionally an auxiliary semantic-segmentation focal loss (``loss_sem``) on the
    first level, trained only.

    Attributes:
        out_stride (int): stride of the mask features (that of the first input level).
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        in_features: List[str],
        channels: int = 128,
        out_channels: int = 8,
        norm: str = "BN",
        num_convs: int = 4,
        semantic_loss_on: bool = False,
        num_classes: int = 80,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        prior_prob: float = 0.01,
    ):
        """
        Args:
            input_shape: shapes of the backbone outputs.
            in_features: levels fused, the first one sets the output stride.
            channels: width Cm of the refine convs and the tower.
            out_channels: Co, channels of the mask features.
            norm: norm after each conv3x3 (detectron2 ``get_norm`` names; "" for none).
            num_convs: conv3x3 layers in the tower.
            semantic_loss_on: add the auxiliary semantic loss (needs ``gt_bitmasks_full``).
            num_classes, focal_loss_alpha, focal_loss_gamma, prior_prob: of the semantic loss.
        """
        super().__init__()
        assert out_channels > 0, "MODEL.CONDINST.MASK_BRANCH.OUT_CHANNELS must be positive"
        missing = [f for f in in_features if f not in input_shape]
        assert not missing, (
            f"MODEL.CONDINST.MASK_BRANCH.IN_FEATURES {missing} are not backbone outputs "
            f"{sorted(input_shape)}"
        )
        self.in_features = list(in_features)
        self.out_stride = input_shape[in_features[0]].stride
        self.semantic_loss_on = semantic_loss_on
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma

        self.refine = nn.ModuleList(
            [conv_norm_relu(input_shape[f].channels, channels, 3, norm) for f in in_features]
        )
        tower = [conv_norm_relu(channels, channels, 3, norm) for _ in range(num_convs)]
        tower.append(nn.Conv2d(channels, out_channels, 1))
        self.tower = nn.Sequential(*tower)

        if semantic_loss_on:
            in_channels = input_shape[in_features[0]].channels
            self.seg_head = nn.Sequential(
                conv_norm_relu(in_channels, channels, 3, norm),
                conv_norm_relu(channels, channels, 3, norm),
            )
            self.logits = nn.Conv2d(channels, num_classes, kernel_size=1)
            nn.init.constant_(self.logits.bias, prior_bias(prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        mb = cfg.MODEL.CONDINST.MASK_BRANCH
        check_int("MODEL.CONDINST.MASK_BRANCH.CHANNELS", mb.CHANNELS)
        check_int("MODEL.CONDINST.MASK_BRANCH.OUT_CHANNELS", mb.OUT_CHANNELS)
        check_int("MODEL.CONDINST.MASK_BRANCH.NUM_CONVS", mb.NUM_CONVS, minimum=0)
        if not len(mb.IN_FEATURES):
            raise ValueError("MODEL.CONDINST.MASK_BRANCH.IN_FEATURES must name at least one level")
        return {
            "input_shape": input_shape,
            "in_features": cfg.MODEL.CONDINST.MASK_BRANCH.IN_FEATURES,
            "channels": cfg.MODEL.CONDINST.MASK_BRANCH.CHANNELS,
            "out_channels": cfg.MODEL.CONDINST.MASK_BRANCH.OUT_CHANNELS,
            "norm": cfg.MODEL.CONDINST.MASK_BRANCH.NORM,
            "num_convs": cfg.MODEL.CONDINST.MASK_BRANCH.NUM_CONVS,
            "semantic_loss_on": cfg.MODEL.CONDINST.MASK_BRANCH.SEMANTIC_LOSS_ON,
            "num_classes": cfg.MODEL.FCOS.NUM_CLASSES,
            "focal_loss_alpha": cfg.MODEL.FCOS.LOSS_ALPHA,
            "focal_loss_gamma": cfg.MODEL.FCOS.LOSS_GAMMA,
            "prior_prob": cfg.MODEL.FCOS.PRIOR_PROB,
        }

    def forward(
        self, features: Dict[str, torch.Tensor], gt_instances: Optional[List[Instances]] = None
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """
        Args:
            features: backbone outputs by name.
            gt_instances: per image ``gt_bitmasks_full`` ``(M, Hpad, Wpad)`` and ``gt_classes``;
                needed only for the semantic loss in training.
        Returns:
            mask features ``(N, Co, H, W)`` and a loss dict (``loss_sem`` or empty).
        """
        x = self.refine[0](features[self.in_features[0]])
        for refine, name in zip(self.refine[1:], self.in_features[1:]):
            x_level = refine(features[name])
            factor_h = x.shape[-2] // x_level.shape[-2]
            factor_w = x.shape[-1] // x_level.shape[-1]
            assert factor_h == factor_w and x_level.shape[-2] * factor_h == x.shape[-2], (
                f"mask branch: level {name} {tuple(x_level.shape[-2:])} is not an integer "
                f"downscale of {tuple(x.shape[-2:])}"
            )
            x = x + aligned_bilinear(x_level, factor_h)
        mask_feats = self.tower(x)

        losses = {}
        if self.training and self.semantic_loss_on:
            assert gt_instances is not None, "SEMANTIC_LOSS_ON needs gt_instances in training"
            logits = self.logits(self.seg_head(features[self.in_features[0]]))  # (N, K, H, W)
            losses["loss_sem"] = self.semantic_loss(logits, gt_instances)
        return mask_feats, losses

    def semantic_loss(self, logits: torch.Tensor, gt_instances: List[Instances]) -> torch.Tensor:
        """
        Focal loss between ``logits`` ``(N, K, H, W)`` and per-pixel classes sampled from the
        padded-size gt masks at the centres of the ``out_stride`` cells (where masks overlap the
        smallest mask wins), normalised by the number of foreground pixels of this process.
        """
        s = self.out_stride
        targets = []
        for gt in gt_instances:
            masks = gt.gt_bitmasks_full  # (M, Hpad, Wpad)
            sampled = masks[:, s // 2 :: s, s // 2 :: s].bool()  # (M, H, W)
            sampled = sampled[:, : logits.shape[-2], : logits.shape[-1]]
            areas = masks.flatten(1).sum(dim=1).float()  # (M,)
            if len(areas) == 0:
                targets.append(
                    torch.zeros(logits.shape[-2:], dtype=torch.long, device=logits.device)
                )
                continue
            per_pixel_area = torch.where(
                sampled,
                areas[:, None, None],
                torch.full_like(sampled, float("inf"), dtype=areas.dtype),
            )
            min_area, inds = per_pixel_area.min(dim=0)  # (H, W)
            target = gt.gt_classes[inds] + 1
            targets.append(torch.where(torch.isinf(min_area), torch.zeros_like(target), target))
        targets = torch.stack(targets)  # (N, H, W), 0 = background, k + 1 = class k
        class_range = torch.arange(1, logits.shape[1] + 1, device=logits.device)[
            None, :, None, None
        ]
        one_hot = (targets[:, None] == class_range).to(logits.dtype)  # (N, K, H, W)
        num_pos = one_hot.sum().clamp(min=1.0)
        loss = sigmoid_focal_loss(
            logits,
            one_hot,
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )
        return loss / num_pos
