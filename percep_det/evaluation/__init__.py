"""Evaluators that detectron2 lacks: monocular depth (NYUv2 / BTS metrics)."""

from .depth_evaluation import (
    DEPTH_METRICS,
    DepthEvaluator,
    compute_depth_metrics,
    depth_valid_mask,
    eigen_crop_box,
)

__all__ = [
    "DEPTH_METRICS",
    "DepthEvaluator",
    "compute_depth_metrics",
    "depth_valid_mask",
    "eigen_crop_box",
]
