"""A frozen CondInst teacher that gives soft mask targets for a student's sampled instances.

Where targets are produced (the pattern of every task): the meta-architecture owns the batch, so it
runs the target source on it; heads only read the targets. For CondInst,
``PercepCondInst.forward`` calls its ``mask_targets`` source (this teacher, or None) on the
student's normalised, padded images and sampled instances, and stores the result in the
instances' ``soft_targets`` field, which the perceptual mask head reads.

The teacher is built from its own config file and weights (``MODEL.CONDINST.PERCEPTUAL.TEACHER.*``)
with the shared frozen-model machinery of :mod:`percep_det.modeling.frozen` (held outside the
student's module tree, strict load, frozen, built on first use, never in inference), and queried
through the public :meth:`PercepCondInst.mask_probs_at`: the teacher's own mask for the same
(image, FPN level, location) as each student instance.

Shape shorthand: N images, Hpad x Wpad the padded batch, R instances,
s = MODEL.CONDINST.MASK_OUT_STRIDE, Ho x Wo = Hpad / s x Wpad / s.
"""

import logging
import os
from typing import Callable, Optional, Union

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Instances
from torch import nn

from ..frozen import (
    FrozenModelHolder,
    build_frozen_model,
    check_matching_keys,
    get_key,
    load_frozen_config,
)
from ..perceptual import CHECKPOINT_KEY, PerceptualLoss, check_fingerprints
from .dynamic_mask_head import PERCEP_MASK_HEAD_REGISTRY, PercepDynamicMaskHead
from .perceptual_mask_head import PercepPerceptualDynamicMaskHead

__all__ = [
    "TEACHER_MATCHING_KEYS",
    "PercepCondInstTeacher",
    "build_mask_target_source",
    "load_teacher_config",
]

logger = logging.getLogger(__name__)

# Settings teacher and student must share so that a student instance (image, level, location)
# means the same point for the teacher and its masks have the same size (backbone depth, widths,
# number of classes, ... may differ).
TEACHER_MATCHING_KEYS = (
    "MODEL.FCOS.IN_FEATURES",
    "MODEL.FCOS.FPN_STRIDES",
    "MODEL.CONDINST.MASK_BRANCH.IN_FEATURES",
    "MODEL.CONDINST.MASK_OUT_STRIDE",
    "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD",
    "INPUT.FORMAT",
)
_CONFIG_KEY = "MODEL.CONDINST.PERCEPTUAL.TEACHER.CONFIG_FILE"
_WEIGHTS_KEY = "MODEL.CONDINST.PERCEPTUAL.TEACHER.WEIGHTS"


def _is_perceptual_head(cfg: CfgNode) -> bool:
    head_cls = PERCEP_MASK_HEAD_REGISTRY.get(cfg.MODEL.CONDINST.MASK_HEAD.NAME)
    return issubclass(head_cls, PercepPerceptualDynamicMaskHead)


def load_teacher_config(config_file: str) -> CfgNode:
    """The teacher's config (its perceptual head, if any, replaced by the plain head: a model
    trained with the perceptual term has the plain head's weights; teachers never nest)."""
    cfg = load_frozen_config(config_file, _CONFIG_KEY)
    if _is_perceptual_head(cfg):
        cfg.MODEL.CONDINST.MASK_HEAD.NAME = PercepDynamicMaskHead.__name__
    return cfg


def _check_teacher_loss_network(config_file: str, checkpoint: dict, weights: str) -> None:
    """If the teacher was trained with a perceptual head, its checkpoint's loss-network
    fingerprint must match the one its config regenerates (else the config is not the teacher's)."""
    recorded = checkpoint.get(CHECKPOINT_KEY) or {}
    if "mask_head.perceptual_loss" not in recorded:
        return
    original = load_frozen_config(config_file, _CONFIG_KEY)
    if not _is_perceptual_head(original):
        return
    current = PerceptualLoss(original, in_channels=1).fingerprint()
    check_fingerprints(
        {"mask_head.perceptual_loss": recorded["mask_head.perceptual_loss"]},
        {"mask_head.perceptual_loss": current},
        f"{weights} ({_WEIGHTS_KEY}), with the teacher config {config_file}",
    )


