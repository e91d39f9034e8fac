"""Models of percep_det.

* :mod:`.perceptual`: the task-agnostic perceptual loss (loss-network zoo, loss, fingerprints);
* :mod:`.frozen`: frozen models held outside a module tree (loss networks, teachers);
* :mod:`.layers`: layers shared by the tasks;
* one folder per task: :mod:`.condinst` (instance segmentation), :mod:`.mask_rcnn` (the perceptual
  Mask R-CNN mask head), :mod:`.semantic_seg` (PSPNet and the term for any sem-seg head),
  :mod:`.depth` (monocular depth: bins, WCE, VNL).

Every module that registers something is imported here.
"""
from . import condinst, depth, frozen, layers, mask_rcnn, perceptual, semantic_seg  # noqa: F401
from .perceptual import (  # noqa: F401
    LOSS_NET_ZOO,
    PercepLossNetwork,
    PercepVGGLossNetwork,
    PercepZooLossNetwork,
    PerceptualLoss,
    build_loss_network,
    naive_perceptual_loss,
    perceptual_loss,
)
