"""CondInst (pure Python, AdelaiDet-compatible) and its perceptual variant: the FCOS backbone and
proposal generator, the mask branch, the dynamic mask heads, the teacher and the meta-architecture.
Importing this package registers all of them."""
from . import backbone, fcos, mask_branch  # noqa: F401  (registering modules)
from .backbone import build_percep_fcos_resnet_fpn_backbone
from .dynamic_mask_head import PERCEP_MASK_HEAD_REGISTRY, PercepDynamicMaskHead
from .fcos import PercepFCOS, PercepFCOSHead
from .mask_branch import PercepMaskBranch
from .meta_arch import PercepCondInst
from .perceptual_mask_head import PercepPerceptualDynamicMaskHead
from .teacher import PercepCondInstTeacher

__all__ = [
    "PERCEP_MASK_HEAD_REGISTRY",
    "PercepCondInst",
    "PercepCondInstTeacher",
    "PercepDynamicMaskHead",
    "PercepFCOS",
    "PercepFCOSHead",
    "PercepMaskBranch",
    "PercepPerceptualDynamicMaskHead",
    "build_percep_fcos_resnet_fpn_backbone",
]
