"""CondInst (Tian, Shen, Chen, ECCV 2020) as a detectron2 meta-architecture.

Module names and parameter shapes equal AdelaiDet's ``CondInst`` for the same config, so its
``model_final.pth`` loads with ``DetectionCheckpointer`` as is.

Shape shorthand: N images, Hpad x Wpad the padded batch size, M ground truths of one image,
R instances, s = MODEL.CONDINST.MASK_OUT_STRIDE.
"""

import logging
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.modeling.proposal_generator import build_proposal_generator
from detectron2.structures import BitMasks, ImageList, Instances, PolygonMasks
from torch import nn

from .dynamic_mask_head import build_dynamic_mask_head, postprocess_instances
from .mask_branch import build_mask_branch
from .teacher import build_mask_target_source

__all__ = ["PercepCondInst"]

logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class PercepCondInst(nn.Module):
    """
    CondInst: FCOS detects instances and, through the ``controller`` applied to its box tower,
    generates the parameters of a tiny per-instance mask network (the dynamic mask head) that runs
    on the shared mask-branch features.

    ``batched_inputs`` is a list of detectron2 dataset dicts, each with ``image`` (C, H, W) in
    ``INPUT.FORMAT``, optionally ``height`` / ``width`` (the output size; default the image size)
    and, in training, ``instances`` with ``gt_boxes``, ``gt_classes`` and ``gt_masks``
    (PolygonMasks or BitMasks).
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        proposal_generator: nn.Module,
        mask_head: nn.Module,
        mask_branch: nn.Module,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        mask_targets: Optional[nn.Module] = None,
    ):
        """
        Args:
            backbone: gives the FPN features.
            proposal_generator: a :class:`PercepFCOS`-like module called as
                ``(images, features, gt_instances, top_module)``.
            mask_head: a dynamic mask head (see ``PERCEP_MASK_HEAD_REGISTRY``).
            mask_branch: gives the mask features and an optional ``loss_sem``.
            pixel_mean, pixel_std: per-channel normalisation of the input images.
            mask_targets: training only: a frozen soft-target source (e.g. a teacher, see
                :mod:`.teacher`) called as ``(images (N, 3, Hpad, Wpad), sampled instances)`` ->
                ``(R, 1, Hpad / s, Wpad / s)``; its output is stored in the sampled instances'
                ``soft_targets`` for the mask head. It holds its model outside the module tree,
                so it adds nothing to ``state_dict``.
        """
        super().__init__()
        # Attribute order = state_dict order of AdelaiDet's CondInst.
        self.backbone = backbone
        self.proposal_generator = proposal_generator
        self.mask_head = mask_head
        self.mask_branch = mask_branch
        self.controller = nn.Conv2d(
            proposal_generator.in_channels_to_top_module,
            mask_head.num_gen_params,
            kernel_size=3,
            padding=1,
        )
        nn.init.normal_(self.controller.weight, std=0.01)
        nn.init.constant_(self.controller.bias, 0)
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        assert (
            self.pixel_mean.shape == self.pixel_std.shape
        ), f"MODEL.PIXEL_MEAN {pixel_mean} and MODEL.PIXEL_STD {pixel_std} differ in length"
        # After every module of AdelaiDet's order; a parameter-free holder (no state_dict keys).
        self.mask_targets = mask_targets

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        ret = {
            "backbone": backbone,
            "proposal_generator": build_proposal_generator(cfg, backbone.output_shape()),
            "mask_head": build_dynamic_mask_head(cfg),
            "mask_branch": build_mask_branch(cfg, backbone.output_shape()),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "mask_targets": build_mask_target_source(cfg),
        }
        # the masks are predicted by upsampling the mask features by an integer factor
        feat_stride, out_stride = ret["mask_branch"].out_stride, cfg.MODEL.CONDINST.MASK_OUT_STRIDE
        if feat_stride % out_stride:
            divisors = [d for d in range(1, feat_stride + 1) if feat_stride % d == 0]
            raise ValueError(
                f"MODEL.CONDINST.MASK_OUT_STRIDE {out_stride} must divide the stride of the mask "
                f"features ({feat_stride}: the stride of MODEL.CONDINST.MASK_BRANCH.IN_FEATURES[0] "
                f"{cfg.MODEL.CONDINST.MASK_BRANCH.IN_FEATURES[0]!r}): one of {divisors}"
            )
        return ret

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def mask_out_stride(self) -> int:
        return self.mask_head.mask_out_stride

    def forward(self, batched_inputs: List[Dict]):
        """
        Returns:
            training: dict with ``loss_fcos_cls``, ``loss_fcos_loc``, ``loss_fcos_ctr``,
            ``loss_mask`` (and ``loss_sem`` with the semantic branch, plus whatever the mask head
            adds); inference: ``list[dict]`` with ``"instances"`` (see :meth:`inference`).
        """
        if not self.training:
            return self.inference(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        assert "instances" in batched_inputs[0], "PercepCondInst needs 'instances' in training"
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        self.add_bitmasks(gt_instances, images.tensor.shape[-2], images.tensor.shape[-1])

        features = self.backbone(images.tensor)
        mask_feats, sem_losses = self.mask_branch(features, gt_instances)
        positives, proposal_losses = self.proposal_generator(
            images, features, gt_instances, self.controller
        )
        mask_losses = self.forward_mask_head_train(
            positives, mask_feats, gt_instances, images.tensor
        )

        losses = {}
        losses.update(sem_losses)
        losses.update(proposal_losses)
        losses.update(mask_losses)
        return losses

    def inference(self, batched_inputs: List[Dict], do_postprocess: bool = True):
        """
        Returns:
            with ``do_postprocess``: ``list[dict]``, one ``{"instances": Instances}`` per image at
            its ``height`` x ``width`` with ``pred_boxes``, ``scores``, ``pred_classes``,
            ``pred_masks`` (R, height, width) bool (and ``locations``, ``fpn_levels``,
            ``im_inds``, ``mask_head_params``); without: one Instances for the whole batch with
            ``pred_global_masks`` (R, 1, Hpad / s, Wpad / s) over the padded input.
        """
        assert not self.training
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        mask_feats, _ = self.mask_branch(features)
        proposals, _ = self.proposal_generator(images, features, None, self.controller)
        detections = self.forward_mask_head_test(proposals, mask_feats, images.tensor.shape[-2:])
        if not do_postprocess:
            return detections
        return self.postprocess(detections, batched_inputs, images)

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalise and pad the images to a multiple of the backbone's size divisibility."""
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        return ImageList.from_tensors(
            images,
            self.backbone.size_divisibility,
            padding_constraints=self.backbone.padding_constraints,
        )

    def add_bitmasks(self, gt_instances: List[Instances], im_h: int, im_w: int) -> None:
        """
        Add ``gt_bitmasks_full`` ``(M, Hpad, Wpad)`` (float 0/1, the padded image size) and
        ``gt_bitmasks`` ``(M, Hpad / s, Wpad / s)`` (sampled at the centres of the s x s cells)
        to every image's ground truth.
        """
        s = self.mask_out_stride
        for gt in gt_instances:
            if len(gt) == 0:
                full = torch.zeros((0, im_h, im_w), device=self.device)
            elif not gt.has("gt_masks"):
                raise ValueError(
                    "PercepCondInst needs instance masks ('gt_masks'): use a dataset with "
                    "'segmentation' annotations and MODEL.MASK_ON True."
                )
            elif isinstance(gt.gt_masks, PolygonMasks):
                full = BitMasks.from_polygon_masks(gt.gt_masks, im_h, im_w).tensor
            elif isinstance(gt.gt_masks, BitMasks):
                masks = gt.gt_masks.tensor
                full = F.pad(masks, (0, im_w - masks.shape[-1], 0, im_h - masks.shape[-2]))
            else:
                raise TypeError(
                    f"gt_masks of type {type(gt.gt_masks).__name__} are not supported; "
                    "use INPUT.MASK_FORMAT polygon or bitmask"
                )
            full = full.to(device=self.device, dtype=torch.float32)
            gt.gt_bitmasks_full = full
            gt.gt_bitmasks = full[:, s // 2 :: s, s // 2 :: s]

    def forward_mask_head_train(
        self,
        positives: Instances,
        mask_feats: torch.Tensor,
        gt_instances: List[Instances],
        images: torch.Tensor,
    ) -> Dict[str, torch.Tensor]:
        """Sample the FCOS positives that get a mask loss and compute the mask head's losses.

        The sampled instances carry ``im_inds``, ``fpn_levels``, ``locations``, ``gt_inds`` and
        ``mask_head_params`` (and FCOS's ``labels``, ``logits_pred``, ``ctrness_pred``, ...),
        plus ``soft_targets`` ``(R, 1, Hpad / s, Wpad / s)`` when there is a ``mask_targets``
        source, run here on ``images`` ``(N, 3, Hpad, Wpad)``.
        """
        positives.mask_head_params = positives.top_feats
        sampled = self.mask_head.sample_instances(positives)
        if self.mask_targets is not None:
            sampled.soft_targets = self.mask_targets(images, sampled)
        return self.mask_head(mask_feats, self.mask_branch.out_stride, sampled, gt_instances)

    @torch.no_grad()
    def mask_probs_at(self, images: torch.Tensor, queries: Instances) -> torch.Tensor:
        """
        This model's mask probabilities for given points (the public method a teacher uses).

        Args:
            images: ``(N, 3, Hpad, Wpad)`` normalised, padded batch (this model's pixel
                normalisation and a size divisible by its backbone's).
            queries: R rows with ``im_inds``, ``fpn_levels`` and ``locations`` (x, y) on this
                model's FCOS grid (e.g. another CondInst's sampled instances).
        Returns:
            ``(R, 1, Hpad / s, Wpad / s)`` probabilities, no graph.
        """
        s = self.mask_out_stride
        if len(queries) == 0:
            return images.new_zeros((0, 1, images.shape[-2] // s, images.shape[-1] // s))
        features = self.backbone(images)
        mask_feats, _ = self.mask_branch(features)
        points = Instances(queries.image_size)
        points.im_inds = queries.im_inds
        points.fpn_levels = queries.fpn_levels
        points.locations = queries.locations
        points.mask_head_params = self.proposal_generator.top_feats_at(
            features, self.controller, points
        )
        logits = self.mask_head.mask_logits(mask_feats, self.mask_branch.out_stride, points)
        return logits.sigmoid()

    def forward_mask_head_test(
        self, proposals: List[Instances], mask_feats: torch.Tensor, padded_size: Tuple[int, int]
    ) -> Instances:
        """Run the mask head on the detections of all images (gathered into one Instances of the
        padded size, with ``im_inds``)."""
        gathered = []
        for im_id, per_im in enumerate(proposals):
            per_im = Instances(tuple(padded_size), **per_im.get_fields())
            per_im.im_inds = torch.full(
                (len(per_im),), im_id, dtype=torch.long, device=mask_feats.device
            )
            gathered.append(per_im)
        detections = Instances.cat(gathered)
        detections.mask_head_params = detections.top_feats
        return self.mask_head(mask_feats, self.mask_branch.out_stride, detections)

    def postprocess(
        self, detections: Instances, batched_inputs: List[Dict], images: ImageList
    ) -> List[Dict[str, Instances]]:
        """Split the batch's detections per image and resize them to ``height`` x ``width``."""
        padded_size = tuple(images.tensor.shape[-2:])
        results = []
        for im_id, (inputs, image_size) in enumerate(zip(batched_inputs, images.image_sizes)):
            height = inputs.get("height", image_size[0])
            width = inputs.get("width", image_size[1])
            per_im = detections[detections.im_inds == im_id]
            per_im = Instances(tuple(image_size), **per_im.get_fields())
            results.append({"instances": postprocess_instances(per_im, height, width, padded_size)})
        return results
