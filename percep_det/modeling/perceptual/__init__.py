"""The generic perceptual loss, independent of any task: the loss-network zoo, the loss and the
fingerprints that pin a loss network in checkpoints. Imports torch, torchvision and detectron2
only; every task holds a :class:`PerceptualLoss` built with ``PerceptualLoss(cfg, in_channels=C)``."""
from .fingerprint import (
    CHECKPOINT_KEY,
    LossNetworkRecord,
    check_fingerprints,
    loss_network_fingerprints,
)
from .loss import (
    PRECISIONS,
    PerceptualLoss,
    crop_to_support,
    naive_perceptual_loss,
    perceptual_loss,
)
from .loss_network import (
    INIT_SCHEMES,
    LOSS_NET_ZOO,
    PercepLossNetwork,
    PercepVGGLossNetwork,
    PercepZooLossNetwork,
    build_loss_network,
    init_weight_,
)

__all__ = [k for k in dir() if not k.startswith("_")]
