"""percep_det: generic perceptual loss for Detectron2 dense predictors.

Importing this package registers its datasets, backbones, meta-architectures and heads with
Detectron2's registries.
"""
from . import data  # noqa: F401  (registers the embedded datasets)
from . import evaluation  # noqa: F401  (DepthEvaluator)
from . import modeling  # noqa: F401  (registers backbones / meta-archs / heads)
from .config import add_percep_det_config

__version__ = "0.1.0"
__all__ = ["add_percep_det_config", "__version__"]
