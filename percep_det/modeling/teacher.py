"""A frozen CondInst teacher that gives soft mask targets for a student's sampled instances.

The teacher is built from its own config file and weights (``MODEL.CONDINST.PERCEPTUAL.TEACHER.*``)
and runs on the student's batched input (normalised, padded images). For every instance the
student sampled (image, FPN level, location on that level's point grid) it produces the teacher's
own mask: the teacher's controller output at the same location (gathered from its per-level
controller maps), its own mask features, its own dynamic mask head, sigmoid.

Where the teacher lives: a :class:`DetachedModule` holds it *outside* the student's module tree,
so it is not in the student's ``state_dict`` (student checkpoints keep AdelaiDet's CondInst key
names and load into a plain CondInst), not in ``parameters()`` (the optimizer never sees it), not
moved by ``model.to()`` nor switched by ``model.train()``, and invisible to DDP. It is built on
first use (never in inference) and moved to the device of its input then.

Shape shorthand: N images, Hpad x Wpad the padded batch, R instances, P generated parameters per
instance, s = MODEL.CONDINST.MASK_OUT_STRIDE, Ho x Wo = Hpad / s x Wpad / s.
"""

import logging
import os
from typing import Callable, List, Optional, Union

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode, configurable, get_cfg
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import Instances
from torch import nn

__all__ = [
    "TEACHER_MATCHING_KEYS",
    "DetachedModule",
    "PercepCondInstTeacher",
    "build_teacher_model",
    "check_teacher_config",
    "gather_level_params",
    "load_teacher_config",
    "load_weights_strict",
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


class DetachedModule:
    """
    Holds a frozen module outside its owner's module tree (a plain object, not an ``nn.Module``
    attribute): excluded from ``state_dict``, ``parameters()``, ``.to()``, ``.train()`` and DDP.

    The module is built by ``factory`` on the first :meth:`get` (so nothing is built in
    inference), frozen (``requires_grad=False``, eval mode) and moved to the requested device.
    """

    def __init__(self, module: Union[nn.Module, Callable[[], nn.Module]]):
        self._module: Optional[nn.Module] = module if isinstance(module, nn.Module) else None
        self._factory = None if isinstance(module, nn.Module) else module
        if self._module is not None:
            self._freeze(self._module)

    @staticmethod
    def _freeze(module: nn.Module) -> None:
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)

    @property
    def is_built(self) -> bool:
        return self._module is not None

    def get(self, device: Optional[torch.device] = None) -> nn.Module:
        """The module (built on the first call), on ``device`` if given."""
        if self._module is None:
            self._module = self._factory()
            self._freeze(self._module)
        if device is not None:
            tensors = list(self._module.parameters()) + list(self._module.buffers())
            if tensors and tensors[0].device != torch.device(device):
                self._module.to(device)
        return self._module


def load_teacher_config(config_file: str) -> CfgNode:
    """The teacher's config: detectron2 + percep_det defaults merged with ``config_file``."""
    from percep_det.config import add_percep_det_config  # the package imports this module

    if not config_file:
        raise ValueError(
            f"MODEL.CONDINST.PERCEPTUAL.TARGET 'teacher' needs {_CONFIG_KEY} (the teacher's config "
            "file) to be set."
        )
    if not os.path.isfile(config_file):
        raise FileNotFoundError(
            f"Teacher config file {config_file!r} ({_CONFIG_KEY}) does not exist "
            f"(relative paths are resolved from {os.getcwd()!r})."
        )
    cfg = get_cfg()
    add_percep_det_config(cfg)
    cfg.merge_from_file(config_file)
    # A teacher trained with the perceptual head has the plain head's weights; never nest teachers.
    from .dynamic_mask_head import PERCEP_MASK_HEAD_REGISTRY, PercepDynamicMaskHead
    from .perceptual_mask_head import PercepPerceptualDynamicMaskHead

    head_cls = PERCEP_MASK_HEAD_REGISTRY.get(cfg.MODEL.CONDINST.MASK_HEAD.NAME)
    if issubclass(head_cls, PercepPerceptualDynamicMaskHead):
        cfg.MODEL.CONDINST.MASK_HEAD.NAME = PercepDynamicMaskHead.__name__
    cfg.MODEL.WEIGHTS = ""
    return cfg


