"""Config keys of percep_det.

Every key percep_det adds is defined here, inside :func:`add_percep_det_config`, which edits only the
cfg it is given (never detectron2's global defaults). ``tests/test_config.py`` checks that each key
is read somewhere in the package.
"""
from detectron2.config import CfgNode as CN

__all__ = ["add_percep_det_config"]


def add_percep_det_config(cfg: CN) -> None:
    """Add all percep_det config keys (with their defaults) to ``cfg`` in place."""
    _add_embedded_dataset_config(cfg)
    _add_perceptual_loss_config(cfg)
    _add_condinst_config(cfg)
    _add_perceptual_condinst_config(cfg)


def _add_embedded_dataset_config(cfg: CN) -> None:
    # (keys of the built-in synthetic dataset are read from the environment, see percep_det/data)
    cfg.PERCEP_DET = CN()
    # Where visualisations of predictions are written after evaluation ("" = OUTPUT_DIR/vis).
    cfg.PERCEP_DET.VIS_DIR = ""
    # Number of validation images drawn with predictions after each evaluation (0 = none).
    cfg.PERCEP_DET.VIS_NUM_IMAGES = 8
    # Score threshold for the drawn predictions.
    cfg.PERCEP_DET.VIS_SCORE_THRESH = 0.3


def _add_perceptual_loss_config(cfg: CN) -> None:
    pass  # filled by the perceptual-loss work (MODEL.PERCEPTUAL_LOSS.*)


def _add_condinst_config(cfg: CN) -> None:
    pass  # filled by the CondInst work (MODEL.FCOS.*, MODEL.CONDINST.*)


def _add_perceptual_condinst_config(cfg: CN) -> None:
    pass  # filled by the perceptual-CondInst work
