"""CondInst's dynamic mask head: per-instance 1x1 conv filters applied to the shared mask features.

Variants (e.g. a perceptual-loss head) subclass :class:`PercepDynamicMaskHead` and register in
:data:`PERCEP_MASK_HEAD_REGISTRY`; ``MODEL.CONDINST.MASK_HEAD.NAME`` picks one.

Shape shorthand in this file:
    N images; R instances (sampled positives in training, detections in inference)
    Cm mask-feature channels (MASK_BRANCH.OUT_CHANNELS), Ch head channels (MASK_HEAD.CHANNELS)
    H, W size of the mask features (stride ``mask_feat_stride``, 8 by default)
    Ho, Wo = H * f, W * f with f = mask_feat_stride / mask_out_stride (stride 4 by default)
    P number of generated parameters per instance (169 by default)
"""

import logging
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.structures import Instances
from detectron2.utils.registry import Registry
from torch import nn
from torch.nn import functional as F

from ..layers import aligned_bilinear, compute_locations, dice_loss
from .checks import check_increasing, check_int

__all__ = [
    "PERCEP_MASK_HEAD_REGISTRY",
    "PercepDynamicMaskHead",
    "build_dynamic_mask_head",
    "parse_dynamic_params",
    "postprocess_instances",
]

logger = logging.getLogger(__name__)

PERCEP_MASK_HEAD_REGISTRY = Registry("PERCEP_MASK_HEAD")
PERCEP_MASK_HEAD_REGISTRY.__doc__ = """
Registry for CondInst dynamic mask heads. The registered object is called with ``(cfg)`` and must
provide ``num_gen_params``, ``sample_instances``, ``forward`` (losses in training, instances with
``pred_global_masks`` in inference) and ``mask_logits``. Chosen by
``MODEL.CONDINST.MASK_HEAD.NAME``.
"""


def build_dynamic_mask_head(cfg) -> nn.Module:
    """Build the head named by ``MODEL.CONDINST.MASK_HEAD.NAME``."""
    name = cfg.MODEL.CONDINST.MASK_HEAD.NAME
    return PERCEP_MASK_HEAD_REGISTRY.get(name)(cfg)


def parse_dynamic_params(
    params: torch.Tensor, channels: int, weight_nums: List[int], bias_nums: List[int]
) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """
    Split generated parameters into the weights and biases of grouped 1x1 convs.

    Args:
        params: ``(R, P)``, laid out as all layers' weights, then all layers' biases (the order
            trained CondInst controllers produce).
        channels: Ch, output channels of every layer but the last (which has 1).
        weight_nums, bias_nums: per layer, number of weights / biases of one instance.
    Returns:
        weights: per layer ``(R * Cout, Cin, 1, 1)``; biases: per layer ``(R * Cout,)``.
    """
    assert params.dim() == 2 and params.shape[1] == sum(weight_nums) + sum(bias_nums), (
        f"expected dynamic params (R, {sum(weight_nums) + sum(bias_nums)}), "
        f"got {tuple(params.shape)}"
    )
    num_insts, num_layers = params.shape[0], len(weight_nums)
    splits = torch.split_with_sizes(params, weight_nums + bias_nums, dim=1)
    weights, biases = [], []
    for i in range(num_layers):
        out_channels = channels if i < num_layers - 1 else 1
        weights.append(splits[i].reshape(num_insts * out_channels, -1, 1, 1))
        biases.append(splits[num_layers + i].reshape(num_insts * out_channels))
    return weights, biases


