"""CondInst's dynamic mask head with the generic perceptual loss (Liu et al., CVPR 2021, §3.1).

``loss_mask_percep = lambda * perceptual_loss(P, T)`` where ``P`` ``(n, 1, Ho, Wo)`` are the mask
probabilities of the n sampled instances (stride MASK_OUT_STRIDE) and ``T`` their targets: the
gt bitmasks (``TARGET "gt"``) or a frozen teacher's soft masks for the same instances
(``TARGET "teacher"``: the meta-architecture runs the teacher and stores them in the instances'
``soft_targets``, see :mod:`.teacher`). The dice loss is unchanged.

Select with ``MODEL.CONDINST.MASK_HEAD.NAME PercepPerceptualDynamicMaskHead``; the loss is the
shared :class:`~percep_det.modeling.perceptual.PerceptualLoss` built from ``MODEL.PERCEPTUAL_LOSS``
(lambda = LOSS_WEIGHT, CHUNK_SIZE, PRECISION, ...) with one input channel, and the CondInst options
``MODEL.CONDINST.PERCEPTUAL.MAX_INSTANCES`` (the loss's input cap) and ``CROP*`` (its
crop-to-support). The loss holds its network outside the module tree, so this head's
``state_dict`` equals the plain head's and inference never builds or runs it.

Shape shorthand: n sampled instances, Ho x Wo the mask size, k instances in the perceptual term.
"""

import logging
from typing import Dict, List

import torch
from detectron2.config import configurable
from detectron2.structures import Instances

from ..perceptual import PerceptualLoss
from .dynamic_mask_head import PERCEP_MASK_HEAD_REGISTRY, PercepDynamicMaskHead

__all__ = ["PercepPerceptualDynamicMaskHead"]

logger = logging.getLogger(__name__)

TARGETS = ("gt", "teacher")


@PERCEP_MASK_HEAD_REGISTRY.register()
class PercepPerceptualDynamicMaskHead(PercepDynamicMaskHead):
    """
    :class:`PercepDynamicMaskHead` plus ``loss_mask_percep`` (see the module docstring).
    Inference is the parent's, unchanged.
    """

    @configurable
    def __init__(self, *, perceptual_loss: PerceptualLoss, target: str = "gt", **kwargs):
        """
        Args:
            perceptual_loss: the weighted perceptual loss on ``(k, 1, Ho, Wo)`` masks.
            target: "gt" (gt bitmasks) or "teacher" (the instances' ``soft_targets``).
            kwargs: arguments of :class:`PercepDynamicMaskHead`.
        """
        super().__init__(**kwargs)
        if target not in TARGETS:
            raise ValueError(
                f"MODEL.CONDINST.PERCEPTUAL.TARGET must be one of {TARGETS}, got {target!r}"
            )
        self.perceptual_loss = perceptual_loss
        self.target = target

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        pc = cfg.MODEL.CONDINST.PERCEPTUAL
        if pc.MAX_INSTANCES != -1 and pc.MAX_INSTANCES < 1:
            raise ValueError(
                f"MODEL.CONDINST.PERCEPTUAL.MAX_INSTANCES must be -1 (all) or >= 1, got "
                f"{pc.MAX_INSTANCES}"
            )
        if pc.CROP_ALIGN < 1 or pc.CROP_MARGIN < 0:
            raise ValueError(
                f"MODEL.CONDINST.PERCEPTUAL.CROP_ALIGN must be >= 1 and CROP_MARGIN >= 0, got "
                f"{pc.CROP_ALIGN} and {pc.CROP_MARGIN}"
            )
        ret["perceptual_loss"] = PerceptualLoss(
            cfg,
            in_channels=1,  # one mask channel
            max_inputs=pc.MAX_INSTANCES,
            crop=pc.CROP,
            crop_thresh=pc.CROP_THRESH,
            crop_margin=pc.CROP_MARGIN,
            crop_align=pc.CROP_ALIGN,
        )
        ret["target"] = pc.TARGET
        return ret

    def perceptual_targets(
        self, predictions: Dict[str, torch.Tensor], instances: Instances
    ) -> torch.Tensor:
        """``(n, 1, Ho, Wo)`` targets of the sampled instances: gt bitmasks or soft targets."""
        if self.target == "gt":
            return predictions["gt_bitmasks"]
        if not instances.has("soft_targets"):
            raise ValueError(
                "MODEL.CONDINST.PERCEPTUAL.TARGET 'teacher': the sampled instances have no "
                "'soft_targets'; the meta-architecture must run its mask_targets source (a "
                "PercepCondInst built from this config does)."
            )
        scores = predictions["mask_scores"]
        targets = instances.soft_targets.to(scores.dtype)
        if targets.shape != scores.shape:
            raise ValueError(
                f"teacher masks {tuple(targets.shape)} differ from the student's "
                f"{tuple(scores.shape)}; check MODEL.CONDINST.MASK_OUT_STRIDE and the mask "
                "branch's IN_FEATURES of both configs"
            )
        return targets

    def losses(
        self, predictions: Dict[str, torch.Tensor], instances: Instances
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            predictions: output of :meth:`predict_train`.
            instances: the sampled instances (with ``soft_targets`` for teacher targets).
        Returns:
            the parent's losses and ``loss_mask_percep`` (0, in the graph, when there is no
            instance).
        """
        losses = super().losses(predictions, instances)
        targets = self.perceptual_targets(predictions, instances)
        losses["loss_mask_percep"] = self.perceptual_loss(predictions["mask_scores"], targets)
        return losses