def _get_key(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return list(node) if isinstance(node, (list, tuple)) else node


def check_teacher_config(student_cfg: CfgNode, teacher_cfg: CfgNode, config_file: str = "") -> None:
    """Raise ``ValueError`` naming the first setting of :data:`TEACHER_MATCHING_KEYS` that
    differs between student and teacher; warn if the FCOS size ranges differ."""
    for key in TEACHER_MATCHING_KEYS:
        s, t = _get_key(student_cfg, key), _get_key(teacher_cfg, key)
        if s != t:
            raise ValueError(
                f"Teacher and student must agree on {key}: teacher ({config_file or 'config'}) "
                f"has {t}, student has {s}."
            )
    meta = teacher_cfg.MODEL.META_ARCHITECTURE
    from .condinst import PercepCondInst

    if not issubclass(META_ARCH_REGISTRY.get(meta), PercepCondInst):
        raise ValueError(
            f"The teacher ({config_file}) must be a PercepCondInst; its MODEL.META_ARCHITECTURE "
            f"is {meta!r}."
        )
    key = "MODEL.FCOS.SIZES_OF_INTEREST"
    if _get_key(student_cfg, key) != _get_key(teacher_cfg, key):
        logger.warning(
            f"Teacher and student differ in {key} ({_get_key(teacher_cfg, key)} vs "
            f"{_get_key(student_cfg, key)}): the teacher is queried at the student's FPN levels."
        )


class _RecordingCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer that keeps the incompatible keys (``load`` only logs them)."""

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


def load_weights_strict(model: nn.Module, weights: str) -> None:
    """Load a detectron2 / AdelaiDet checkpoint into ``model`` with ``DetectionCheckpointer``;
    any missing, unexpected or wrongly shaped key is an error."""
    checkpointer = _RecordingCheckpointer(model)
    checkpointer.load(weights, checkpointables=[])
    incompatible = checkpointer.incompatible
    problems = []
    if incompatible.missing_keys:
        problems.append(f"missing keys {incompatible.missing_keys[:10]}")
    if incompatible.unexpected_keys:
        problems.append(f"unexpected keys {incompatible.unexpected_keys[:10]}")
    if incompatible.incorrect_shapes:
        problems.append(f"keys of wrong shape {incompatible.incorrect_shapes[:10]}")
    if problems:
        raise RuntimeError(
            f"Teacher weights {weights!r} ({_WEIGHTS_KEY}) do not match the teacher config: "
            + "; ".join(problems)
        )


def build_teacher_model(teacher_cfg: CfgNode, weights: str) -> nn.Module:
    """Build the teacher CondInst on CPU, load ``weights`` strictly, freeze it, eval mode."""
    model = META_ARCH_REGISTRY.get(teacher_cfg.MODEL.META_ARCHITECTURE)(teacher_cfg)
    load_weights_strict(model, weights)
    model.eval()
    model.requires_grad_(False)
    logger.info(f"Built the CondInst teacher from {weights}")
    return model


def gather_level_params(
    top_feats: List[torch.Tensor], fpn_strides: List[int], instances: Instances
) -> torch.Tensor:
    """
    The per-level maps' values at the instances' points.

    Args:
        top_feats: L maps ``(N, P, Hl, Wl)`` (e.g. the controller on every FCOS level).
        fpn_strides: stride of every level; point (i, j) of level l sits at image
            ``(j * s_l + s_l // 2, i * s_l + s_l // 2)``.
        instances: R rows with ``im_inds``, ``fpn_levels`` and ``locations`` (x, y).
    Returns:
        ``(R, P)``.
    """
    device = top_feats[0].device
    widths = torch.tensor([t.shape[-1] for t in top_feats], device=device)
    heights = torch.tensor([t.shape[-2] for t in top_feats], device=device)
    sizes = widths * heights
    offsets = torch.cumsum(sizes, 0) - sizes  # (L,) first flat index of every level
    strides = torch.tensor(fpn_strides, device=device)
    levels = instances.fpn_levels
    stride = strides[levels]  # (R,)
    xy = instances.locations.round().long() - (stride // 2)[:, None]  # (R, 2)
    col, row = torch.div(xy[:, 0], stride, rounding_mode="floor"), torch.div(
        xy[:, 1], stride, rounding_mode="floor"
    )
    flat = torch.cat([t.flatten(2) for t in top_feats], dim=2)  # (N, P, sum Hl * Wl)
    index = offsets[levels] + row * widths[levels] + col  # (R,)
    return flat[instances.im_inds, :, index]  # (R, P)


class PercepCondInstTeacher:
    """
    Soft mask targets from a frozen CondInst for a student's sampled instances (see the module
    docstring). Not an ``nn.Module``: the model is held by a :class:`DetachedModule`.
    """

    @configurable
    def __init__(self, *, model: Union[nn.Module, Callable[[], nn.Module]]):
        """
        Args:
            model: a :class:`PercepCondInst` (or a function building it, called on first use)
                whose strides, levels, mask strides and pixel normalisation equal the student's.
        """
        self._model = DetachedModule(model)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        tc = cfg.MODEL.CONDINST.PERCEPTUAL.TEACHER
        teacher_cfg = load_teacher_config(tc.CONFIG_FILE)
        check_teacher_config(cfg, teacher_cfg, tc.CONFIG_FILE)
        if not tc.WEIGHTS:
            raise ValueError(f"MODEL.CONDINST.PERCEPTUAL.TARGET 'teacher' needs {_WEIGHTS_KEY}.")
        if "://" not in tc.WEIGHTS and not os.path.isfile(tc.WEIGHTS):
            raise FileNotFoundError(
                f"Teacher weights {tc.WEIGHTS!r} ({_WEIGHTS_KEY}) do not exist (train the teacher "
                "first, see docs/perceptual_condinst.md)."
            )
        weights = tc.WEIGHTS
        return {"model": lambda: build_teacher_model(teacher_cfg, weights)}

    @property
    def is_built(self) -> bool:
        return self._model.is_built

    def model(self, device: Optional[torch.device] = None) -> nn.Module:
        """The frozen teacher (built on the first call), on ``device`` if given."""
        return self._model.get(device)

    @torch.no_grad()
    def soft_masks(self, images: torch.Tensor, instances: Instances) -> torch.Tensor:
        """
        Args:
            images: ``(N, 3, Hpad, Wpad)`` the student's normalised, padded batch.
            instances: R rows with ``im_inds``, ``fpn_levels``, ``locations`` (the student's
                sampled instances).
        Returns:
            ``(R, 1, Ho, Wo)`` teacher mask probabilities (no graph).
        """
        model = self.model(images.device)
        s = model.mask_out_stride
        if len(instances) == 0:
            return images.new_zeros((0, 1, images.shape[-2] // s, images.shape[-1] // s))
        features = model.backbone(images)
        mask_feats, _ = model.mask_branch(features)
        fcos = model.proposal_generator
        _, _, _, top_feats = fcos.fcos_head(
            [features[f] for f in fcos.in_features], model.controller
        )  # L maps (N, P, Hl, Wl)
        queries = Instances(instances.image_size)
        queries.im_inds = instances.im_inds
        queries.fpn_levels = instances.fpn_levels
        queries.locations = instances.locations
        queries.mask_head_params = gather_level_params(top_feats, fcos.fpn_strides, instances)
        logits = model.mask_head.mask_logits(mask_feats, model.mask_branch.out_stride, queries)
        return logits.sigmoid()