def build_teacher_model(teacher_cfg: CfgNode, weights: str, config_file: str = "") -> nn.Module:
    """Build the teacher CondInst on CPU, load ``weights`` strictly, check its loss-network
    record, freeze it."""
    model, extra = build_frozen_model(teacher_cfg, weights, _WEIGHTS_KEY)
    if config_file:
        _check_teacher_loss_network(config_file, extra, weights)
    return model


class PercepCondInstTeacher(FrozenModelHolder):
    """
    Soft mask targets from a frozen CondInst for a student's sampled instances (see the module
    docstring). An ``nn.Module`` without parameters: the teacher model itself is held by a
    :class:`FrozenModule`, so it is in no ``state_dict``.
    """

    @configurable
    def __init__(self, *, model: Union[nn.Module, Callable[[], nn.Module]]):
        """
        Args:
            model: a model with ``mask_probs_at(images, queries)`` (a :class:`PercepCondInst`),
                or a function building it (called on first use), whose strides, levels, mask
                stride and pixel normalisation equal the student's.
        """
        super().__init__(model)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        tc = cfg.MODEL.CONDINST.PERCEPTUAL.TEACHER
        teacher_cfg = load_teacher_config(tc.CONFIG_FILE)
        check_matching_keys(cfg, teacher_cfg, TEACHER_MATCHING_KEYS, tc.CONFIG_FILE)
        meta = META_ARCH_REGISTRY.get(teacher_cfg.MODEL.META_ARCHITECTURE)
        if not hasattr(meta, "mask_probs_at"):
            raise ValueError(
                f"The teacher ({tc.CONFIG_FILE}) must be a CondInst (a meta-architecture with "
                f"mask_probs_at); its MODEL.META_ARCHITECTURE is "
                f"{teacher_cfg.MODEL.META_ARCHITECTURE!r}."
            )
        key = "MODEL.FCOS.SIZES_OF_INTEREST"
        if get_key(cfg, key) != get_key(teacher_cfg, key):
            logger.warning(
                f"Teacher and student differ in {key} ({get_key(teacher_cfg, key)} vs "
                f"{get_key(cfg, key)}): the teacher is queried at the student's FPN levels."
            )
        if not tc.WEIGHTS:
            raise ValueError(f"MODEL.CONDINST.PERCEPTUAL.TARGET 'teacher' needs {_WEIGHTS_KEY}.")
        # Existence is checked now, so a missing file fails before training starts.
        weights, config_file = tc.WEIGHTS, tc.CONFIG_FILE
        if "://" not in weights and not os.path.isfile(weights):
            raise FileNotFoundError(
                f"Teacher weights {weights!r} ({_WEIGHTS_KEY}) do not exist (train the teacher "
                "first, see docs/perceptual_condinst.md)."
            )
        return {"model": lambda: build_teacher_model(teacher_cfg, weights, config_file)}

    @torch.no_grad()
    def forward(self, images: torch.Tensor, instances: Instances) -> torch.Tensor:
        """
        Args:
            images: ``(N, 3, Hpad, Wpad)`` the student's normalised, padded batch.
            instances: R rows with ``im_inds``, ``fpn_levels``, ``locations`` (the student's
                sampled instances).
        Returns:
            ``(R, 1, Ho, Wo)`` teacher mask probabilities (no graph).
        """
        return self.model(images.device).mask_probs_at(images, instances)


def build_mask_target_source(cfg: CfgNode) -> Optional[nn.Module]:
    """The soft-target source of ``PercepCondInst`` in training: the teacher when the mask head is
    perceptual with ``MODEL.CONDINST.PERCEPTUAL.TARGET "teacher"``, else None."""
    if _is_perceptual_head(cfg) and cfg.MODEL.CONDINST.PERCEPTUAL.TARGET == "teacher":
        return PercepCondInstTeacher(cfg)
    return None
