"""Monocular depth estimation with the generic perceptual loss.

* :mod:`.bins`: depth as classification over log-spaced bins, the weighted cross-entropy, soft
  decoding;
* :mod:`.losses`: the virtual normal loss and the scale-invariant log loss;
* :mod:`.decoder`: ``DEPTH_HEAD_REGISTRY`` and ``PercepDepthDecoder``;
* :mod:`.meta_arch`: ``PercepDepthEstimator`` (no teacher: the perceptual term compares the
  predicted depth with the ground truth directly).
"""

from .bins import (
    bin_centres_log10,
    bin_edges_log10,
    depth_to_bin,
    soft_decode,
    wce_weight_matrix,
    weighted_cross_entropy,
)
from .decoder import DEPTH_HEAD_REGISTRY, PercepDepthDecoder, build_depth_head
from .losses import (
    back_project,
    sample_triplets,
    silog_loss,
    virtual_normal_filter,
    virtual_normal_loss,
    virtual_normals,
)
from .meta_arch import PercepDepthEstimator

__all__ = [k for k in dir() if not k.startswith("_")]
