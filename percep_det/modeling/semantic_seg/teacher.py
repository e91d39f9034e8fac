"""A frozen semantic segmentor that gives the soft targets of the perceptual term.

Where targets are produced (the pattern of every task): the meta-architecture owns the batch, so
``PercepSemanticSegmentor`` runs this teacher on the student's normalised, padded images and turns
its logits into ``softmax(z_t / T)`` at the term's resolution.

The teacher is built from its own config file and weights (``MODEL.SEM_SEG_PERCEPTUAL.TEACHER.*``)
with the shared machinery of :mod:`percep_det.modeling.frozen` (held outside the student's module
tree, strict load, frozen, built on first use, never in inference). Any backbone and head may
differ; the number of classes, the pixel normalisation and the input format must be equal (checked
when the student is built). A teacher config with ``SemanticSegmentor`` or
``PercepSemanticSegmentor`` is built as a ``PercepSemanticSegmentor`` without its own target (the
two have the same weights) and queried through its public :meth:`PercepSemanticSegmentor.logits`.

Shape shorthand: N images, K classes, H x W the padded batch, h_t x w_t the teacher's logits.
"""

import logging
import os
from typing import Callable, Optional, Union

import torch
from detectron2.config import CfgNode, configurable
from torch import Tensor, nn

from ..frozen import FrozenModelHolder, build_frozen_model, check_matching_keys, load_frozen_config

__all__ = [
    "TEACHER_MATCHING_KEYS",
    "PercepSemSegTeacher",
    "build_sem_seg_target_source",
    "load_teacher_config",
]

logger = logging.getLogger(__name__)

# Settings teacher and student must share: the same classes, and the same pixels (the teacher runs
# on the student's normalised batch).
TEACHER_MATCHING_KEYS = (
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
    "MODEL.PIXEL_MEAN",
    "MODEL.PIXEL_STD",
    "INPUT.FORMAT",
)
_CONFIG_KEY = "MODEL.SEM_SEG_PERCEPTUAL.TEACHER.CONFIG_FILE"
_WEIGHTS_KEY = "MODEL.SEM_SEG_PERCEPTUAL.TEACHER.WEIGHTS"
_META_ARCHS = ("SemanticSegmentor", "PercepSemanticSegmentor")


def load_teacher_config(config_file: str) -> CfgNode:
    """The teacher's config, as a ``PercepSemanticSegmentor`` with ``TARGET "gt"`` (it never runs
    a teacher of its own; its perceptual loss is never built: the teacher only runs inference)."""
    cfg = load_frozen_config(config_file, _CONFIG_KEY)
    if cfg.MODEL.META_ARCHITECTURE not in _META_ARCHS:
        raise ValueError(
            f"The teacher ({config_file}, {_CONFIG_KEY}) must be a semantic segmentor: its "
            f"MODEL.META_ARCHITECTURE is {cfg.MODEL.META_ARCHITECTURE!r}, expected one of "
            f"{_META_ARCHS}"
        )
    cfg.MODEL.META_ARCHITECTURE = "PercepSemanticSegmentor"
    cfg.MODEL.SEM_SEG_PERCEPTUAL.TARGET = "gt"
    return cfg


class PercepSemSegTeacher(FrozenModelHolder):
    """
    Logits of a frozen segmentor for the student's batch (see the module docstring). An
    ``nn.Module`` without parameters: the teacher model is held by a :class:`FrozenModule`, so it
    is in no ``state_dict``.
    """

    @configurable
    def __init__(self, *, model: Union[nn.Module, Callable[[], nn.Module]]):
        """
        Args:
            model: a model with ``logits(images)`` (a ``PercepSemanticSegmentor``), or a function
                building it (called on first use), whose classes and pixel normalisation equal
                the student's.
        """
        super().__init__(model)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        tc = cfg.MODEL.SEM_SEG_PERCEPTUAL.TEACHER
        teacher_cfg = load_teacher_config(tc.CONFIG_FILE)
        check_matching_keys(cfg, teacher_cfg, TEACHER_MATCHING_KEYS, tc.CONFIG_FILE)
        weights = tc.WEIGHTS
        if not weights:
            raise ValueError(f"MODEL.SEM_SEG_PERCEPTUAL.TARGET 'teacher' needs {_WEIGHTS_KEY}.")
        # Checked now, so a missing file fails before training starts.
        if "://" not in weights and not os.path.isfile(weights):
            raise FileNotFoundError(
                f"Teacher weights {weights!r} ({_WEIGHTS_KEY}) do not exist (train the teacher "
                f"first, with {tc.CONFIG_FILE})."
            )
        return {"model": lambda: build_frozen_model(teacher_cfg, weights, _WEIGHTS_KEY)[0]}

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        """
        Args:
            images: ``(N, 3, H, W)`` the student's normalised, padded batch.
        Returns:
            ``(N, K, h_t, w_t)`` teacher logits at its head's output stride (no graph).
        """
        return self.model(images.device).logits(images)


def build_sem_seg_target_source(cfg: CfgNode) -> Optional[nn.Module]:
    """The teacher of ``PercepSemanticSegmentor`` when ``MODEL.SEM_SEG_PERCEPTUAL.TARGET`` is
    "teacher", else None."""
    if cfg.MODEL.SEM_SEG_PERCEPTUAL.TARGET == "teacher":
        return PercepSemSegTeacher(cfg)
    return None