@PERCEP_MASK_HEAD_REGISTRY.register()
class PercepDynamicMaskHead(nn.Module):
    """
    For each instance: concatenate relative coordinates (instance location minus pixel location,
    divided by the size of interest of the instance's FPN level) with the mask features of its
    image, run ``num_layers`` 1x1 convs whose weights the controller generated (ReLU between),
    and upsample the logits with :func:`aligned_bilinear` to ``mask_out_stride``.

    Training: :meth:`sample_instances` chooses the positives that get a mask loss;
    :meth:`forward` calls :meth:`predict_train` (logits + gt bitmasks of the sampled instances)
    and :meth:`losses` (dice). Subclasses add loss terms by overriding :meth:`losses`.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        channels: int = 8,
        num_layers: int = 3,
        mask_out_stride: int = 4,
        disable_rel_coords: bool = False,
        sizes_of_interest: List[int],
        max_proposals: int = -1,
        topk_proposals_per_im: int = -1,
        loss_weight: float = 1.0,
    ):
        """
        Args:
            in_channels: Cm, channels of the mask features.
            channels: Ch, channels of the hidden dynamic layers.
            num_layers: number of dynamic 1x1 conv layers (>= 2).
            mask_out_stride: stride of the predicted masks (and of ``gt_bitmasks``).
            disable_rel_coords: do not feed relative coordinates.
            sizes_of_interest: FCOS size boundaries (L - 1 values); the relative coordinates of an
                instance of level i are divided by ``[*sizes_of_interest, 2 * last][i]``.
            max_proposals: if != -1, a random subset of at most this many positives of this
                process gets a mask loss.
            topk_proposals_per_im: if != -1, per image at most this many positives (split evenly
                among its ground truths, best ``sigmoid(cls).max * sigmoid(ctrness)`` first).
            loss_weight: weight of ``loss_mask``.
        """
        super().__init__()
        assert (
            num_layers >= 2
        ), f"MODEL.CONDINST.MASK_HEAD.NUM_LAYERS must be >= 2, got {num_layers}"
        assert (
            max_proposals == -1 or topk_proposals_per_im == -1
        ), "MODEL.CONDINST.MAX_PROPOSALS and TOPK_PROPOSALS_PER_IM cannot both be set"
        self.in_channels = in_channels
        self.channels = channels
        self.num_layers = num_layers
        self.mask_out_stride = mask_out_stride
        self.disable_rel_coords = disable_rel_coords
        self.max_proposals = max_proposals
        self.topk_proposals_per_im = topk_proposals_per_im
        self.loss_weight = loss_weight

        first_in = in_channels + (0 if disable_rel_coords else 2)
        layer_dims = [(first_in, channels)]
        layer_dims += [(channels, channels)] * (num_layers - 2)
        layer_dims += [(channels, 1)]
        self.weight_nums = [cin * cout for cin, cout in layer_dims]
        self.bias_nums = [cout for _, cout in layer_dims]
        self.num_gen_params = sum(self.weight_nums) + sum(self.bias_nums)

        soi = list(sizes_of_interest) + [sizes_of_interest[-1] * 2]
        # Persistent buffers: AdelaiDet checkpoints contain both (int64 (L,) and float32 (1,)).
        self.register_buffer("sizes_of_interest", torch.tensor(soi, dtype=torch.int64))
        self.register_buffer("_iter", torch.zeros([1]))

    @classmethod
    def from_config(cls, cfg):
        c = cfg.MODEL.CONDINST
        check_int("MODEL.CONDINST.MASK_OUT_STRIDE", c.MASK_OUT_STRIDE)
        check_int("MODEL.CONDINST.MASK_HEAD.CHANNELS", c.MASK_HEAD.CHANNELS)
        check_int("MODEL.CONDINST.MASK_HEAD.NUM_LAYERS", c.MASK_HEAD.NUM_LAYERS, minimum=2)
        check_int("MODEL.CONDINST.MAX_PROPOSALS", c.MAX_PROPOSALS, allow_minus_one=True)
        check_int(
            "MODEL.CONDINST.TOPK_PROPOSALS_PER_IM", c.TOPK_PROPOSALS_PER_IM, allow_minus_one=True
        )
        soi = cfg.MODEL.FCOS.SIZES_OF_INTEREST
        if not len(soi):  # the relative coordinates of the last level are scaled by 2 * soi[-1]
            raise ValueError("MODEL.FCOS.SIZES_OF_INTEREST must not be empty for CondInst")
        check_increasing("MODEL.FCOS.SIZES_OF_INTEREST", soi)
        return {
            "in_channels": cfg.MODEL.CONDINST.MASK_BRANCH.OUT_CHANNELS,
            "channels": cfg.MODEL.CONDINST.MASK_HEAD.CHANNELS,
            "num_layers": cfg.MODEL.CONDINST.MASK_HEAD.NUM_LAYERS,
            "mask_out_stride": cfg.MODEL.CONDINST.MASK_OUT_STRIDE,
            "disable_rel_coords": cfg.MODEL.CONDINST.MASK_HEAD.DISABLE_REL_COORDS,
            "sizes_of_interest": cfg.MODEL.FCOS.SIZES_OF_INTEREST,
            "max_proposals": cfg.MODEL.CONDINST.MAX_PROPOSALS,
            "topk_proposals_per_im": cfg.MODEL.CONDINST.TOPK_PROPOSALS_PER_IM,
        }

    @property
    def device(self) -> torch.device:
        return self._iter.device

    # ------------------------------------------------------------------------------------------
    # the dynamic network
    # ------------------------------------------------------------------------------------------
    def mask_logits(
        self, mask_feats: torch.Tensor, mask_feat_stride: int, instances: Instances
    ) -> torch.Tensor:
        """
        Run the dynamic head of every instance on its image's mask features.

        Args:
            mask_feats: ``(N, Cm, H, W)``.
            mask_feat_stride: stride of ``mask_feats`` in the (padded) input image.
            instances: R rows with ``im_inds`` (R,), ``locations`` (R, 2) image (x, y),
                ``fpn_levels`` (R,) and ``mask_head_params`` (R, P). A teacher may pass its own
                features and params.
        Returns:
            mask logits ``(R, 1, Ho, Wo)``. With R = 0 an empty tensor that is still connected
            to ``mask_feats`` and the params (so every parameter takes part in the graph).
        """
        n, _, h, w = mask_feats.shape
        assert mask_feat_stride % self.mask_out_stride == 0, (
            f"mask feature stride {mask_feat_stride} is not a multiple of "
            f"MODEL.CONDINST.MASK_OUT_STRIDE={self.mask_out_stride}"
        )
        factor = mask_feat_stride // self.mask_out_stride
        params = instances.mask_head_params  # (R, P)
        num_insts = len(instances)
        if num_insts == 0:
            zero = mask_feats.sum() * 0 + params.sum() * 0
            return mask_feats.new_zeros((0, 1, h * factor, w * factor)) + zero

        x = mask_feats[instances.im_inds].reshape(num_insts, self.in_channels, h * w)
        if not self.disable_rel_coords:
            pixels = compute_locations(h, w, mask_feat_stride, mask_feats.device)  # (HW, 2)
            rel = instances.locations[:, None, :] - pixels[None, :, :]  # (R, HW, 2)
            soi = self.sizes_of_interest.float()[instances.fpn_levels]  # (R,)
            rel = (rel.permute(0, 2, 1) / soi[:, None, None]).to(mask_feats.dtype)  # (R, 2, HW)
            x = torch.cat([rel, x], dim=1)  # (R, 2 + Cm, HW), coords first as in AdelaiDet
        x = x.reshape(1, -1, h, w)  # instances stacked on channels for grouped convs

        weights, biases = parse_dynamic_params(
            params, self.channels, self.weight_nums, self.bias_nums
        )
        for i, (weight, bias) in enumerate(zip(weights, biases)):
            x = F.conv2d(x, weight, bias=bias, groups=num_insts)
            if i < len(weights) - 1:
                x = F.relu(x)
        logits = x.reshape(num_insts, 1, h, w)
        return aligned_bilinear(logits, factor)

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------
    def sample_instances(self, instances: Instances) -> Instances:
        """
        Choose the positives that receive a mask loss (MAX_PROPOSALS: random subset of this
        process; TOPK_PROPOSALS_PER_IM: per image and gt, the best scored). Needs ``im_inds``,
        ``gt_inds`` and, for the top-k mode, ``logits_pred`` / ``ctrness_pred``.
        """
        if self.max_proposals != -1:
            if len(instances) > self.max_proposals:
                inds = torch.randperm(len(instances), device=instances.im_inds.device)
                instances = instances[inds[: self.max_proposals]]
            return instances
        if self.topk_proposals_per_im != -1:
            kept = []
            for im_id in instances.im_inds.unique().tolist():
                per_im = instances[instances.im_inds == im_id]
                gt_ids = per_im.gt_inds.unique()
                k = max(self.topk_proposals_per_im // len(gt_ids), 1)
                for gt_id in gt_ids:
                    per_gt = per_im[per_im.gt_inds == gt_id]
                    if len(per_gt) > k:
                        quality = per_gt.logits_pred.sigmoid().max(dim=1).values
                        quality = quality * per_gt.ctrness_pred.sigmoid()
                        per_gt = per_gt[quality.topk(k).indices]
                    kept.append(per_gt)
            return Instances.cat(kept) if kept else instances[:0]
        return instances

    @staticmethod
    def gt_bitmasks_of(instances: Instances, gt_instances: List[Instances]) -> torch.Tensor:
        """``(R, 1, Ho, Wo)`` gt masks of the instances (``gt_inds`` index the batch-concatenated
        ``gt_bitmasks`` of ``gt_instances``)."""
        gt_bitmasks = torch.cat([gt.gt_bitmasks for gt in gt_instances])  # (sum M, Ho, Wo)
        return gt_bitmasks[instances.gt_inds].unsqueeze(1)

    def predict_train(
        self,
        mask_feats: torch.Tensor,
        mask_feat_stride: int,
        instances: Instances,
        gt_instances: List[Instances],
    ) -> Dict[str, torch.Tensor]:
        """
        Everything a mask loss needs for the (already sampled) instances.

        Returns:
            dict with ``mask_logits`` ``(R, 1, Ho, Wo)``, ``mask_scores`` (their sigmoid) and
            ``gt_bitmasks`` ``(R, 1, Ho, Wo)`` in the dtype of ``mask_feats``.
        """
        logits = self.mask_logits(mask_feats, mask_feat_stride, instances)
        gt = self.gt_bitmasks_of(instances, gt_instances).to(logits.dtype)
        return {"mask_logits": logits, "mask_scores": logits.sigmoid(), "gt_bitmasks": gt}

    def losses(
        self, predictions: Dict[str, torch.Tensor], instances: Instances
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            predictions: output of :meth:`predict_train`.
            instances: the sampled instances (R rows, see :meth:`sample_instances`).
        Returns:
            ``{"loss_mask": mean dice loss * loss_weight}`` (0, still in the graph, when R = 0).
        """
        dice = dice_loss(predictions["mask_scores"], predictions["gt_bitmasks"])  # (R,)
        return {"loss_mask": dice.sum() / max(len(dice), 1) * self.loss_weight}

    def forward(
        self,
        mask_feats: torch.Tensor,
        mask_feat_stride: int,
        instances: Instances,
        gt_instances: Optional[List[Instances]] = None,
    ):
        """
        Args:
            mask_feats: ``(N, Cm, H, W)``.
            mask_feat_stride: stride of ``mask_feats``.
            instances: training: the sampled positives (see :meth:`sample_instances`);
                inference: the detections of all images (fields of :meth:`mask_logits`).
            gt_instances: per image ``gt_bitmasks`` ``(M, Ho, Wo)``; training only.
        Returns:
            training: a loss dict; inference: ``instances`` with ``pred_global_masks``
            ``(R, 1, Ho, Wo)`` probabilities.
        """
        if self.training:
            assert gt_instances is not None, "the mask head needs gt_instances in training"
            self._iter += 1
            predictions = self.predict_train(mask_feats, mask_feat_stride, instances, gt_instances)
            return self.losses(predictions, instances)
        instances.pred_global_masks = self.mask_logits(
            mask_feats, mask_feat_stride, instances
        ).sigmoid()
        return instances


