"""CondInst's dynamic mask head with the generic perceptual loss (Liu et al., CVPR 2021, §3.1).

``loss_mask_percep = lambda * perceptual_loss(P, T)`` where ``P`` ``(n, 1, Ho, Wo)`` are the mask
probabilities of the n sampled instances (stride MASK_OUT_STRIDE) and ``T`` their targets: the
gt bitmasks (``TARGET "gt"``) or a frozen teacher's soft masks for the same instances
(``TARGET "teacher"``, see :mod:`percep_det.modeling.teacher`). The dice loss is unchanged.

Select with ``MODEL.CONDINST.MASK_HEAD.NAME PercepPerceptualDynamicMaskHead``; keys in
``MODEL.CONDINST.PERCEPTUAL`` and ``MODEL.PERCEPTUAL_LOSS`` (lambda = LOSS_WEIGHT, CHUNK_SIZE).

Checkpoints and inference: the loss network (like the teacher) is held outside the module tree
and built on the first training step; its weights are regenerated from MODEL.PERCEPTUAL_LOSS.SEED,
so the head's ``state_dict`` equals the plain head's (a student loads into a plain CondInst) and
inference never builds or runs it.

Cost options (faithful default: off): ``MAX_INSTANCES`` evaluates a random subset of the sampled
instances; ``CROP`` evaluates each instance on a crop around its support (pixels where prediction
or target exceed CROP_THRESH, plus CROP_MARGIN, corners snapped to CROP_ALIGN so the loss net's
pooling grid is that of the full mask), in buckets of CHUNK_SIZE crops of similar size, each
bucket padded with zeros to its largest crop. The loss network gives f(0) = 0, so this is exact up
to what the margin cuts off; the bucket losses are rescaled to the full mask's normalisation.

Shape shorthand: n sampled instances, Ho x Wo the mask size, k instances in the perceptual term.
"""

import functools
import logging
from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.structures import ImageList, Instances

from .dynamic_mask_head import PERCEP_MASK_HEAD_REGISTRY, PercepDynamicMaskHead
from .loss_network import PercepLossNetwork, build_loss_network
from .losses import PRECISIONS, perceptual_loss
from .teacher import DetachedModule, PercepCondInstTeacher

__all__ = ["PercepPerceptualDynamicMaskHead", "crop_to_support"]

logger = logging.getLogger(__name__)

TARGETS = ("gt", "teacher")


