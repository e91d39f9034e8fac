"""detectron2's Mask R-CNN mask head with the generic perceptual loss (Liu et al., CVPR 2021).

``loss_mask_percep = lambda * perceptual_loss(P, T)``, where ``P`` are the mask probabilities of the
foreground proposals (sigmoid of the logits of each proposal's gt class, or of the only channel
with ``CLS_AGNOSTIC_MASK``) and ``T`` the gt masks cropped to the proposal boxes and resized to the
mask size: the targets of detectron2's ``mask_rcnn_loss``. ``loss_mask`` (BCE) is unchanged, and so
is inference.

Select with ``MODEL.ROI_MASK_HEAD.NAME PercepPerceptualMaskRCNNConvUpsampleHead``; the loss is the
shared :class:`~percep_det.modeling.perceptual.PerceptualLoss` built from ``MODEL.PERCEPTUAL_LOSS``
(the loss network, lambda = LOSS_WEIGHT, CHUNK_SIZE, PRECISION) with one input channel, capped at
``MODEL.ROI_MASK_HEAD.PERCEPTUAL.MAX_INSTANCES`` inputs per step.

Loss network size: the ROI masks are only M = 2 x ``MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION`` = 28 px
per side, and the default VGG16 (5 max-pools) needs 32 px. Use a 4-block VGG, ``BLOCKS [2, 2, 3, 3]``
and ``WIDTHS [64, 128, 256, 512]`` (28 -> 14 -> 7 -> 3 -> 1 px; needs 16 px), or an earlier
extraction point (``OUT_POINTS``). The head checks this on its first training step, with an error
naming these keys.

Checkpoints: the loss holds its network outside the module tree and has no parameters or buffers,
so this head's ``state_dict`` equals :class:`MaskRCNNConvUpsampleHead`'s, and a model trained with it
loads into a plain Mask R-CNN.

Shape shorthand: R foreground proposals in the batch, K mask classes (NUM_CLASSES, or 1 when
class-agnostic), P the pooler resolution, M = 2P the mask side.
"""

from typing import Dict, List, Tuple

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling.roi_heads.mask_head import (
    ROI_MASK_HEAD_REGISTRY,
    MaskRCNNConvUpsampleHead,
    mask_rcnn_loss,
)
from detectron2.structures import Instances
from torch import Tensor

from ..perceptual import PerceptualLoss

__all__ = ["PercepPerceptualMaskRCNNConvUpsampleHead", "mask_rcnn_percep_inputs"]


def mask_rcnn_percep_inputs(
    pred_mask_logits: Tensor, instances: List[Instances]
) -> Tuple[Tensor, Tensor]:
    """
    The prediction and target of the perceptual term of each foreground proposal, with the targets
    of detectron2's ``mask_rcnn_loss``.

    Args:
        pred_mask_logits: (R, K, M, M) mask logits, K = number of classes or 1 (class-agnostic).
        instances: per image, its foreground proposals (R in all, in the order of the logits) with
            ``proposal_boxes``, ``gt_masks`` and, when K > 1, ``gt_classes``.

    Returns:
        probs: (R, 1, M, M) sigmoid of each proposal's gt-class logits (in the graph).
        targets: (R, 1, M, M) its gt mask cropped to its proposal box and resized to M x M, as a
            float in [0, 1] of ``probs``' dtype.
    """
    r, k, m = pred_mask_logits.shape[:3]
    instances = [inst for inst in instances if len(inst) > 0]  # an image may have none
    if k == 1:
        logits = pred_mask_logits  # (R, 1, M, M)
    elif r == 0:
        logits = pred_mask_logits[:, :1]
    else:
        classes = cat([inst.gt_classes for inst in instances]).to(torch.int64)  # (R,)
        rows = torch.arange(r, device=pred_mask_logits.device)
        logits = pred_mask_logits[rows, classes][:, None]  # (R, 1, M, M)
    probs = logits.sigmoid()
    if r == 0:
        return probs, torch.zeros_like(probs)
    targets = cat(
        [inst.gt_masks.crop_and_resize(inst.proposal_boxes.tensor, m) for inst in instances]
    )  # (R, M, M)
    return probs, targets.to(device=probs.device, dtype=probs.dtype)[:, None]


