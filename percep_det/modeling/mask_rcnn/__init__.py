"""Mask R-CNN with the generic perceptual loss: a registered variant of detectron2's mask head
(``MODEL.ROI_MASK_HEAD.NAME PercepPerceptualMaskRCNNConvUpsampleHead``); the rest of the model is
detectron2's ``GeneralizedRCNN``, unchanged."""

from .perceptual_mask_head import PercepPerceptualMaskRCNNConvUpsampleHead, mask_rcnn_percep_inputs

__all__ = ["PercepPerceptualMaskRCNNConvUpsampleHead", "mask_rcnn_percep_inputs"]
