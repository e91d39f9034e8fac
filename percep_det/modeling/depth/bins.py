"""Depth as classification over log-spaced bins (Cao et al. 2017), as the VNL code does it.

``B`` bins split ``[log10 d_min, log10 d_max]`` into equal intervals ``delta = (log10 d_max - log10
d_min) / B``; bin ``i`` covers ``[log10 d_min + i delta, log10 d_min + (i + 1) delta)`` and its centre
is ``c_i = log10 d_min + (i + 1/2) delta``. A ground-truth depth goes to the bin that contains its
(clamped) log-depth; the top edge belongs to the last bin. A prediction is decoded softly, as the
expected log-depth: ``d = 10 ** sum_i p_i c_i``, so losses on depth (VNL, perceptual) reach the
logits through the softmax.

The weighted cross-entropy ("information gain" loss) lets neighbouring bins share the target:
``W[j, i] = exp(-alpha (i - j)^2)``, each row normalised to sum 1, and the loss of a pixel whose
ground truth is bin ``j`` is ``-sum_i W[j, i] log p_i``, averaged over the valid pixels.

Shape shorthand: N images, B bins, H x W pixels.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "bin_edges_log10",
    "bin_centres_log10",
    "depth_to_bin",
    "wce_weight_matrix",
    "weighted_cross_entropy",
    "soft_decode",
]


def _check_range(min_depth: float, max_depth: float, num_bins: int) -> None:
    if not 0 < min_depth < max_depth:
        raise ValueError(
            f"Depth bins need 0 < MODEL.DEPTH.MIN_DEPTH < MODEL.DEPTH.MAX_DEPTH, got {min_depth} "
            f"and {max_depth}"
        )
    if num_bins < 2:
        raise ValueError(f"MODEL.DEPTH.NUM_BINS must be >= 2, got {num_bins}")


def bin_edges_log10(min_depth: float, max_depth: float, num_bins: int) -> Tensor:
    """``(B + 1,)`` bin edges in log10 metres, float64."""
    _check_range(min_depth, max_depth, num_bins)
    return torch.linspace(
        math.log10(min_depth), math.log10(max_depth), num_bins + 1, dtype=torch.float64
    )


def bin_centres_log10(min_depth: float, max_depth: float, num_bins: int) -> Tensor:
    """``(B,)`` bin centres ``c_i = log10 d_min + (i + 1/2) delta`` in log10 metres, float32."""
    _check_range(min_depth, max_depth, num_bins)
    lo, hi = math.log10(min_depth), math.log10(max_depth)
    delta = (hi - lo) / num_bins
    return (lo + (torch.arange(num_bins, dtype=torch.float64) + 0.5) * delta).float()


def depth_to_bin(depth: Tensor, min_depth: float, max_depth: float, num_bins: int) -> Tensor:
    """
    Args:
        depth: ``(...)`` metres; ``<= 0`` (or non-finite) = invalid.
    Returns:
        ``(...)`` long: the bin of each depth clamped into ``[min_depth, max_depth]``
        (``floor((log10 d - log10 d_min) / delta)``, the top edge in bin B - 1), -1 where invalid.
    """
    _check_range(min_depth, max_depth, num_bins)
    lo, hi = math.log10(min_depth), math.log10(max_depth)
    valid = torch.isfinite(depth) & (depth > 0)
    d = torch.where(valid, depth, torch.ones_like(depth)).clamp(min_depth, max_depth)
    # float64: a depth exactly on an edge must not land in the bin below through rounding
    index = torch.floor((torch.log10(d.double()) - lo) / ((hi - lo) / num_bins)).long()
    index = index.clamp_(0, num_bins - 1)
    return torch.where(valid, index, torch.full_like(index, -1))


def wce_weight_matrix(num_bins: int, alpha: float) -> Tensor:
    """``(B, B)``: ``W[j, i] = exp(-alpha (i - j)^2)``, rows normalised to sum 1 (row j = the
    target distribution of a pixel whose ground-truth bin is j)."""
    if alpha < 0:
        raise ValueError(f"MODEL.DEPTH.WCE_ALPHA must be >= 0, got {alpha}")
    i = torch.arange(num_bins, dtype=torch.float64)
    w = torch.exp(-alpha * (i[None, :] - i[:, None]) ** 2)
    return (w / w.sum(dim=1, keepdim=True)).float()


def weighted_cross_entropy(logits: Tensor, gt_bins: Tensor, weights: Tensor) -> Tensor:
    """
    Args:
        logits: ``(N, B, H, W)``.
        gt_bins: ``(N, H, W)`` long, -1 = invalid (no contribution).
        weights: ``(B, B)`` from :func:`wce_weight_matrix`.
    Returns:
        ``-sum_i W[gt, i] log softmax(logits)_i`` averaged over the valid pixels; 0 (with the
        graph) when there is none.
    """
    if logits.dim() != 4 or gt_bins.shape != (logits.shape[0],) + logits.shape[2:]:
        raise ValueError(
            f"weighted_cross_entropy: logits (N, B, H, W) and bins (N, H, W) expected, got "
            f"{tuple(logits.shape)} and {tuple(gt_bins.shape)}"
        )
    valid = gt_bins >= 0  # (N, H, W)
    if not valid.any():
        return logits.sum() * 0.0
    log_p = F.log_softmax(logits.float(), dim=1)  # (N, B, H, W)
    # the target rows W[gt] as an (N, B, H, W) view; masking by multiplication, not indexing,
    # avoids copying the (P, B) gathers (about 20 % of this loss's time on CPU)
    target = weights.to(log_p)[gt_bins.clamp(min=0)].permute(0, 3, 1, 2)
    per_pixel = (target * log_p).sum(dim=1)  # (N, H, W)
    return -(per_pixel * valid).sum() / valid.sum()


def soft_decode(logits: Tensor, centres_log10: Tensor) -> Tensor:
    """``(N, B, H, W)`` logits -> ``(N, 1, H, W)`` depth in metres, ``10 ** sum_i p_i c_i``."""
    p = F.softmax(logits.float(), dim=1)
    n, b, h, w = p.shape
    # (1, 1, B) @ (N, B, HW): a batched matmul reads p in place (einsum copied it; 2x slower)
    log_depth = torch.matmul(centres_log10.to(p).view(1, 1, b), p.reshape(n, b, h * w))
    return torch.pow(10.0, log_depth).view(n, 1, h, w)
