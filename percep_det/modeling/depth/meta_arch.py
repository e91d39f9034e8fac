"""Monocular depth estimation with the generic perceptual loss (seed paper §3.1, §4.2.2, Table 7).

``PercepDepthEstimator`` mirrors detectron2's ``SemanticSegmentor``: pixel normalisation, padding
to the backbone's size divisibility, a backbone, a decoder (``MODEL.DEPTH.HEAD_NAME``) to the input
resolution, a loss dict in training and ``[{"depth": (height, width) metres}]`` in inference.

Output (``MODEL.DEPTH.OUTPUT``): ``"bins"`` = classification over ``NUM_BINS`` log-spaced bins in
``[MIN_DEPTH, MAX_DEPTH]``, decoded softly to the expected log-depth (:mod:`.bins`); ``"regression"``
= one channel, ``depth = MIN_DEPTH + (MAX_DEPTH - MIN_DEPTH) * sigmoid``.

Losses (each on when its weight is non-zero; invalid ground truth, depth 0 and the padding,
never contributes):

* ``loss_depth_wce`` (bins): the weighted cross-entropy over bins, ``WCE_WEIGHT``, ``WCE_ALPHA``;
* ``loss_depth_silog`` (regression): the scale-invariant log loss, ``SILOG_WEIGHT``;
* ``loss_depth_vnl``: the virtual normal loss on the decoded depth, ``VNL_WEIGHT`` (needs each
  input's ``"intrinsics"``);
* ``loss_depth_percep`` (``MODEL.DEPTH.PERCEPTUAL``): lambda * MSE(f(d / MAX_DEPTH), f(d* /
  MAX_DEPTH)) with ``f`` the frozen random loss network of ``MODEL.PERCEPTUAL_LOSS`` (1 input
  channel) and both maps zero at invalid pixels. The loss network is positively homogeneous, so
  the depth scale sets the size of the term: dividing by the fixed ``MAX_DEPTH`` of the dataset
  keeps inputs in [0, 1] like the other tasks' probabilities, with one lambda for every image.

Resizing (``INPUT.DEPTH.RESIZE_MODE``, see the depth mapper): in ``"depth"`` mode the network
learns ``depth / s`` for an image resized by ``s``, so inference multiplies its output by the
test-time ``s`` (the VNL convention); in ``"intrinsics"`` mode depth stays metric.

Shape shorthand: N images, H x W the padded batch, B bins.
"""

import logging
import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import ImageList
from torch import Tensor, nn

from ..perceptual import PerceptualLoss
from .bins import (
    bin_centres_log10,
    depth_to_bin,
    soft_decode,
    wce_weight_matrix,
    weighted_cross_entropy,
)
from .decoder import build_depth_head
from .losses import silog_loss, virtual_normal_loss

__all__ = ["PercepDepthEstimator"]

logger = logging.getLogger(__name__)

OUTPUTS = ("bins", "regression")
RESIZE_MODES = ("depth", "intrinsics")
RANGE_CHECK_ITERS = 20  # training batches whose ground truth is checked against the output range
RANGE_WARN_SHARE = 0.01  # warn when more of the valid ground truth lies outside it


