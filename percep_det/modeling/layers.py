"""Small building blocks shared by every dense predictor of percep_det (FCOS, CondInst, variants).

Each helper exists exactly once here; variants import it instead of copying it.

Shape shorthand: ``N`` images, ``C`` channels, ``H, W`` feature size, ``R`` points / instances.
"""

import math
from typing import Optional

import torch
import torch.distributed as dist
from detectron2.layers import get_norm
from detectron2.utils import comm
from torch import nn
from torch.nn import functional as F

__all__ = [
    "Scale",
    "aligned_bilinear",
    "compute_locations",
    "compute_ctrness_targets",
    "conv_norm_relu",
    "dice_loss",
    "iou_loss",
    "prior_bias",
    "reduce_mean",
]


class Scale(nn.Module):
    """A learnable scalar multiplier (one per FPN level in FCOS's box regression branch)."""

    def __init__(self, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([float(init_value)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def aligned_bilinear(tensor: torch.Tensor, factor: int) -> torch.Tensor:
    """
    Upsample ``(N, C, H, W)`` to ``(N, C, H * factor, W * factor)`` so that the output grid stays
    aligned with the input grid's sampling points.

    A feature at stride ``s`` samples the image at ``s * i + s // 2``; plain bilinear resizing
    (either ``align_corners`` mode) shifts that grid. Interpolating with corners aligned onto a
    one-pixel replicate-padded map and shifting by ``factor // 2`` keeps the points aligned. The
    exact arithmetic matters: trained CondInst weights (AdelaiDet) expect it.
    """
    assert tensor.dim() == 4, f"aligned_bilinear expects (N, C, H, W), got {tuple(tensor.shape)}"
    assert factor >= 1 and int(factor) == factor, f"factor must be a positive integer, got {factor}"
    factor = int(factor)
    if factor == 1:
        return tensor
    h, w = tensor.shape[-2:]
    tensor = F.pad(tensor, pad=(0, 1, 0, 1), mode="replicate")
    oh, ow = factor * h + 1, factor * w + 1
    tensor = F.interpolate(tensor, size=(oh, ow), mode="bilinear", align_corners=True)
    tensor = F.pad(tensor, pad=(factor // 2, 0, factor // 2, 0), mode="replicate")
    return tensor[:, :, : oh - 1, : ow - 1]


def compute_locations(
    h: int, w: int, stride: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """
    Image coordinates ``(x, y)`` of the points of an ``h x w`` feature map with the given stride,
    row-major, ``(h * w, 2)``. Point ``(i, j)`` sits at ``(j * stride + stride // 2,
    i * stride + stride // 2)``.
    """
    xs = torch.arange(w, device=device, dtype=dtype) * stride
    ys = torch.arange(h, device=device, dtype=dtype) * stride
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x.reshape(-1), grid_y.reshape(-1)), dim=1) + stride // 2


def compute_ctrness_targets(reg_targets: torch.Tensor) -> torch.Tensor:
    """
    FCOS centre-ness of points inside their boxes.

    Args:
        reg_targets: ``(R, 4)`` distances (left, top, right, bottom), all positive.
    Returns:
        ``(R,)`` ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` in [0, 1].
    """
    if reg_targets.numel() == 0:
        return reg_targets.new_zeros(len(reg_targets))
    left_right = reg_targets[:, [0, 2]]
    top_bottom = reg_targets[:, [1, 3]]
    ctrness = (left_right.min(dim=1).values / left_right.max(dim=1).values) * (
        top_bottom.min(dim=1).values / top_bottom.max(dim=1).values
    )
    return torch.sqrt(ctrness)


def dice_loss(scores: torch.Tensor, targets: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """
    Per-instance dice loss ``1 - 2 * sum(p * g) / (sum(p^2) + sum(g^2) + eps)``.

    Args:
        scores: ``(R, 1, H, W)`` (or any ``(R, ...)``) mask probabilities in [0, 1].
        targets: same shape as ``scores``, binary ground truth.
    Returns:
        ``(R,)`` losses; the caller chooses the reduction.
    """
    assert (
        scores.shape == targets.shape
    ), f"dice_loss: scores {tuple(scores.shape)} and targets {tuple(targets.shape)} differ"
    scores = scores.flatten(1)
    targets = targets.flatten(1).to(scores.dtype)
    intersection = (scores * targets).sum(dim=1)
    union = (scores**2).sum(dim=1) + (targets**2).sum(dim=1) + eps
    return 1.0 - 2.0 * intersection / union


def iou_loss(pred: torch.Tensor, target: torch.Tensor, loss_type: str = "giou") -> torch.Tensor:
    """
    Per-point IoU losses of boxes given as distances from a common point, as FCOS regresses them.

    Hand-written rather than torchvision's ``generalized_box_iou_loss`` because trained CondInst /
    FCOS models (AdelaiDet) use a smoothed IoU, ``(inter + 1) / (union + 1)``, and no epsilon in
    the enclosing area. With distances in stride units (boxes often smaller than 1 x 1) the +1
    changes the loss noticeably, so the exact arithmetic is needed to reproduce their losses.

    Args:
        pred: ``(R, 4)`` predicted (left, top, right, bottom) distances, non-negative.
        target: ``(R, 4)`` target distances of the same points, positive.
        loss_type: "giou" (``1 - giou``), "linear_iou" (``1 - iou``) or "iou" (``-log(iou)``).
    Returns:
        ``(R,)`` losses; the caller weights and reduces them.
    """
    assert pred.shape == target.shape and pred.dim() == 2 and pred.shape[1] == 4, (
        f"iou_loss expects pred and target of shape (R, 4), "
        f"got {tuple(pred.shape)} and {tuple(target.shape)}"
    )
    pred_l, pred_t, pred_r, pred_b = pred.unbind(dim=1)  # (R,) each
    tgt_l, tgt_t, tgt_r, tgt_b = target.unbind(dim=1)
    pred_area = (pred_l + pred_r) * (pred_t + pred_b)
    target_area = (tgt_l + tgt_r) * (tgt_t + tgt_b)
    # both boxes contain the point, so intersection and enclosing box are sums of min / max
    inter_w = torch.min(pred_l, tgt_l) + torch.min(pred_r, tgt_r)
    inter_h = torch.min(pred_b, tgt_b) + torch.min(pred_t, tgt_t)
    enclose_w = torch.max(pred_l, tgt_l) + torch.max(pred_r, tgt_r)
    enclose_h = torch.max(pred_b, tgt_b) + torch.max(pred_t, tgt_t)
    inter = inter_w * inter_h
    union = target_area + pred_area - inter
    ious = (inter + 1.0) / (union + 1.0)
    if loss_type == "giou":
        enclose = enclose_w * enclose_h
        return 1.0 - (ious - (enclose - union) / enclose)
    if loss_type == "linear_iou":
        return 1.0 - ious
    if loss_type == "iou":
        return -torch.log(ious)
    raise ValueError(
        f"iou_loss: loss_type (MODEL.FCOS.LOC_LOSS_TYPE) must be giou, linear_iou or iou, "
        f"got {loss_type!r}"
    )


def reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all processes (a copy; identity when not distributed)."""
    world_size = comm.get_world_size()
    if world_size < 2:
        return tensor.float()
    tensor = tensor.detach().clone().float()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / world_size


def prior_bias(prior_prob: float) -> float:
    """Bias that makes a sigmoid output ``prior_prob`` at initialisation (focal-loss init)."""
    return -math.log((1.0 - prior_prob) / prior_prob)


def conv_norm_relu(
    in_channels: int, out_channels: int, kernel_size: int = 3, norm: Optional[str] = "BN"
) -> nn.Module:
    """
    ``Sequential(conv, norm, ReLU)`` (or ``Sequential(conv, ReLU)`` when ``norm`` is empty), conv
    weights kaiming-uniform(a=1), no conv bias when a norm follows.

    A plain ``Sequential`` rather than ``detectron2.layers.Conv2d(norm=...)`` because the
    state_dict names must be ``<i>.0.weight`` / ``<i>.1.running_mean`` to load AdelaiDet weights.
    """
    use_norm = norm not in (None, "", "none")
    conv = nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=(kernel_size - 1) // 2,
        bias=not use_norm,
    )
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)
    layers = [conv]
    if use_norm:
        layers.append(get_norm(norm, out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)