def crop_to_support(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    thresh: float = 0.05,
    margin: int = 32,
    align: int = 32,
    bucket_size: int = 8,
) -> List[Tuple[torch.Tensor, torch.Tensor, float]]:
    """
    Cut every instance to the box of its support (``pred > thresh`` or ``target > thresh``)
    grown by ``margin`` with corners snapped outwards to multiples of ``align`` (and clipped to
    the mask), and group the crops by size into buckets of ``bucket_size``, zero-padded to the
    bucket's largest crop. A crop that covers the whole mask gives exactly the full loss.

    Args:
        pred, target: ``(k, 1, Ho, Wo)`` probabilities (gradients flow through ``pred``'s crops).
    Returns:
        list of ``(pred_b, target_b, scale_b)`` with ``(k_b, 1, hb, wb)`` crops and
        ``scale_b = k_b / k * (hb // align * wb // align) / (Ho // align * Wo // align)``: the
        factor that turns the bucket's mean loss into its share of the full-mask mean loss.
        An instance with no support gets one ``align`` x ``align`` cell at its prediction's peak.
    """
    k, _, h, w = pred.shape
    support = ((pred.detach() > thresh) | (target > thresh))[:, 0]  # (k, Ho, Wo)
    rows, cols = support.any(dim=2), support.any(dim=1)  # (k, Ho), (k, Wo)
    ar_h = torch.arange(h, device=pred.device)
    ar_w = torch.arange(w, device=pred.device)
    y0 = torch.where(rows, ar_h, h).min(dim=1).values
    y1 = torch.where(rows, ar_h + 1, 0).max(dim=1).values
    x0 = torch.where(cols, ar_w, w).min(dim=1).values
    x1 = torch.where(cols, ar_w + 1, 0).max(dim=1).values
    peak = pred.detach().flatten(1).argmax(dim=1)  # (k,)
    empty = y1 <= y0
    y0 = torch.where(empty, peak // w, y0)
    y1 = torch.where(empty, peak // w + 1, y1)
    x0 = torch.where(empty, peak % w, x0)
    x1 = torch.where(empty, peak % w + 1, x1)
    # grow by the margin, snap outwards to the pooling grid (origin stays on the full mask's grid)
    y0 = torch.div((y0 - margin).clamp(min=0), align, rounding_mode="floor") * align
    x0 = torch.div((x0 - margin).clamp(min=0), align, rounding_mode="floor") * align
    y1 = (-torch.div(-(y1 + margin), align, rounding_mode="floor") * align).clamp(max=h)
    x1 = (-torch.div(-(x1 + margin), align, rounding_mode="floor") * align).clamp(max=w)
    boxes = torch.stack([y0, y1, x0, x1], dim=1).tolist()  # one host sync for all crops

    full_cells = max(h // align, 1) * max(w // align, 1)
    order = sorted(
        range(k), key=lambda i: (boxes[i][1] - boxes[i][0]) * (boxes[i][3] - boxes[i][2])
    )
    step = k if bucket_size <= 0 else bucket_size
    buckets = []
    for start in range(0, k, step):
        ids = order[start : start + step]
        hb = max(boxes[i][1] - boxes[i][0] for i in ids)
        wb = max(boxes[i][3] - boxes[i][2] for i in ids)
        crops_p, crops_t = [], []
        for i in ids:
            by0, by1, bx0, bx1 = boxes[i]
            pad = (0, wb - (bx1 - bx0), 0, hb - (by1 - by0))
            crops_p.append(F.pad(pred[i, :, by0:by1, bx0:bx1], pad))
            crops_t.append(F.pad(target[i, :, by0:by1, bx0:bx1], pad))
        scale = len(ids) / k * (hb // align) * (wb // align) / full_cells
        buckets.append((torch.stack(crops_p), torch.stack(crops_t), scale))
    return buckets


@PERCEP_MASK_HEAD_REGISTRY.register()
class PercepPerceptualDynamicMaskHead(PercepDynamicMaskHead):
    """
    :class:`PercepDynamicMaskHead` plus ``loss_mask_percep`` (see the module docstring).
    Inference is the parent's, unchanged.
    """

    @configurable
    def __init__(
        self,
        *,
        loss_network: Union[PercepLossNetwork, Callable[[], PercepLossNetwork]],
        percep_loss_weight: float = 0.1,
        chunk_size: int = 8,
        precision: str = "fp32",
        channels_last: bool = False,
        target: str = "gt",
        teacher: Optional[PercepCondInstTeacher] = None,
        max_instances: int = -1,
        crop: bool = False,
        crop_thresh: float = 0.05,
        crop_margin: int = 32,
        crop_align: int = 32,
        **kwargs,
    ):
        """
        Args:
            loss_network: frozen loss network with ``in_channels`` 1, or a function building it
                (called on the first training step).
            percep_loss_weight: lambda, weight of ``loss_mask_percep`` (paper: 0.1).
            chunk_size, precision, channels_last: see :func:`perceptual_loss`.
            target: "gt" or "teacher".
            teacher: gives the soft targets when ``target`` is "teacher".
            max_instances: at most this many (random) sampled instances in the perceptual term;
                -1 = all.
            crop, crop_thresh, crop_margin, crop_align: see :func:`crop_to_support`.
            kwargs: arguments of :class:`PercepDynamicMaskHead`.
        """
        super().__init__(**kwargs)
        assert (
            target in TARGETS
        ), f"MODEL.CONDINST.PERCEPTUAL.TARGET must be one of {TARGETS}, got {target!r}"
        assert target != "teacher" or teacher is not None, "TARGET 'teacher' needs a teacher"
        assert (
            precision in PRECISIONS
        ), f"MODEL.PERCEPTUAL_LOSS.PRECISION must be one of {list(PRECISIONS)}, got {precision!r}"
        assert (
            max_instances == -1 or max_instances > 0
        ), f"MODEL.CONDINST.PERCEPTUAL.MAX_INSTANCES must be -1 or > 0, got {max_instances}"
        assert crop_align > 0 and crop_margin >= 0, (
            f"MODEL.CONDINST.PERCEPTUAL.CROP_ALIGN must be > 0 and CROP_MARGIN >= 0, got "
            f"{crop_align} and {crop_margin}"
        )
        # Outside the module tree: not in state_dict (see the module docstring).
        self._loss_network = DetachedModule(loss_network)
        self.percep_loss_weight = percep_loss_weight
        self.chunk_size = chunk_size
        self.precision = precision
        self.channels_last = channels_last
        self.target = target
        self.teacher = teacher
        self.max_instances = max_instances
        self.crop = crop
        self.crop_thresh = crop_thresh
        self.crop_margin = crop_margin
        self.crop_align = crop_align

    @classmethod
    def from_config(cls, cfg):
        ret = super().from_config(cfg)
        lc, pc = cfg.MODEL.PERCEPTUAL_LOSS, cfg.MODEL.CONDINST.PERCEPTUAL
        net_cfg = cfg.clone()
        net_cfg.defrost()
        net_cfg.MODEL.PERCEPTUAL_LOSS.IN_CHANNELS = 1  # one mask channel
        ret.update(
            {
                "loss_network": functools.partial(build_loss_network, net_cfg),
                "percep_loss_weight": lc.LOSS_WEIGHT,
                "chunk_size": lc.CHUNK_SIZE,
                "precision": lc.PRECISION,
                "channels_last": lc.CHANNELS_LAST,
                "target": pc.TARGET,
                "teacher": PercepCondInstTeacher(cfg) if pc.TARGET == "teacher" else None,
                "max_instances": pc.MAX_INSTANCES,
                "crop": pc.CROP,
                "crop_thresh": pc.CROP_THRESH,
                "crop_margin": pc.CROP_MARGIN,
                "crop_align": pc.CROP_ALIGN,
            }
        )
        return ret

    def loss_network(self, device: Optional[torch.device] = None) -> PercepLossNetwork:
        """The frozen loss network (built on the first call), on ``device`` if given."""
        return self._loss_network.get(device)

    # ------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------
    def predict_train(
        self,
        mask_feats: torch.Tensor,
        mask_feat_stride: int,
        instances: Instances,
        gt_instances: List[Instances],
        images: Optional[ImageList] = None,
    ) -> Dict[str, Optional[torch.Tensor]]:
        """The parent's predictions plus ``percep_inds`` / ``percep_targets`` (see
        :meth:`perceptual_targets`); ``images`` is needed for teacher targets."""
        predictions = super().predict_train(
            mask_feats, mask_feat_stride, instances, gt_instances, images
        )
        predictions.update(self.perceptual_targets(predictions, instances, images))
        return predictions

    def perceptual_instances(self, num_instances: int, device: torch.device):
        """Indices ``(k,)`` of the instances in the perceptual term (random, MAX_INSTANCES), or
        None for all."""
        if self.max_instances == -1 or num_instances <= self.max_instances:
            return None
        return torch.randperm(num_instances, device=device)[: self.max_instances]

    def perceptual_targets(
        self,
        predictions: Dict[str, torch.Tensor],
        instances: Instances,
        images: Optional[ImageList] = None,
    ) -> Dict[str, Optional[torch.Tensor]]:
        """
        Returns:
            ``percep_inds`` ``(k,)`` (None = all n) and ``percep_targets`` ``(k, 1, Ho, Wo)``: gt
            bitmasks or the teacher's soft masks of those instances.
        """
        scores = predictions["mask_scores"]  # (n, 1, Ho, Wo)
        inds = self.perceptual_instances(len(scores), scores.device)
        if self.target == "gt":
            gt = predictions["gt_bitmasks"]
            return {"percep_inds": inds, "percep_targets": gt if inds is None else gt[inds]}
        if images is None:
            raise ValueError(
                "MODEL.CONDINST.PERCEPTUAL.TARGET 'teacher': the mask head needs the batched "
                "images; the meta-architecture must pass images= to the mask head in training."
            )
        chosen = instances if inds is None else instances[inds]
        targets = self.teacher.soft_masks(images.tensor, chosen).to(scores.dtype)
        expected = (len(chosen), *scores.shape[1:])
        assert targets.shape == expected, (
            f"teacher masks {tuple(targets.shape)} differ from the student's {expected}; check "
            "MODEL.CONDINST.MASK_OUT_STRIDE and the mask branch's IN_FEATURES of both configs"
        )
        return {"percep_inds": inds, "percep_targets": targets}

    def losses(
        self, predictions: Dict[str, torch.Tensor], instances: Instances
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            predictions: output of :meth:`predict_train`, optionally with ``percep_inds`` /
                ``percep_targets`` (else: gt targets, computed here).
        Returns:
            the parent's losses and ``loss_mask_percep`` (0, in the graph, when there is no
            instance).
        """
        losses = super().losses(predictions, instances)
        if "percep_targets" not in predictions:
            predictions = {**predictions, **self.perceptual_targets(predictions, instances)}
        scores, inds = predictions["mask_scores"], predictions["percep_inds"]
        pred = scores if inds is None else scores[inds]  # (k, 1, Ho, Wo)
        loss = self.perceptual_loss(pred, predictions["percep_targets"])
        losses["loss_mask_percep"] = loss * self.percep_loss_weight
        return losses

    def perceptual_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Unweighted perceptual loss of ``(k, 1, Ho, Wo)`` predictions and targets (mean over
        instances), on crops when CROP is on."""
        net = self.loss_network(pred.device)
        kwargs = {
            "chunk_size": self.chunk_size,
            "precision": self.precision,
            "channels_last": self.channels_last,
        }
        if not self.crop or len(pred) == 0:
            return perceptual_loss(pred, target, net, **kwargs)
        buckets = crop_to_support(
            pred,
            target,
            thresh=self.crop_thresh,
            margin=self.crop_margin,
            align=self.crop_align,
            bucket_size=self.chunk_size,
        )
        return sum(scale * perceptual_loss(p, t, net, **kwargs) for p, t, scale in buckets)
