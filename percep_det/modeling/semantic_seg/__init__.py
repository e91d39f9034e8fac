"""Semantic segmentation with the generic perceptual loss.

* :mod:`.backbone`: ``build_percep_dilated_resnet_backbone``, a dilated (output stride 8/16)
  ResNet of any depth, R18/R34 included;
* :mod:`.psp_head`: ``PercepPSPHead``, PSPNet's pyramid pooling head with its auxiliary head;
* :mod:`.meta_arch`: ``PercepSemanticSegmentor``, ``SemanticSegmentor`` plus the perceptual term
  for any detectron2 sem-seg head;
* :mod:`.teacher`: the frozen segmentor that gives the term's soft targets.
"""

from .backbone import (
    PercepDilatedBasicBlock,
    PercepDilatedResNet,
    build_percep_dilated_resnet_backbone,
)
from .meta_arch import PercepSemanticSegmentor, capture_head_io, sample_labels
from .psp_head import PercepPSPHead, upsample_logits
from .teacher import PercepSemSegTeacher, build_sem_seg_target_source

__all__ = [k for k in dir() if not k.startswith("_")]
