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
    _C = cfg.MODEL.PERCEPTUAL_LOSS = CN()
    # Loss network: "vgg" (VGG family built from BLOCKS/WIDTHS/KERNEL_SIZE) or a zoo arch name.
    _C.ARCH = "vgg"
    # Convs per block of the "vgg" net: (2,2,3,3,3) = VGG16, (2,2,4,4,4) = VGG19, (1,1,1,1,1).
    _C.BLOCKS = [2, 2, 3, 3, 3]
    # Output channels of each block's convs of the "vgg" net.
    _C.WIDTHS = [64, 128, 256, 512, 512]
    # Conv kernel size of the "vgg" net (odd; padding k // 2).
    _C.KERNEL_SIZE = 3
    # Random init scheme: "paper" (N(0, 2/(k*k*c_in))), "xavier_normal", "normal", "uniform".
    _C.INIT = "paper"
    # sigma of INIT "normal" / a of INIT "uniform" (U[-a, a]); unused otherwise.
    _C.INIT_PARAM = 0.01
    # Seed of the private generator the loss-net weights are drawn from (same on every rank).
    _C.SEED = 0
    # Input channels of the loss net = output channels of the task (1 for masks and depth).
    _C.IN_CHANNELS = 1
    # Extraction points ([] = final layer: "pool5" for vgg, the deepest named point of a zoo arch).
    _C.OUT_POINTS = []
    # Loss weight of each extraction point ([] = 1 each), e.g. [1/16, 1/8, 1/4, 1/2, 1].
    _C.POINT_WEIGHTS = []
    # Weight (lambda) of the perceptual loss in the total loss.
    _C.LOSS_WEIGHT = 0.1
    # Inputs per chunk: peak memory of the loss grows with this, not with the number of inputs.
    _C.CHUNK_SIZE = 8
    # Precision inside the loss: "fp32" (TF32 off, default), "bf16" or "fp16" autocast (opt-in).
    _C.PRECISION = "fp32"
    # Run the loss net in channels_last memory format.
    _C.CHANNELS_LAST = False
    # Local file with a torchvision state_dict for a zoo ARCH ("" = random weights).
    _C.PRETRAINED_WEIGHTS = ""


def _add_condinst_config(cfg: CN) -> None:
    pass  # filled by the CondInst work (MODEL.FCOS.*, MODEL.CONDINST.*)


def _add_perceptual_condinst_config(cfg: CN) -> None:
    pass  # filled by the perceptual-CondInst work
