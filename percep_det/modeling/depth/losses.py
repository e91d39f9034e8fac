"""Depth losses on metric depth maps: the virtual normal loss and the scale-invariant log loss.

Shape shorthand: N images, H x W pixels, T triplets. Ground-truth depth ``<= 0`` is invalid and
never contributes: no triplet uses such a pixel, no log is taken of it.
"""

import math
from typing import Optional

import torch
from torch import Tensor

__all__ = [
    "back_project",
    "sample_triplets",
    "virtual_normal_filter",
    "virtual_normals",
    "virtual_normal_loss",
    "silog_loss",
]


def back_project(depth: Tensor, rows: Tensor, cols: Tensor, intrinsics: Tensor) -> Tensor:
    """
    Args:
        depth: ``(...)`` metres at the pixels ``(rows, cols)`` (same shape).
        intrinsics: ``(4,)`` ``fx, fy, cx, cy``; pixel ``(r, c)`` has its centre at ``u = c + 1/2``,
            ``v = r + 1/2`` (detectron2's convention, the one DepthDatasetMapper keeps the
            intrinsics in).
    Returns:
        ``(..., 3)`` camera coordinates ``x = (u - cx) z / fx, y = (v - cy) z / fy, z``.
    """
    fx, fy, cx, cy = intrinsics.to(depth).unbind(0)
    x = (cols.to(depth) + 0.5 - cx) * depth / fx
    y = (rows.to(depth) + 0.5 - cy) * depth / fy
    return torch.stack([x, y, depth], dim=-1)


