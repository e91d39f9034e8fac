"""FCOS (Tian et al., ICCV 2019) as a detectron2 proposal generator, the detector inside CondInst.

State_dict names and behaviour follow AdelaiDet's ``FCOS`` (``fcos_head.cls_tower.*`` ...), so its
CondInst checkpoints load unchanged.

Shape shorthand in this file:
    N: images in the batch; L: FPN levels; Hi, Wi: size of level i
    R: points over all levels of one image (sum of Hi * Wi); M: ground-truth boxes of one image
    K: foreground classes (label K means background); P: channels of the top module output
"""

import logging
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, batched_nms, cat
from detectron2.modeling.meta_arch.dense_detector import permute_to_N_HWA_K
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn
from torch.nn import functional as F
from torchvision.ops import sigmoid_focal_loss

from ..layers import (
    Scale,
    compute_ctrness_targets,
    compute_locations,
    iou_loss,
    prior_bias,
    reduce_mean,
)
from .checks import check_increasing, check_positive_ints

__all__ = ["PercepFCOS", "PercepFCOSHead", "gather_level_params"]

logger = logging.getLogger(__name__)

INF = 100000000


class PercepFCOSHead(nn.Module):
    """
    FCOS head shared by all levels: a classification tower and a box tower (conv3x3 + norm + ReLU
    each), class logits from the first, box distances (ltrb, ReLU, one learnable ``Scale`` per
    level) and centre-ness from the second. An optional ``top_module`` (CondInst's controller)
    is applied to the box tower output of every level.
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: List[ShapeSpec],
        num_classes: int,
        num_cls_convs: int = 4,
        num_box_convs: int = 4,
        num_share_convs: int = 0,
        norm: str = "GN",
        use_scale: bool = True,
        prior_prob: float = 0.01,
    ):
        """
        Args:
            input_shape: one ShapeSpec per FPN level, all with the same channel count.
            num_classes: number of foreground classes K.
            num_cls_convs, num_box_convs, num_share_convs: conv layers in the classification,
                box and shared (applied first) towers.
            norm: "GN" (GroupNorm with 32 groups) or "none".
            use_scale: learn one scalar per level for the box distances.
            prior_prob: initial foreground probability of the classifier.
        """
        super().__init__()
        channels = {s.channels for s in input_shape}
        assert len(channels) == 1, f"all FCOS input levels need the same channels, got {channels}"
        in_channels = channels.pop()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.num_levels = len(input_shape)

        # Towers are plain Sequential(conv, norm, ReLU, ...) so that names are cls_tower.{0,1,3,..}
        # exactly as in AdelaiDet's checkpoints.
        for name, num_convs in (
            ("cls", num_cls_convs),
            ("bbox", num_box_convs),
            ("share", num_share_convs),
        ):
            tower = []
            for _ in range(num_convs):
                tower.append(nn.Conv2d(in_channels, in_channels, 3, padding=1, bias=True))
                if norm in ("GN", "NaiveGN"):
                    assert in_channels % 32 == 0, (
                        f"MODEL.FCOS.NORM=GN uses 32 groups; {in_channels} input channels "
                        "(MODEL.FPN.OUT_CHANNELS) are not divisible by 32"
                    )
                    tower.append(nn.GroupNorm(32, in_channels))
                tower.append(nn.ReLU())
            self.add_module(f"{name}_tower", nn.Sequential(*tower))

        self.cls_logits = nn.Conv2d(in_channels, num_classes, 3, padding=1)
        self.bbox_pred = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.ctrness = nn.Conv2d(in_channels, 1, 3, padding=1)
        self.scales = (
            nn.ModuleList([Scale(1.0) for _ in range(self.num_levels)]) if use_scale else None
        )

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.constant_(module.bias, 0)
        nn.init.constant_(self.cls_logits.bias, prior_bias(prior_prob))

    @classmethod
    def from_config(cls, cfg, input_shape: List[ShapeSpec]):
        norm = cfg.MODEL.FCOS.NORM
        if norm == "":
            norm = "none"
        if norm not in ("GN", "NaiveGN", "none"):
            raise NotImplementedError(
                f"MODEL.FCOS.NORM={norm!r} is not supported by percep_det; use 'GN' or 'none'."
            )
        if cfg.MODEL.FCOS.USE_DEFORMABLE:
            raise NotImplementedError(
                "MODEL.FCOS.USE_DEFORMABLE=True needs compiled deformable convs; percep_det is "
                "pure Python. Set it to False."
            )
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.FCOS.NUM_CLASSES,
            "num_cls_convs": cfg.MODEL.FCOS.NUM_CLS_CONVS,
            "num_box_convs": cfg.MODEL.FCOS.NUM_BOX_CONVS,
            "num_share_convs": cfg.MODEL.FCOS.NUM_SHARE_CONVS,
            "norm": norm,
            "use_scale": cfg.MODEL.FCOS.USE_SCALE,
            "prior_prob": cfg.MODEL.FCOS.PRIOR_PROB,
        }

    def forward(
        self, features: List[torch.Tensor], top_module: Optional[nn.Module] = None
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]:
        """
        Args:
            features: L maps ``(N, C, Hi, Wi)``.
            top_module: applied to every box tower output (e.g. CondInst's controller), or None.
        Returns:
            logits ``(N, K, Hi, Wi)``, box distances ``(N, 4, Hi, Wi)`` in units of the level's
            stride, centre-ness logits ``(N, 1, Hi, Wi)`` and top features ``(N, P, Hi, Wi)``
            (an empty list without ``top_module``), each a list over levels.
        """
        logits, bbox_reg, ctrness, top_feats = [], [], [], []
        for level, feature in enumerate(features):
            feature = self.share_tower(feature)
            cls_tower = self.cls_tower(feature)
            bbox_tower = self.bbox_tower(feature)
            logits.append(self.cls_logits(cls_tower))
            ctrness.append(self.ctrness(bbox_tower))
            reg = self.bbox_pred(bbox_tower)
            if self.scales is not None:
                reg = self.scales[level](reg)
            bbox_reg.append(F.relu(reg))
            if top_module is not None:
                top_feats.append(top_module(bbox_tower))
        return logits, bbox_reg, ctrness, top_feats


@PROPOSAL_GENERATOR_REGISTRY.register()
class PercepFCOS(nn.Module):
    """
    FCOS: per-point classification, ltrb box regression and centre-ness on FPN levels.

    Training targets: a point is positive for a ground truth when it lies inside the centre region
    (``pos_radius * stride`` around the centroid of the gt mask when ``gt_bitmasks_full`` is
    present, else the box centre; clipped to the box) and the largest of its ltrb distances falls
    in the level's size range (inclusive); among several, the smallest box wins.
    """

    @configurable
    def __init__(
        self,
        *,
        head: PercepFCOSHead,
        in_features: List[str],
        fpn_strides: List[int],
        sizes_of_interest: List[int],
        center_sample: bool = True,
        pos_radius: float = 1.5,
        focal_loss_alpha: float = 0.25,
        focal_loss_gamma: float = 2.0,
        loss_normalizer_cls: str = "fg",
        loss_weight_cls: float = 1.0,
        pre_nms_thresh_train: float = 0.05,
        pre_nms_thresh_test: float = 0.05,
        pre_nms_topk_train: int = 1000,
        pre_nms_topk_test: int = 1000,
        post_nms_topk_train: int = 100,
        post_nms_topk_test: int = 100,
        nms_thresh: float = 0.6,
        thresh_with_ctr: bool = False,
    ):
        """
        Args:
            head: the shared per-level head.
            in_features: names of the FPN levels used, e.g. ["p3", ..., "p7"].
            fpn_strides: stride of each of those levels.
            sizes_of_interest: L - 1 boundaries of the per-level size ranges; level i is
                responsible for boxes whose largest ltrb distance lies in [b(i-1), b(i)]
                (b(-1) = -1, b(L-1) = INF).
            center_sample, pos_radius: centre sampling and its radius in strides.
            focal_loss_alpha, focal_loss_gamma: focal loss parameters.
            loss_normalizer_cls: "fg" (positives averaged over processes), "moving_fg" (a moving
                average of it) or "all" (number of points).
            loss_weight_cls: weight of the classification loss.
            pre_nms_thresh_*: score threshold before NMS (train / test mode).
            pre_nms_topk_*: candidates kept per level and image before NMS.
            post_nms_topk_*: detections kept per image after NMS.
            nms_thresh: IoU threshold of the class-aware NMS.
            thresh_with_ctr: threshold ``cls * ctrness`` instead of ``cls``.
        """
        super().__init__()
        assert len(in_features) == len(
            fpn_strides
        ), f"MODEL.FCOS.IN_FEATURES {in_features} and FPN_STRIDES {fpn_strides} differ in length"
        assert len(sizes_of_interest) == len(in_features) - 1, (
            f"MODEL.FCOS.SIZES_OF_INTEREST needs {len(in_features) - 1} values for "
            f"{len(in_features)} levels, got {sizes_of_interest}"
        )
        assert loss_normalizer_cls in (
            "fg",
            "moving_fg",
            "all",
        ), f"MODEL.FCOS.LOSS_NORMALIZER_CLS must be fg, moving_fg or all, got {loss_normalizer_cls}"
        self.fcos_head = head
        self.in_features = list(in_features)
        self.fpn_strides = list(fpn_strides)
        bounds = [-1] + list(sizes_of_interest) + [INF]
        self.size_ranges = [(bounds[i], bounds[i + 1]) for i in range(len(in_features))]
        self.center_sample = center_sample
        self.pos_radius = pos_radius
        self.focal_loss_alpha = focal_loss_alpha
        self.focal_loss_gamma = focal_loss_gamma
        self.loss_normalizer_cls = loss_normalizer_cls
        self.loss_weight_cls = loss_weight_cls
        self.pre_nms_thresh = {True: pre_nms_thresh_train, False: pre_nms_thresh_test}
        self.pre_nms_topk = {True: pre_nms_topk_train, False: pre_nms_topk_test}
        self.post_nms_topk = {True: post_nms_topk_train, False: post_nms_topk_test}
        self.nms_thresh = nms_thresh
        self.thresh_with_ctr = thresh_with_ctr
        # Moving average of the positive count ("moving_fg"); starts at a plausible value.
        self.moving_num_fg = 100.0
        self.moving_num_fg_momentum = 0.9

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        box_quality, loc_loss = cfg.MODEL.FCOS.BOX_QUALITY, cfg.MODEL.FCOS.LOC_LOSS_TYPE
        if box_quality != "ctrness":
            raise NotImplementedError(
                f"MODEL.FCOS.BOX_QUALITY={box_quality!r}: only 'ctrness' is supported"
            )
        if loc_loss != "giou":
            raise NotImplementedError(
                f"MODEL.FCOS.LOC_LOSS_TYPE={loc_loss!r}: only 'giou' is supported"
            )
        in_features = cfg.MODEL.FCOS.IN_FEATURES
        missing = [f for f in in_features if f not in input_shape]
        assert not missing, (
            f"MODEL.FCOS.IN_FEATURES {missing} are not produced by the backbone "
            f"(it gives {sorted(input_shape)})"
        )
        strides = cfg.MODEL.FCOS.FPN_STRIDES
        check_positive_ints("MODEL.FCOS.FPN_STRIDES", strides)
        backbone_strides = [input_shape[f].stride for f in in_features]
        if len(strides) == len(in_features) and list(strides) != backbone_strides:
            # (a warning: such a model still runs, with its points placed by FPN_STRIDES)
            logger.warning(
                f"MODEL.FCOS.FPN_STRIDES {list(strides)} differ from the strides of the backbone "
                f"levels MODEL.FCOS.IN_FEATURES {list(in_features)}: {backbone_strides}; the "
                "points of those levels are placed at the wrong image positions"
            )
        check_increasing("MODEL.FCOS.SIZES_OF_INTEREST", cfg.MODEL.FCOS.SIZES_OF_INTEREST)
        if cfg.MODEL.FCOS.CENTER_SAMPLE and not cfg.MODEL.FCOS.POS_RADIUS > 0:
            raise ValueError(
                f"MODEL.FCOS.POS_RADIUS (in strides) must be > 0 with CENTER_SAMPLE, got "
                f"{cfg.MODEL.FCOS.POS_RADIUS}"
            )
        return {
            "head": PercepFCOSHead(cfg, [input_shape[f] for f in in_features]),
            "in_features": in_features,
            "fpn_strides": cfg.MODEL.FCOS.FPN_STRIDES,
            "sizes_of_interest": cfg.MODEL.FCOS.SIZES_OF_INTEREST,
            "center_sample": cfg.MODEL.FCOS.CENTER_SAMPLE,
            "pos_radius": cfg.MODEL.FCOS.POS_RADIUS,
            "focal_loss_alpha": cfg.MODEL.FCOS.LOSS_ALPHA,
            "focal_loss_gamma": cfg.MODEL.FCOS.LOSS_GAMMA,
            "loss_normalizer_cls": cfg.MODEL.FCOS.LOSS_NORMALIZER_CLS,
            "loss_weight_cls": cfg.MODEL.FCOS.LOSS_WEIGHT_CLS,
            "pre_nms_thresh_train": cfg.MODEL.FCOS.INFERENCE_TH_TRAIN,
            "pre_nms_thresh_test": cfg.MODEL.FCOS.INFERENCE_TH_TEST,
            "pre_nms_topk_train": cfg.MODEL.FCOS.PRE_NMS_TOPK_TRAIN,
            "pre_nms_topk_test": cfg.MODEL.FCOS.PRE_NMS_TOPK_TEST,
            "post_nms_topk_train": cfg.MODEL.FCOS.POST_NMS_TOPK_TRAIN,
            "post_nms_topk_test": cfg.MODEL.FCOS.POST_NMS_TOPK_TEST,
            "nms_thresh": cfg.MODEL.FCOS.NMS_TH,
            "thresh_with_ctr": cfg.MODEL.FCOS.THRESH_WITH_CTR,
        }

    @property
    def num_classes(self) -> int:
        return self.fcos_head.num_classes

    @property
    def in_channels_to_top_module(self) -> int:
        """Channels of the box tower output that a ``top_module`` receives."""
        return self.fcos_head.in_channels

    def forward(
        self,
        images: ImageList,
        features: Dict[str, torch.Tensor],
        gt_instances: Optional[List[Instances]] = None,
        top_module: Optional[nn.Module] = None,
    ):
        """
        Args:
            images: the padded batch (only its sizes are used).
            features: backbone outputs by name.
            gt_instances: per image, ``gt_boxes`` and ``gt_classes`` (and optionally
                ``gt_bitmasks_full``, the padded-size masks used for the centroids); training only.
            top_module: see :class:`PercepFCOSHead`.
        Returns:
            In training ``(positives, losses)``: ``positives`` is one :class:`Instances` with a row
            per positive point of the batch (fields listed in :meth:`losses`) and ``losses`` holds
            ``loss_fcos_cls``, ``loss_fcos_loc``, ``loss_fcos_ctr``. In inference
            ``(detections, {})`` with one :class:`Instances` per image (see
            :meth:`predict_proposals`).
        """
        features = [features[f] for f in self.in_features]
        locations = self.compute_locations(features)
        logits, reg, ctrness, top_feats = self.fcos_head(features, top_module)
        if self.training:
            assert gt_instances is not None, "PercepFCOS needs gt_instances in training"
            return self.losses(
                locations, logits, reg, ctrness, top_feats, gt_instances, images.tensor.shape[-2:]
            )
        return (
            self.predict_proposals(locations, logits, reg, ctrness, top_feats, images.image_sizes),
            {},
        )

    def top_feats_at(
        self, features: Dict[str, torch.Tensor], top_module: nn.Module, queries: Instances
    ) -> torch.Tensor:
        """
        The ``top_module`` outputs (e.g. CondInst's controller) at given points of the batch.

        Args:
            features: backbone outputs by name.
            top_module: see :class:`PercepFCOSHead`.
            queries: R rows with ``im_inds`` (R,), ``fpn_levels`` (R,) and ``locations`` (R, 2)
                image (x, y) of points of this model's grid (e.g. another model's positives).
        Returns:
            ``(R, P)``.
        """
        _, _, _, top_feats = self.fcos_head([features[f] for f in self.in_features], top_module)
        return gather_level_params(top_feats, self.fpn_strides, queries)

    def compute_locations(self, features: List[torch.Tensor]) -> List[torch.Tensor]:
        """Image coordinates ``(Hi * Wi, 2)`` of the points of every level."""
        return [
            compute_locations(f.shape[-2], f.shape[-1], stride, f.device)
            for f, stride in zip(features, self.fpn_strides)
        ]

    # ------------------------------------------------------------------------------------------
    # training targets
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def label_points(
        self, locations: List[torch.Tensor], gt_instances: List[Instances]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """
        Assign every point of every image to a ground truth or to the background.

        Args:
            locations: L tensors ``(Hi * Wi, 2)``.
            gt_instances: N Instances with ``gt_boxes``, ``gt_classes`` (and optionally
                ``gt_bitmasks_full`` ``(M, Hpad, Wpad)``).
        Returns:
            labels ``(N, R)`` in [0, K] (K = background); reg_targets ``(N, R, 4)`` ltrb distances
            divided by the point's stride; gt_inds ``(N, R)`` index into the batch-concatenated
            ground truths (image 0's first, ...), -1 for background.
        """
        points = torch.cat(locations, dim=0)  # (R, 2)
        strides = torch.cat(
            [points.new_full((len(loc),), float(s)) for loc, s in zip(locations, self.fpn_strides)]
        )  # (R,)
        size_ranges = torch.cat(
            [
                points.new_tensor(r)[None].expand(len(loc), 2)
                for loc, r in zip(locations, self.size_ranges)
            ]
        )  # (R, 2)
        labels, reg_targets, gt_inds = [], [], []
        num_gts_before = 0
        for gt_per_image in gt_instances:
            labels_i, reg_i, inds_i = self._label_points_single(
                points, strides, size_ranges, gt_per_image
            )
            inds_i = torch.where(inds_i >= 0, inds_i + num_gts_before, inds_i)
            num_gts_before += len(gt_per_image)
            labels.append(labels_i)
            reg_targets.append(reg_i / strides[:, None])
            gt_inds.append(inds_i)
        return torch.stack(labels), torch.stack(reg_targets), torch.stack(gt_inds)

    def _label_points_single(
        self,
        points: torch.Tensor,
        strides: torch.Tensor,
        size_ranges: torch.Tensor,
        gt: Instances,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Labels ``(R,)``, ltrb targets in pixels ``(R, 4)``, gt indices ``(R,)`` of one image."""
        num_points = len(points)
        boxes = gt.gt_boxes.tensor  # (M, 4)
        if len(boxes) == 0:
            return (
                torch.full((num_points,), self.num_classes, dtype=torch.long, device=points.device),
                points.new_zeros((num_points, 4)),
                torch.full((num_points,), -1, dtype=torch.long, device=points.device),
            )
        xs, ys = points[:, 0:1], points[:, 1:2]  # (R, 1)
        reg = torch.stack(
            [xs - boxes[:, 0], ys - boxes[:, 1], boxes[:, 2] - xs, boxes[:, 3] - ys], dim=2
        )  # (R, M, 4)

        if self.center_sample:
            centers = self._gt_centers(gt)  # (M, 2)
            radius = (strides * self.pos_radius)[:, None]  # (R, 1)
            x0 = torch.maximum(centers[:, 0] - radius, boxes[:, 0])  # (R, M)
            y0 = torch.maximum(centers[:, 1] - radius, boxes[:, 1])
            x1 = torch.minimum(centers[:, 0] + radius, boxes[:, 2])
            y1 = torch.minimum(centers[:, 1] + radius, boxes[:, 3])
            inside = torch.stack([xs - x0, ys - y0, x1 - xs, y1 - ys], dim=2).min(dim=2).values > 0
        else:
            inside = reg.min(dim=2).values > 0  # (R, M)

        max_reg = reg.max(dim=2).values  # (R, M)
        in_level = (max_reg >= size_ranges[:, 0:1]) & (max_reg <= size_ranges[:, 1:2])

        areas = gt.gt_boxes.area()[None].expand(num_points, -1)  # (R, M)
        areas = torch.where(inside & in_level, areas, torch.full_like(areas, INF))
        min_area, inds = areas.min(dim=1)  # (R,)
        background = min_area == INF
        labels = torch.where(
            background, torch.full_like(inds, self.num_classes), gt.gt_classes[inds]
        )
        reg = reg[torch.arange(num_points, device=points.device), inds]  # (R, 4)
        inds = torch.where(background, torch.full_like(inds, -1), inds)
        return labels, reg, inds

    @staticmethod
    def _gt_centers(gt: Instances) -> torch.Tensor:
        """``(M, 2)`` centres for centre sampling: mask centroids when ``gt_bitmasks_full`` is set
        (pixel-index coordinates, as AdelaiDet), else box centres."""
        if gt.has("gt_bitmasks_full"):
            masks = gt.gt_bitmasks_full.float()  # (M, Hpad, Wpad)
            h, w = masks.shape[-2:]
            ys = torch.arange(h, dtype=masks.dtype, device=masks.device)
            xs = torch.arange(w, dtype=masks.dtype, device=masks.device)
            m00 = masks.sum(dim=(1, 2)).clamp(min=1e-6)
            cx = (masks.sum(dim=1) * xs).sum(dim=1) / m00
            cy = (masks.sum(dim=2) * ys).sum(dim=1) / m00
            return torch.stack([cx, cy], dim=1)
        return gt.gt_boxes.get_centers()

    # ------------------------------------------------------------------------------------------
    # losses
    # ------------------------------------------------------------------------------------------
    def losses(
        self,
        locations: List[torch.Tensor],
        logits: List[torch.Tensor],
        reg: List[torch.Tensor],
        ctrness: List[torch.Tensor],
        top_feats: List[torch.Tensor],
        gt_instances: List[Instances],
        image_size: Tuple[int, int],
    ) -> Tuple[Instances, Dict[str, torch.Tensor]]:
        """
        Focal loss over all points, and for the positives a GIoU loss weighted by the centre-ness
        targets and a centre-ness BCE loss. Normalisers (positive count, sum of centre-ness
        targets) are averaged over processes.

        Returns:
            positives: Instances (image_size = padded batch size) with one row per positive point:
                ``labels``, ``gt_inds`` (into the batch-concatenated gts), ``im_inds``,
                ``locations`` (x, y), ``fpn_levels``, ``reg_targets`` / ``reg_pred`` (in strides),
                ``logits_pred`` (K), ``ctrness_pred``, ``gt_ctrs`` and, with a top module,
                ``top_feats`` (P).
            losses: ``loss_fcos_cls``, ``loss_fcos_loc``, ``loss_fcos_ctr``.
        """
        num_images = len(gt_instances)
        labels, reg_targets, gt_inds = self.label_points(locations, gt_instances)  # (N, R), ...
        num_points = labels.shape[1]

        logits = cat([permute_to_N_HWA_K(x, self.num_classes) for x in logits], dim=1)  # (N, R, K)
        reg = cat([permute_to_N_HWA_K(x, 4) for x in reg], dim=1)  # (N, R, 4)
        ctrness = cat([permute_to_N_HWA_K(x, 1) for x in ctrness], dim=1)  # (N, R, 1)

        labels = labels.flatten()  # (N * R,)
        logits = logits.reshape(-1, self.num_classes)
        pos_inds = torch.nonzero(labels != self.num_classes).squeeze(1)
        num_pos_avg = max(reduce_mean(pos_inds.new_tensor(len(pos_inds))).item(), 1.0)

        cls_targets = torch.zeros_like(logits)
        cls_targets[pos_inds, labels[pos_inds]] = 1
        loss_cls = sigmoid_focal_loss(
            logits,
            cls_targets,
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="sum",
        )
        if self.loss_normalizer_cls == "fg":
            loss_cls = loss_cls / num_pos_avg
        elif self.loss_normalizer_cls == "moving_fg":
            m = self.moving_num_fg_momentum
            self.moving_num_fg = m * self.moving_num_fg + (1 - m) * num_pos_avg
            loss_cls = loss_cls / self.moving_num_fg
        else:
            loss_cls = loss_cls / max(reduce_mean(labels.new_tensor(len(labels))).item(), 1.0)

        # positives, with everything the mask head (and a teacher) needs to find them again
        points = torch.cat(locations, dim=0)  # (R, 2)
        levels = torch.cat(
            [
                torch.full((len(loc),), i, dtype=torch.long, device=points.device)
                for i, loc in enumerate(locations)
            ]
        )  # (R,)
        point_inds = pos_inds % num_points
        pos = Instances(tuple(image_size))
        pos.labels = labels[pos_inds]
        pos.gt_inds = gt_inds.flatten()[pos_inds]
        pos.im_inds = torch.div(pos_inds, num_points, rounding_mode="floor")
        pos.locations = points[point_inds]
        pos.fpn_levels = levels[point_inds]
        pos.reg_targets = reg_targets.reshape(-1, 4)[pos_inds]
        pos.reg_pred = reg.reshape(-1, 4)[pos_inds]
        pos.logits_pred = logits[pos_inds]
        pos.ctrness_pred = ctrness.reshape(-1)[pos_inds]
        if len(top_feats) > 0:
            num_params = top_feats[0].shape[1]
            top = cat([permute_to_N_HWA_K(x, num_params) for x in top_feats], dim=1)
            pos.top_feats = top.reshape(num_images * num_points, num_params)[pos_inds]

        ctrness_targets = compute_ctrness_targets(pos.reg_targets)  # (P,)
        pos.gt_ctrs = ctrness_targets
        loss_denorm = max(reduce_mean(ctrness_targets.sum()).item(), 1e-6)
        # AdelaiDet's smoothed GIoU on the ltrb distances (in strides), see layers.iou_loss
        loc_losses = iou_loss(pos.reg_pred, pos.reg_targets, loss_type="giou")  # (P,)
        loss_loc = (loc_losses * ctrness_targets).sum() / loss_denorm
        loss_ctr = (
            F.binary_cross_entropy_with_logits(pos.ctrness_pred, ctrness_targets, reduction="sum")
            / num_pos_avg
        )
        losses = {
            "loss_fcos_cls": loss_cls * self.loss_weight_cls,
            "loss_fcos_loc": loss_loc,
            "loss_fcos_ctr": loss_ctr,
        }
        return pos, losses

    # ------------------------------------------------------------------------------------------
    # inference
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_proposals(
        self,
        locations: List[torch.Tensor],
        logits: List[torch.Tensor],
        reg: List[torch.Tensor],
        ctrness: List[torch.Tensor],
        top_feats: List[torch.Tensor],
        image_sizes: List[Tuple[int, int]],
    ) -> List[Instances]:
        """
        Per level: score threshold, top-k; per image: class-aware NMS, top-k over all classes.

        Returns:
            one Instances per image with ``pred_boxes``, ``scores`` (``sqrt(cls * ctrness)``),
            ``pred_classes``, ``locations``, ``fpn_levels`` and, with a top module, ``top_feats``.
        """
        thresh = self.pre_nms_thresh[self.training]
        pre_topk = self.pre_nms_topk[self.training]
        post_topk = self.post_nms_topk[self.training]
        num_images = len(image_sizes)
        per_image: List[List[Instances]] = [[] for _ in range(num_images)]
        for level, (loc, logits_l, reg_l, ctr_l) in enumerate(zip(locations, logits, reg, ctrness)):
            stride = self.fpn_strides[level]
            scores = permute_to_N_HWA_K(logits_l, self.num_classes).sigmoid()  # (N, HW, K)
            ctr = permute_to_N_HWA_K(ctr_l, 1).sigmoid()  # (N, HW, 1)
            dists = permute_to_N_HWA_K(reg_l, 4) * stride  # (N, HW, 4)
            top = None
            if len(top_feats) > 0:
                top = permute_to_N_HWA_K(top_feats[level], top_feats[level].shape[1])  # (N, HW, P)
            if self.thresh_with_ctr:
                scores = scores * ctr
                candidates = scores > thresh
            else:
                candidates = scores > thresh
                scores = scores * ctr
            for i in range(num_images):
                point_idx, cls_idx = candidates[i].nonzero(as_tuple=True)
                s = scores[i, point_idx, cls_idx]
                if len(s) > pre_topk:
                    s, keep = s.topk(pre_topk, sorted=False)
                    point_idx, cls_idx = point_idx[keep], cls_idx[keep]
                xy = loc[point_idx]  # (D, 2)
                d = dists[i, point_idx]  # (D, 4)
                boxes = torch.cat([xy - d[:, :2], xy + d[:, 2:]], dim=1)
                result = Instances(image_sizes[i])
                result.pred_boxes = Boxes(boxes)
                result.scores = torch.sqrt(s)
                result.pred_classes = cls_idx
                result.locations = xy
                result.fpn_levels = torch.full_like(cls_idx, level)
                if top is not None:
                    result.top_feats = top[i, point_idx]
                per_image[i].append(result)

        results = []
        for instances_per_level in per_image:
            result = Instances.cat(instances_per_level)
            keep = batched_nms(
                result.pred_boxes.tensor, result.scores, result.pred_classes, self.nms_thresh
            )  # sorted by decreasing score
            if post_topk > 0:
                keep = keep[:post_topk]
            results.append(result[keep])
        return results


def gather_level_params(
    top_feats: List[torch.Tensor], fpn_strides: List[int], instances: Instances
) -> torch.Tensor:
    """
    The per-level maps' values at the instances' points.

    Args:
        top_feats: L maps ``(N, P, Hl, Wl)`` (e.g. the controller on every FCOS level).
        fpn_strides: stride of every level; point (i, j) of level l sits at image
            ``(j * s_l + s_l // 2, i * s_l + s_l // 2)``.
        instances: R rows with ``im_inds``, ``fpn_levels`` and ``locations`` (x, y).
    Returns:
        ``(R, P)``.
    """
    device = top_feats[0].device
    widths = torch.tensor([t.shape[-1] for t in top_feats], device=device)
    heights = torch.tensor([t.shape[-2] for t in top_feats], device=device)
    sizes = widths * heights
    offsets = torch.cumsum(sizes, 0) - sizes  # (L,) first flat index of every level
    strides = torch.tensor(fpn_strides, device=device)
    levels = instances.fpn_levels
    stride = strides[levels]  # (R,)
    xy = instances.locations.round().long() - (stride // 2)[:, None]  # (R, 2)
    col = torch.div(xy[:, 0], stride, rounding_mode="floor")
    row = torch.div(xy[:, 1], stride, rounding_mode="floor")
    flat = torch.cat([t.flatten(2) for t in top_feats], dim=2)  # (N, P, sum Hl * Wl)
    index = offsets[levels] + row * widths[levels] + col  # (R,)
    return flat[instances.im_inds, :, index]  # (R, P)