@ROI_MASK_HEAD_REGISTRY.register()
class PercepPerceptualMaskRCNNConvUpsampleHead(MaskRCNNConvUpsampleHead):
    """
    :class:`MaskRCNNConvUpsampleHead` plus ``loss_mask_percep`` in training (see the module
    docstring). Inference is the parent's; the ``state_dict`` is the parent's.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, perceptual_loss: PerceptualLoss, **kwargs):
        """
        Args:
            input_shape: shape of the pooled ROI features, (C, P, P).
            perceptual_loss: the weighted perceptual loss on (R, 1, M, M) masks.
            kwargs: arguments of :class:`MaskRCNNConvUpsampleHead`.
        """
        super().__init__(input_shape, **kwargs)
        # A child module, so that the trainer finds it and records its loss network's fingerprint
        # in checkpoints; it has no state_dict entries. layers() skips it.
        self.perceptual_loss = perceptual_loss
        self._checked_size = False

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: ShapeSpec) -> dict:
        ret = super().from_config(cfg, input_shape)
        max_instances = cfg.MODEL.ROI_MASK_HEAD.PERCEPTUAL.MAX_INSTANCES
        if max_instances != -1 and max_instances < 1:
            raise ValueError(
                "MODEL.ROI_MASK_HEAD.PERCEPTUAL.MAX_INSTANCES must be -1 (all) or >= 1, got "
                f"{max_instances}"
            )
        ret["perceptual_loss"] = PerceptualLoss(cfg, in_channels=1, max_inputs=max_instances)
        return ret

    def layers(self, x: Tensor) -> Tensor:
        """The parent's layers: (R, C, P, P) ROI features -> (R, K, M, M) mask logits. The parent,
        an ``nn.Sequential``, runs every child in order; the loss is a child but not a layer."""
        for layer in self:
            if layer is not self.perceptual_loss:
                x = layer(x)
        return x

    def forward(self, x: Tensor, instances: List[Instances]):
        """
        Args:
            x: (R, C, P, P) ROI features.
            instances: per image, the foreground proposals with their gt (training) or the
                detections (inference).
        Returns:
            training: :meth:`losses`; inference: the parent's (``instances`` with ``pred_masks``).
        """
        if not self.training:
            return super().forward(x, instances)
        return self.losses(self.layers(x), instances)

    def losses(self, pred_mask_logits: Tensor, instances: List[Instances]) -> Dict[str, Tensor]:
        """
        Args:
            pred_mask_logits: (R, K, M, M) mask logits.
            instances: see :func:`mask_rcnn_percep_inputs`.
        Returns:
            ``loss_mask`` (the parent's, with its training statistics; needs an EventStorage) and
            ``loss_mask_percep`` (0, in the graph, when R = 0).
        """
        if not self._checked_size:  # on the first step, when the loss builds its network anyway
            m = pred_mask_logits.shape[-1]
            self.perceptual_loss.check_input_size(
                (m, m),
                f"{type(self).__name__}: the ROI masks (2 x MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION;"
                " for 28 px masks use a 4-block VGG, MODEL.PERCEPTUAL_LOSS.BLOCKS [2, 2, 3, 3], "
                "WIDTHS [64, 128, 256, 512], which needs 16 px)",
            )
            self._checked_size = True
        loss_mask = mask_rcnn_loss(pred_mask_logits, instances, self.vis_period) * self.loss_weight
        probs, targets = mask_rcnn_percep_inputs(pred_mask_logits, instances)
        return {"loss_mask": loss_mask, "loss_mask_percep": self.perceptual_loss(probs, targets)}
