"""Models of percep_det. Every module that registers something is imported here."""
from . import loss_network, losses  # noqa: F401  (loss network and perceptual loss)
from .loss_network import (  # noqa: F401
    LOSS_NET_ZOO,
    PercepLossNetwork,
    PercepVGGLossNetwork,
    PercepZooLossNetwork,
    build_loss_network,
)
from .losses import PerceptualLoss, naive_perceptual_loss, perceptual_loss  # noqa: F401
from . import backbone, fcos, mask_branch, dynamic_mask_head, condinst  # noqa
from . import perceptual_mask_head, teacher  # noqa