@META_ARCH_REGISTRY.register()
class PercepDepthEstimator(nn.Module):
    """
    A backbone and a depth decoder (see the module docstring). ``batched_inputs``: a list of
    dicts (:class:`~percep_det.data.DepthDatasetMapper`'s output) with

    * ``"image"``: ``(C, H, W)`` in ``INPUT.FORMAT``;
    * ``"depth"`` (training): ``(H, W)`` float metres, 0 = invalid;
    * ``"intrinsics"`` (training with VNL): ``(4,)`` ``fx, fy, cx, cy`` of the given image;
    * ``"height"``, ``"width"`` (optional): the output size in inference (default: the image's).

    Training returns a dict of losses; inference ``[{"depth": (height, width) metres}]``.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        head: nn.Module,
        pixel_mean: List[float],
        pixel_std: List[float],
        output: str = "bins",
        min_depth: float = 0.1,
        max_depth: float = 10.0,
        num_bins: int = 150,
        wce_weight: float = 1.0,
        wce_alpha: float = 0.2,
        silog_weight: float = 1.0,
        silog_variance_focus: float = 0.85,
        vnl_weight: float = 0.0,
        vnl_sample_ratio: float = 0.15,
        vnl_cos_thresh: float = 0.867,
        vnl_min_dist: float = 0.05,
        vnl_keep_hardest: float = 0.75,
        perceptual_loss: Optional[PerceptualLoss] = None,
        resize_mode: str = "depth",
    ):
        """
        Args:
            backbone, head: the backbone and a decoder returning ``(N, B or 1, H, W)``.
            pixel_mean, pixel_std: per-channel normalisation of ``"image"``.
            output: "bins" or "regression".
            min_depth, max_depth, num_bins: the output range (metres) and the bins.
            wce_weight, wce_alpha: the weighted cross-entropy (bins; 0 = off).
            silog_weight, silog_variance_focus: the scale-invariant log loss (regression).
            vnl_*: the virtual normal loss (see :func:`.losses.virtual_normal_loss`; 0 = off).
            perceptual_loss: the weighted perceptual loss on ``(N, 1, H, W)`` depth / max_depth,
                or None (off).
            resize_mode: the data's ``INPUT.DEPTH.RESIZE_MODE``.
        """
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"MODEL.DEPTH.OUTPUT must be one of {OUTPUTS}, got {output!r}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(
                f"INPUT.DEPTH.RESIZE_MODE must be one of {RESIZE_MODES}, got {resize_mode!r}"
            )
        if not 0 < min_depth < max_depth:
            raise ValueError(
                f"MODEL.DEPTH.MIN_DEPTH ({min_depth}) must be > 0 and < MODEL.DEPTH.MAX_DEPTH "
                f"({max_depth})"
            )
        for key, value in (
            ("WCE_WEIGHT", wce_weight),
            ("SILOG_WEIGHT", silog_weight),
            ("VNL_WEIGHT", vnl_weight),
        ):
            if value < 0:
                raise ValueError(f"MODEL.DEPTH.{key} must be >= 0, got {value}")
        self.backbone = backbone
        self.head = head
        # the batch is padded so that every feature map's stride divides it (detectron2's ResNet
        # reports size_divisibility 0; the decoder's upsampling needs exact multiples)
        strides = [spec.stride for spec in backbone.output_shape().values()]
        self.size_divisibility = max([backbone.size_divisibility] + strides)
        self.output = output
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.wce_weight = wce_weight if output == "bins" else 0.0
        self.silog_weight = silog_weight if output == "regression" else 0.0
        self.silog_variance_focus = silog_variance_focus
        self.vnl_weight = vnl_weight
        self.vnl_options = dict(
            sample_ratio=vnl_sample_ratio,
            cos_thresh=vnl_cos_thresh,
            min_dist=vnl_min_dist,
            keep_hardest=vnl_keep_hardest,
        )
        self.perceptual_loss = perceptual_loss
        self.resize_mode = resize_mode
        self.num_bins = num_bins if output == "bins" else 1
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        if output == "bins":
            centres = bin_centres_log10(min_depth, max_depth, num_bins)
            self.register_buffer("bin_centres", centres, False)
            self.register_buffer("wce_weights", wce_weight_matrix(num_bins, wce_alpha), False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        dc = cfg.MODEL.DEPTH
        backbone = build_backbone(cfg)
        out_channels = dc.NUM_BINS if dc.OUTPUT == "bins" else 1
        return {
            "backbone": backbone,
            "head": build_depth_head(cfg, backbone.output_shape(), out_channels),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "output": dc.OUTPUT,
            "min_depth": dc.MIN_DEPTH,
            "max_depth": dc.MAX_DEPTH,
            "num_bins": dc.NUM_BINS,
            "wce_weight": dc.WCE_WEIGHT,
            "wce_alpha": dc.WCE_ALPHA,
            "silog_weight": dc.SILOG_WEIGHT,
            "silog_variance_focus": dc.SILOG_VARIANCE_FOCUS,
            "vnl_weight": dc.VNL_WEIGHT,
            "vnl_sample_ratio": dc.VNL_SAMPLE_RATIO,
            "vnl_cos_thresh": dc.VNL_COS_THRESH,
            "vnl_min_dist": dc.VNL_MIN_DIST,
            "vnl_keep_hardest": dc.VNL_KEEP_HARDEST,
            "perceptual_loss": PerceptualLoss(cfg, in_channels=1) if dc.PERCEPTUAL else None,
            "resize_mode": cfg.INPUT.DEPTH.RESIZE_MODE,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def decode(self, outputs: Tensor) -> Tensor:
        """The decoder's ``(N, B or 1, H, W)`` outputs -> ``(N, 1, H, W)`` depth in metres."""
        if self.output == "bins":
            return soft_decode(outputs, self.bin_centres)
        return self.min_depth + (self.max_depth - self.min_depth) * torch.sigmoid(outputs.float())

    def forward(self, batched_inputs: List[Dict]):
        images = [
            (x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs
        ]
        images = ImageList.from_tensors(images, self.size_divisibility)
        outputs = self.head(self.backbone(images.tensor))  # (N, B or 1, H, W)
        if outputs.shape[-2:] != images.tensor.shape[-2:]:
            raise RuntimeError(
                f"{type(self.head).__name__} (MODEL.DEPTH.HEAD_NAME) returned "
                f"{tuple(outputs.shape[-2:])} maps for a {tuple(images.tensor.shape[-2:])} batch"
            )
        if self.training:
            if "depth" not in batched_inputs[0]:
                raise ValueError(
                    "PercepDepthEstimator needs 'depth' in training inputs (DepthDatasetMapper "
                    "gives it for records with a 'depth_file_name')"
                )
            gt = [x["depth"].to(self.device).float() for x in batched_inputs]
            gt = ImageList.from_tensors(gt, self.size_divisibility, pad_value=0.0).tensor
            self._check_range(gt)
            intrinsics = None
            if self.vnl_weight > 0:
                if any("intrinsics" not in x for x in batched_inputs):
                    raise ValueError(
                        "MODEL.DEPTH.VNL_WEIGHT > 0 needs 'intrinsics' (fx, fy, cx, cy) in every "
                        "input: the dataset's metadata must have 'intrinsics'"
                    )
                intrinsics = torch.stack(
                    [torch.as_tensor(x["intrinsics"], dtype=torch.float32) for x in batched_inputs]
                ).to(self.device)
            return self.losses(outputs, None, gt, intrinsics)
        return self.postprocess(self.decode(outputs), images.image_sizes, batched_inputs)

    def _check_range(self, gt: Tensor) -> None:
        """Warn once when the first training batches' valid ground truth lies outside the output
        range: the bins clip it (the regression's sigmoid cannot reach it), which looks like a
        model that does not learn. Checked on the first ``RANGE_CHECK_ITERS`` batches only (each
        check waits for the device)."""
        self._range_checks = getattr(self, "_range_checks", 0) + 1
        if self._range_checks > RANGE_CHECK_ITERS:
            return
        valid = gt > 0
        num_valid = int(valid.sum())
        outside = valid & ((gt < self.min_depth) | (gt > self.max_depth))
        share = int(outside.sum()) / max(num_valid, 1)
        if share <= RANGE_WARN_SHARE:
            return
        self._range_checks = RANGE_CHECK_ITERS  # once
        hint = (
            " With INPUT.DEPTH.RESIZE_MODE 'depth' an image resized by s < 1 has its depth "
            "divided by s (VNL's convention): use RESIZE_MODE 'intrinsics' to keep metric depth."
            if self.resize_mode == "depth"
            else ""
        )
        logger.warning(
            f"{100 * share:.1f} % of the valid ground-truth depth of a training batch lies outside "
            f"MODEL.DEPTH.MIN_DEPTH..MAX_DEPTH ({self.min_depth}..{self.max_depth} m; largest "
            f"{float(gt[valid].max()):.2f} m): the output cannot represent it.{hint}"
        )

    def losses(
        self, outputs: Tensor, depth: Optional[Tensor], gt: Tensor, intrinsics: Optional[Tensor]
    ) -> Dict[str, Tensor]:
        """
        Args:
            outputs: ``(N, B or 1, H, W)`` the decoder's outputs; ``depth``: ``(N, 1, H, W)``
                decoded, or None to decode here, only if a loss on depth is on (WCE alone works
                on the logits: no softmax over every bin and pixel for nothing).
            gt: ``(N, H, W)`` metres, 0 = invalid (and the padding).
            intrinsics: ``(N, 4)`` or None (only VNL needs it).
        """
        losses = {}
        valid = gt > 0
        needs_depth = (
            self.silog_weight > 0 or self.vnl_weight > 0 or self.perceptual_loss is not None
        )
        if depth is None and needs_depth:
            depth = self.decode(outputs)  # (N, 1, H, W)
        if self.wce_weight > 0:
            bins = depth_to_bin(gt, self.min_depth, self.max_depth, self.num_bins)
            losses["loss_depth_wce"] = self.wce_weight * weighted_cross_entropy(
                outputs, bins, self.wce_weights
            )
        if self.silog_weight > 0:
            losses["loss_depth_silog"] = self.silog_weight * silog_loss(
                depth, gt[:, None], self.silog_variance_focus
            )
        if self.vnl_weight > 0:
            losses["loss_depth_vnl"] = self.vnl_weight * virtual_normal_loss(
                depth, gt[:, None], intrinsics, **self.vnl_options
            )
        if self.perceptual_loss is not None:
            self.perceptual_loss.check_input_size(
                tuple(depth.shape[-2:]),
                "loss_depth_percep: the depth maps (the padded training images, "
                "INPUT.MIN_SIZE_TRAIN / INPUT.CROP.SIZE)",
            )
            mask = valid[:, None].to(depth.dtype)
            pred = depth / self.max_depth * mask
            target = gt[:, None] / self.max_depth * mask
            losses["loss_depth_percep"] = self.perceptual_loss(pred, target)
        if not losses:
            raise ValueError(
                "PercepDepthEstimator has no loss: set MODEL.DEPTH.WCE_WEIGHT (OUTPUT 'bins'), "
                "SILOG_WEIGHT (OUTPUT 'regression'), VNL_WEIGHT or PERCEPTUAL"
            )
        return losses

    def postprocess(self, depth: Tensor, image_sizes, batched_inputs: List[Dict]) -> List[Dict]:
        """Crop the padding, resize to each input's ``height`` x ``width`` (bilinear) and, in
        RESIZE_MODE "depth", multiply by the resize factor the network saw."""
        results = []
        for d, (h, w), x in zip(depth, image_sizes, batched_inputs):
            out_h, out_w = x.get("height", h), x.get("width", w)
            d = d[:, :h, :w]
            if (out_h, out_w) != (h, w):
                d = F.interpolate(
                    d[None], size=(out_h, out_w), mode="bilinear", align_corners=False
                )[0]
                if self.resize_mode == "depth":
                    d = d * math.sqrt((h / out_h) * (w / out_w))
            results.append({"depth": d[0]})
        return results

    def predict_depth(self, images: Tensor) -> Tensor:
        """``(N, 3, H, W)`` normalised images (sizes divisible by ``size_divisibility``) -> ``(N, 1,
        H, W)`` depth in metres, in the model's current mode; a public method for tools."""
        return self.decode(self.head(self.backbone(images)))