def postprocess_instances(
    results: Instances,
    output_height: int,
    output_width: int,
    padded_size: Tuple[int, int],
    mask_threshold: float = 0.5,
) -> Instances:
    """
    Resize the detections of one image to the requested output size.

    Args:
        results: detections with ``image_size`` = the size the network saw (before padding),
            ``pred_boxes`` and ``pred_global_masks`` ``(R, 1, Ho, Wo)`` over the padded image.
        output_height, output_width: the size of the original image.
        padded_size: ``(Hpad, Wpad)`` of the network input.
        mask_threshold: probability threshold of ``pred_masks``.
    Returns:
        Instances of size (output_height, output_width): boxes scaled and clipped (empty boxes
        removed), ``pred_masks`` ``(R, output_height, output_width)`` bool.
    """
    resized_h, resized_w = results.image_size
    scale_x, scale_y = output_width / resized_w, output_height / resized_h
    results = Instances((output_height, output_width), **results.get_fields())
    boxes = results.pred_boxes
    boxes.scale(scale_x, scale_y)
    boxes.clip(results.image_size)
    results = results[boxes.nonempty()]

    if len(results) == 0 or not results.has("pred_global_masks"):
        if results.has("pred_global_masks"):
            results.remove("pred_global_masks")
        results.pred_masks = torch.zeros(
            (len(results), output_height, output_width), dtype=torch.bool, device=boxes.device
        )
        return results
    masks = results.pred_global_masks  # (R, 1, Ho, Wo)
    factor = padded_size[0] // masks.shape[-2]
    assert (
        factor * masks.shape[-2] == padded_size[0] and factor * masks.shape[-1] == padded_size[1]
    ), f"mask size {tuple(masks.shape[-2:])} does not divide the padded size {tuple(padded_size)}"
    masks = aligned_bilinear(masks, factor)[:, :, :resized_h, :resized_w]
    masks = F.interpolate(
        masks, size=(output_height, output_width), mode="bilinear", align_corners=False
    )
    results.pred_masks = masks[:, 0] > mask_threshold
    results.remove("pred_global_masks")
    return results