def sample_triplets(valid: Tensor, num: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """
    ``(T, 3)`` flat pixel indices of ``num`` triplets drawn uniformly, with replacement, from the
    True pixels of ``valid`` (H, W); ``(0, 3)`` when fewer than 3 pixels are valid.
    """
    index = valid.flatten().nonzero().squeeze(1)
    if len(index) < 3 or num < 1:
        return index.new_zeros((0, 3))
    pick = torch.randint(len(index), (num, 3), generator=generator, device="cpu").to(index.device)
    return index[pick]


def virtual_normal_filter(points: Tensor, cos_thresh: float, min_dist: float) -> Tensor:
    """
    Which triplets of ground-truth points define a usable plane (VNL's filters).

    Args:
        points: ``(T, 3, 3)``: triplet, vertex (P1, P2, P3), xyz.
        cos_thresh: drop a triplet with two edges (of P1P2, P1P3, P2P3) whose |cos| exceeds it
            (nearly colinear points: 0.867 ~ 30 degrees).
        min_dist: drop a triplet where some edge is shorter than this along x, some edge along y
            and some edge along z (metres; the three edges may differ): points too close together.
    Returns:
        ``(T,)`` bool, True = keep.
    """
    p1, p2, p3 = points.unbind(1)
    edges = torch.stack([p2 - p1, p3 - p1, p3 - p2], dim=1)  # (T, 3 edges, 3)
    unit = edges / edges.norm(dim=2, keepdim=True).clamp_min(1e-12)
    cos = torch.einsum("tex,tfx->tef", unit, unit).abs()  # (T, 3, 3)
    off_diagonal = ~torch.eye(3, dtype=torch.bool, device=points.device)
    colinear = (cos > cos_thresh)[:, off_diagonal].any(dim=1)
    short = edges.abs() < min_dist  # (T, 3 edges, 3 axes)
    too_close = short.any(dim=1).all(dim=1)  # some edge short in x, some in y, some in z
    return ~(colinear | too_close)


def virtual_normals(points: Tensor) -> Tensor:
    """``(T, 3, 3)`` triplets -> ``(T, 3)`` unit normals ``(P2 - P1) x (P3 - P1) / norm``."""
    p1, p2, p3 = points.unbind(1)
    n = torch.cross(p2 - p1, p3 - p1, dim=1)
    norm = n.norm(dim=1, keepdim=True)
    return n / torch.where(norm > 0, norm, norm + 0.01)  # VNL: +0.01 where the norm is 0


def virtual_normal_loss(
    pred: Tensor,
    gt: Tensor,
    intrinsics: Tensor,
    sample_ratio: float = 0.15,
    cos_thresh: float = 0.867,
    min_dist: float = 0.05,
    keep_hardest: float = 0.75,
    generator: Optional[torch.Generator] = None,
) -> Tensor:
    """
    The virtual normal loss (Yin et al. 2019): the mean L1 distance between the normals of planes
    through random triplets of back-projected points, predicted vs ground truth.

    Per image, ``int(sample_ratio * #valid pixels)`` triplets are drawn from its valid pixels only
    (VNL draws over the whole image and reuses the indices across the batch; drawing per image
    among valid pixels wastes no triplet on holes). Triplets failing
    :func:`virtual_normal_filter` on the ground truth are dropped; the losses of the batch's
    remaining triplets are pooled and only the hardest ``keep_hardest`` share is averaged.

    Args:
        pred, gt: ``(N, 1, H, W)`` or ``(N, H, W)`` depth in metres (gt ``<= 0`` = invalid).
        intrinsics: ``(N, 4)`` ``fx, fy, cx, cy`` of each image.
    Returns:
        a scalar; 0 (with the graph) when no triplet survives.
    """
    if pred.dim() == 4:
        pred, gt = pred[:, 0], gt[:, 0]
    if pred.shape != gt.shape or intrinsics.shape != (pred.shape[0], 4):
        raise ValueError(
            f"virtual_normal_loss: pred and gt (N, H, W) and intrinsics (N, 4) expected, got "
            f"{tuple(pred.shape)}, {tuple(gt.shape)}, {tuple(intrinsics.shape)}"
        )
    if not 0 < keep_hardest <= 1:
        raise ValueError(f"MODEL.DEPTH.VNL_KEEP_HARDEST must be in (0, 1], got {keep_hardest}")
    width = pred.shape[-1]
    losses = []
    for i in range(len(pred)):
        valid = gt[i] > 0
        num = int(sample_ratio * int(valid.sum()))
        index = sample_triplets(valid, num, generator)  # (T, 3)
        if len(index) == 0:
            continue
        rows, cols = index // width, index % width
        gt_points = back_project(gt[i].flatten()[index], rows, cols, intrinsics[i])  # (T, 3, 3)
        keep = virtual_normal_filter(gt_points, cos_thresh, min_dist)
        if not keep.any():
            continue
        rows, cols, index = rows[keep], cols[keep], index[keep]
        z = pred[i].flatten()[index].float().clamp_min(1e-4)  # VNL: predicted z 0 -> 1e-4
        pred_points = back_project(z, rows, cols, intrinsics[i])
        n_gt = virtual_normals(gt_points[keep].float())
        n_pred = virtual_normals(pred_points)
        losses.append((n_gt - n_pred).abs().sum(dim=1))  # (T_i,)
    if not losses:
        return pred.sum() * 0.0
    loss = torch.cat(losses)
    keep_n = max(1, int(math.ceil(keep_hardest * len(loss))))
    return torch.topk(loss, keep_n, sorted=False).values.mean()


def silog_loss(pred: Tensor, gt: Tensor, variance_focus: float = 0.85) -> Tensor:
    """
    Scale-invariant log loss (BTS): ``sqrt(mean e^2 - variance_focus (mean e)^2) * 10`` with
    ``e = ln pred - ln gt`` over the valid pixels (gt > 0) of the batch; 0 with none.

    Args:
        pred, gt: ``(N, 1, H, W)`` or ``(N, H, W)`` depth in metres.
    """
    valid = gt > 0
    if not valid.any():
        return pred.sum() * 0.0
    e = torch.log(pred[valid].float().clamp_min(1e-6)) - torch.log(gt[valid].float())
    return torch.sqrt((e**2).mean() - variance_focus * e.mean() ** 2 + 1e-12) * 10.0
