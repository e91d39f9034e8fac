"""Config keys of percep_det.

Every key percep_det adds is defined here, inside :func:`add_percep_det_config`, which edits only the
cfg it is given (never detectron2's global defaults). ``tests/test_config.py`` checks that each key
is read somewhere in the package.

Config files are yacs YAML (detectron2's ``CfgNode``), read with ``yaml.safe_load`` only: a Python
tag (``!!python/...``) in a config or in one of its ``_BASE_`` files is refused, unless the user
trusts the files (``PERCEP_DET_TRUSTED_FILES=1``, see :mod:`percep_det.engine.safe_load`).
"""
import os
import re
from typing import Optional, Sequence, Tuple

import yaml
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.utils.file_io import PathManager

from .engine.safe_load import TRUSTED_FILES_ENV, UnsafeFileError, trusted_files

__all__ = ["add_percep_det_config", "check_config_yaml", "get_percep_cfg"]

_EXAMPLE = "configs/quick_schedules/condinst_R18_shapes_cpu.yaml"


def get_percep_cfg(config_file: Optional[str] = None, opts: Sequence[str] = ()) -> CN:
    """detectron2's defaults + percep_det's keys, merged with ``config_file`` and then ``opts``
    (``KEY VALUE`` pairs). The one place that builds a config from user input (tools and teachers
    use it); an unknown key is a ``KeyError`` naming the file or the command line it came from.
    A config that is not a YAML mapping (empty, a Python LazyConfig, broken YAML), a missing
    ``_BASE_`` or a Python tag is an error naming the file (see :func:`check_config_yaml`).
    The result is not frozen."""
    cfg = get_cfg()
    add_percep_det_config(cfg)
    if config_file:
        check_config_yaml(config_file)
        try:
            # allow_unsafe=False: detectron2 never falls back to yaml.unsafe_load
            cfg.merge_from_file(config_file, allow_unsafe=trusted_files())
        except KeyError as e:
            raise KeyError(
                f"{config_file}: {e.args[0] if e.args else e}. Check the spelling; percep_det's "
                "own keys are listed in percep_det/config.py"
            ) from None
        except (ValueError, AssertionError) as e:
            # e.g. yacs' "Type mismatch (...) for config key: MODEL.X"
            raise ValueError(f"{config_file}: {e}") from None
    if opts:
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, ValueError, AssertionError) as e:
            # yacs reports an unknown key on the command line as an AssertionError
            kind = KeyError if isinstance(e, KeyError) or "Non-existent" in str(e) else ValueError
            raise kind(f"command-line override {list(opts)}: {e}") from None
    return cfg


def check_config_yaml(path: str, _chain: Tuple[str, ...] = ()) -> None:
    """Check that ``path`` and its ``_BASE_`` files are YAML mappings that ``yaml.safe_load``
    reads, with errors naming the file.

    Raises:
        ValueError: a ``.py`` (LazyConfig) file, an empty file, broken YAML, not a mapping, a
            ``_BASE_`` cycle.
        FileNotFoundError: a ``_BASE_`` file that does not exist (naming the file that refers to
            it).
        UnsafeFileError: a Python tag (``!!python/...``), unless ``PERCEP_DET_TRUSTED_FILES=1``.
    """
    if path.endswith(".py"):
        raise ValueError(
            f"{path} is a Python (LazyConfig) config: percep_det uses yacs YAML configs "
            f"(.yaml); see configs/, e.g. {_EXAMPLE}"
        )
    if "://" not in path and os.path.abspath(path) in map(os.path.abspath, _chain):
        chain = " -> ".join(_chain + (path,))
        raise ValueError(f"config files include each other via _BASE_: {chain}")
    via = f" (a _BASE_ of {_chain[-1]})" if _chain else ""
    with PathManager.open(path, "r") as f:
        try:
            data = yaml.safe_load(f)
        except yaml.constructor.ConstructorError as e:
            if trusted_files():
                return  # detectron2 reads it with yaml.unsafe_load
            line = f", line {e.problem_mark.line + 1}" if e.problem_mark else ""
            tag = re.search(r"'tag:yaml.org,2002:(python/[^']*)'", str(e.problem))
            if tag:
                raise UnsafeFileError(
                    f"{path}{line}{via}: the YAML tag '!!{tag.group(1)}' could run code; "
                    "percep_det reads configs with yaml.safe_load. Remove the tag, or, if you "
                    f"trust the file, set {TRUSTED_FILES_ENV}=1"
                ) from None
            raise ValueError(f"{path}{line}{via}: {e.problem}") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{path}{via} is not valid YAML: {e}") from None
    if data is None:
        raise ValueError(
            f"config file {path}{via} is empty (or only comments): a config sets keys, e.g. "
            f"'_BASE_: {os.path.basename(_EXAMPLE)}' and what differs from it; see configs/"
        )
    if not isinstance(data, dict):
        raise ValueError(
            f"config file {path}{via} holds a YAML {type(data).__name__}, not a mapping of config "
            "keys (e.g. 'MODEL:' ...); percep_det uses yacs YAML configs, see configs/"
        )
    bases = data.get("_BASE_", [])
    for base in [bases] if isinstance(bases, str) else bases:
        if not isinstance(base, str):
            raise ValueError(f"{path}: _BASE_ must be a file name or a list of them, got {bases!r}")
        full = os.path.expanduser(base)
        if not full.startswith(("/", "https://", "http://")):  # as fvcore resolves it
            full = os.path.join(os.path.dirname(path), full)
        if "://" not in full and not os.path.isfile(full):
            raise FileNotFoundError(
                f"{path}: its _BASE_ {base!r} does not exist (resolved to '{full}'; a relative "
                "_BASE_ is relative to the file that names it)"
            )
        check_config_yaml(full, _chain + (path,))


def add_percep_det_config(cfg: CN) -> None:
    """Add all percep_det config keys (with their defaults) to ``cfg`` in place."""
    _add_visualization_config(cfg)
    _add_perceptual_loss_config(cfg)
    _add_condinst_config(cfg)
    _add_perceptual_condinst_config(cfg)
    _add_perceptual_mask_rcnn_config(cfg)
    _add_semantic_seg_config(cfg)
    _add_depth_config(cfg)
    _add_data_check_config(cfg)


def _add_visualization_config(cfg: CN) -> None:
    # (the built-in dataset has no keys: its cache directory is the env var PERCEP_DET_CACHE)
    cfg.PERCEP_DET = CN()
    # Where tools/train_net.py draws predictions after training / --eval-only ("" = OUTPUT_DIR/vis).
    cfg.PERCEP_DET.VIS_DIR = ""
    # Number of images of the first test set drawn with predictions (0 = none).
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
    # Precision inside the loss: "fp32" (TF32 off, default), "tf32" (TF32 tensor cores, ~4x faster
    # on H100), "bf16" or "fp16" autocast (opt-in: low precision loses the gradient direction).
    _C.PRECISION = "fp32"
    # Run the loss net in channels_last memory format.
    _C.CHANNELS_LAST = False
    # Local file with a torchvision state_dict for a zoo ARCH ("" = random weights).
    _C.PRETRAINED_WEIGHTS = ""


def _add_condinst_config(cfg: CN) -> None:
    # Names and defaults follow AdelaiDet (adet/config/defaults.py) so its CondInst YAMLs apply.
    cfg.MODEL.FCOS = CN()
    # Number of foreground classes.
    cfg.MODEL.FCOS.NUM_CLASSES = 80
    # FPN levels the FCOS head runs on.
    cfg.MODEL.FCOS.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # Stride of each of those levels.
    cfg.MODEL.FCOS.FPN_STRIDES = [8, 16, 32, 64, 128]
    # Initial foreground probability of the classifiers (focal-loss bias init).
    cfg.MODEL.FCOS.PRIOR_PROB = 0.01
    # Score threshold before NMS in training mode.
    cfg.MODEL.FCOS.INFERENCE_TH_TRAIN = 0.05
    # Score threshold before NMS at test time.
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.05
    # IoU threshold of the class-aware NMS.
    cfg.MODEL.FCOS.NMS_TH = 0.6
    # Candidates kept per level and image before NMS, training mode.
    cfg.MODEL.FCOS.PRE_NMS_TOPK_TRAIN = 1000
    # Candidates kept per level and image before NMS, test time.
    cfg.MODEL.FCOS.PRE_NMS_TOPK_TEST = 1000
    # Detections kept per image after NMS, training mode.
    cfg.MODEL.FCOS.POST_NMS_TOPK_TRAIN = 100
    # Detections kept per image after NMS, test time.
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = 100
    # Extra FPN levels computed from P5 by the FCOS backbone: 2 (P6, P7) or 0.
    cfg.MODEL.FCOS.TOP_LEVELS = 2
    # Norm in the FCOS towers: "GN" (32 groups) or "none".
    cfg.MODEL.FCOS.NORM = "GN"
    # Learn a scalar per level for the box distances.
    cfg.MODEL.FCOS.USE_SCALE = True
    # Box quality branch; only "ctrness" is implemented.
    cfg.MODEL.FCOS.BOX_QUALITY = "ctrness"
    # Threshold cls * ctrness (instead of cls) before NMS.
    cfg.MODEL.FCOS.THRESH_WITH_CTR = False
    # Focal loss alpha.
    cfg.MODEL.FCOS.LOSS_ALPHA = 0.25
    # Focal loss gamma.
    cfg.MODEL.FCOS.LOSS_GAMMA = 2.0
    # Classification loss normaliser: "fg", "moving_fg" or "all".
    cfg.MODEL.FCOS.LOSS_NORMALIZER_CLS = "fg"
    # Weight of loss_fcos_cls.
    cfg.MODEL.FCOS.LOSS_WEIGHT_CLS = 1.0
    # Boundaries of the per-level object size ranges (max ltrb distance, inclusive).
    cfg.MODEL.FCOS.SIZES_OF_INTEREST = [64, 128, 256, 512]
    # Deformable conv in the last tower layer; not available (pure Python), must stay False.
    cfg.MODEL.FCOS.USE_DEFORMABLE = False
    # Conv layers in the classification tower.
    cfg.MODEL.FCOS.NUM_CLS_CONVS = 4
    # Conv layers in the box tower.
    cfg.MODEL.FCOS.NUM_BOX_CONVS = 4
    # Conv layers shared by both towers (applied first).
    cfg.MODEL.FCOS.NUM_SHARE_CONVS = 0
    # Positives only near the object centre (mask centroid when masks are given).
    cfg.MODEL.FCOS.CENTER_SAMPLE = True
    # Radius of the centre region in units of the level's stride.
    cfg.MODEL.FCOS.POS_RADIUS = 1.5
    # Box regression loss; only "giou" is implemented.
    cfg.MODEL.FCOS.LOC_LOSS_TYPE = "giou"

    cfg.MODEL.CONDINST = CN()
    # Stride of the predicted (and supervised) masks.
    cfg.MODEL.CONDINST.MASK_OUT_STRIDE = 4
    # If != -1: random subset of positives (per process) that get a mask loss.
    cfg.MODEL.CONDINST.MAX_PROPOSALS = -1
    # If != -1: per image, best-scored positives (split among its gts) that get a mask loss.
    cfg.MODEL.CONDINST.TOPK_PROPOSALS_PER_IM = -1
    cfg.MODEL.CONDINST.MASK_HEAD = CN()
    # Registered name of the dynamic mask head (PERCEP_MASK_HEAD_REGISTRY).
    cfg.MODEL.CONDINST.MASK_HEAD.NAME = "PercepDynamicMaskHead"
    # Channels of the hidden dynamic conv layers.
    cfg.MODEL.CONDINST.MASK_HEAD.CHANNELS = 8
    # Number of dynamic 1x1 conv layers.
    cfg.MODEL.CONDINST.MASK_HEAD.NUM_LAYERS = 3
    # Do not feed relative coordinates to the dynamic head.
    cfg.MODEL.CONDINST.MASK_HEAD.DISABLE_REL_COORDS = False
    cfg.MODEL.CONDINST.MASK_BRANCH = CN()
    # Channels of the mask features given to the dynamic head.
    cfg.MODEL.CONDINST.MASK_BRANCH.OUT_CHANNELS = 8
    # FPN levels fused by the mask branch; the first sets the mask feature stride.
    cfg.MODEL.CONDINST.MASK_BRANCH.IN_FEATURES = ["p3", "p4", "p5"]
    # Width of the mask branch convs.
    cfg.MODEL.CONDINST.MASK_BRANCH.CHANNELS = 128
    # Norm of the mask branch convs (detectron2 get_norm name, "" for none).
    cfg.MODEL.CONDINST.MASK_BRANCH.NORM = "BN"
    # Conv3x3 layers in the mask branch tower.
    cfg.MODEL.CONDINST.MASK_BRANCH.NUM_CONVS = 4
    # Auxiliary semantic segmentation loss (loss_sem) on the mask branch input.
    cfg.MODEL.CONDINST.MASK_BRANCH.SEMANTIC_LOSS_ON = False


def _add_perceptual_condinst_config(cfg: CN) -> None:
    # Read by PercepPerceptualDynamicMaskHead (MODEL.CONDINST.MASK_HEAD.NAME); the loss network,
    # its weight (lambda) and CHUNK_SIZE come from MODEL.PERCEPTUAL_LOSS (IN_CHANNELS forced to 1).
    _C = cfg.MODEL.CONDINST.PERCEPTUAL = CN()
    # Target of the perceptual term: "gt" (gt bitmasks at the mask output stride) or "teacher".
    _C.TARGET = "gt"
    # Instances per step in the perceptual term: random subset of the sampled ones (-1 = all).
    _C.MAX_INSTANCES = -1
    # Evaluate each instance on a crop around its support instead of the whole mask (opt-in).
    _C.CROP = False
    # CROP: probability above which a pixel of prediction or target belongs to the support.
    _C.CROP_THRESH = 0.05
    # CROP: margin around the support, in pixels of the mask (stride MASK_OUT_STRIDE).
    _C.CROP_MARGIN = 32
    # CROP: crop corners snap to multiples of this (the loss net's total pooling stride).
    _C.CROP_ALIGN = 32
    _C.TEACHER = CN()
    # Config file of the frozen teacher CondInst (TARGET "teacher").
    _C.TEACHER.CONFIG_FILE = ""
    # Weights of the teacher (detectron2 / AdelaiDet checkpoint), loaded strictly.
    _C.TEACHER.WEIGHTS = ""


def _add_perceptual_mask_rcnn_config(cfg: CN) -> None:
    # Read by PercepPerceptualMaskRCNNConvUpsampleHead (MODEL.ROI_MASK_HEAD.NAME); the loss network,
    # lambda and CHUNK_SIZE come from MODEL.PERCEPTUAL_LOSS (IN_CHANNELS forced to 1). Its masks are
    # 2 x POOLER_RESOLUTION = 28 px: VGG16 needs 32 px, use e.g. BLOCKS [2, 2, 3, 3] (16 px).
    _C = cfg.MODEL.ROI_MASK_HEAD.PERCEPTUAL = CN()
    # Foreground proposals per step in the perceptual term: random subset (-1 = all).
    _C.MAX_INSTANCES = -1


def _add_semantic_seg_config(cfg: CN) -> None:
    # detectron2's DeepLab keys (ASPP_*, LOSS_TYPE, RESNETS.RES4_DILATION / STEM_TYPE, ...), so that
    # configs of DeepLabV3(Plus)Head merge; added once, by detectron2's own function.
    if "ASPP_CHANNELS" not in cfg.MODEL.SEM_SEG_HEAD:
        from detectron2.projects.deeplab import add_deeplab_config

        add_deeplab_config(cfg)
    # Read by PercepPSPHead (MODEL.SEM_SEG_HEAD.NAME); its input is IN_FEATURES[0] (e.g. "res5"),
    # its width CONVS_DIM, its norm NORM, its CE weight LOSS_WEIGHT (ignoring IGNORE_VALUE).
    _C = cfg.MODEL.SEM_SEG_HEAD
    # Output sizes of the pyramid pooling bins (each bin: C_in / len(PSP_BINS) channels).
    _C.PSP_BINS = [1, 2, 3, 6]
    # Dropout2d probability before the PSP head's (and the auxiliary head's) classifier.
    _C.PSP_DROPOUT = 0.1
    # Backbone feature of the auxiliary head, training only ("" = no auxiliary head).
    _C.AUX_IN_FEATURE = "res4"
    # Weight of the auxiliary CE loss (loss_sem_seg_aux).
    _C.AUX_LOSS_WEIGHT = 0.4
    # Read by PercepSemanticSegmentor (MODEL.META_ARCHITECTURE): the head's own losses plus
    # loss_sem_seg_percep = lambda * MSE(f(softmax(student logits)), f(target)) for any sem-seg
    # head; the loss network, lambda (LOSS_WEIGHT), CHUNK_SIZE, PRECISION come from
    # MODEL.PERCEPTUAL_LOSS (IN_CHANNELS is set to MODEL.SEM_SEG_HEAD.NUM_CLASSES).
    _P = cfg.MODEL.SEM_SEG_PERCEPTUAL = CN()
    # Target: "gt" (one-hot labels) or "teacher" (softmax(teacher logits / TEMPERATURE)).
    _P.TARGET = "gt"
    # Where the term is computed: "output" (the head's logits at its output stride s; labels
    # sampled at cell centres; cheap) or "label" (logits upsampled to the padded label size: s*s
    # times the loss-net pixels and cost, e.g. 64x at s = 8). The loss net needs its min input
    # size (VGG16: 32 px) per side: at "output" with s = 8 that is >= 256 px images.
    _P.RESOLUTION = "label"
    # Temperature of the teacher's softmax (TARGET "teacher"; the student's softmax is at 1).
    _P.TEMPERATURE = 1.0
    _P.TEACHER = CN()
    # Config file of the frozen teacher segmentor (TARGET "teacher").
    _P.TEACHER.CONFIG_FILE = ""
    # Weights of the teacher (detectron2 checkpoint), loaded strictly.
    _P.TEACHER.WEIGHTS = ""



def _add_depth_config(cfg: CN) -> None:
    # Read by DepthDatasetMapper (percep_det/data/depth_mapper.py).
    cfg.INPUT.DEPTH = CN()
    # How resizing changes the geometry: "depth" divides depth by the resize factor and keeps the
    # intrinsics (VNL's way: the network always sees the dataset's camera, so apparent size stays
    # a depth cue); "intrinsics" keeps metric depth and scales fx, fy, cx, cy.
    cfg.INPUT.DEPTH.RESIZE_MODE = "depth"
    # Read by PercepDepthEstimator (MODEL.META_ARCHITECTURE) and its decoder.
    _C = cfg.MODEL.DEPTH = CN()
    # Decoder (DEPTH_HEAD_REGISTRY) from the backbone's IN_FEATURES to full resolution.
    _C.HEAD_NAME = "PercepDepthDecoder"
    _C.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    # Channels of the decoder's convs.
    _C.CONVS_DIM = 128
    # Norm of the decoder's convs ("" = none, "BN", "GN", ...).
    _C.NORM = "BN"
    # "bins": classification over NUM_BINS log-spaced bins in [MIN_DEPTH, MAX_DEPTH] (Cao et al.),
    # decoded to the expected log-depth; "regression": one channel, depth = MAX_DEPTH * sigmoid.
    _C.OUTPUT = "bins"
    _C.NUM_BINS = 150
    # Depth range of the output in metres. MAX_DEPTH also scales depth before the perceptual loss
    # network (depth / MAX_DEPTH: the net is positively homogeneous, so the scale sets the term's
    # size): set it per dataset (NYUv2: 10).
    _C.MIN_DEPTH = 0.1
    _C.MAX_DEPTH = 10.0
    # Weighted cross-entropy over bins (OUTPUT "bins"): weight and alpha of exp(-alpha (i - j)^2).
    _C.WCE_WEIGHT = 1.0
    _C.WCE_ALPHA = 0.2
    # Scale-invariant log loss (OUTPUT "regression"; BTS's silog with its variance focus 0.85).
    _C.SILOG_WEIGHT = 1.0
    _C.SILOG_VARIANCE_FOCUS = 0.85
    # Virtual normal loss (Yin et al.): weight (0 = off; VNL's repo uses 6), triplets per image as a
    # share of its pixels, colinearity filter |cos| threshold, "too close" threshold in metres
    # (VNL: 0.005 of depth / 10), share of the hardest triplets kept.
    _C.VNL_WEIGHT = 0.0
    _C.VNL_SAMPLE_RATIO = 0.15
    _C.VNL_COS_THRESH = 0.867
    _C.VNL_MIN_DIST = 0.05
    _C.VNL_KEEP_HARDEST = 0.75
    # loss_depth_percep = lambda * MSE(f(pred / MAX_DEPTH), f(gt / MAX_DEPTH)), invalid pixels zero
    # in both; loss network, lambda (LOSS_WEIGHT), CHUNK_SIZE, ... from MODEL.PERCEPTUAL_LOSS
    # (IN_CHANNELS 1).
    _C.PERCEPTUAL = False


def _add_data_check_config(cfg: CN) -> None:
    # Datasets registered without code (percep_det/data/custom.py, docs/custom_datasets.md), one
    # "name:kind:path:path[:key=value...]" string each: "name:coco:<json>:<image dir>",
    # "name:sem_seg:<image dir>:<label dir>[:classes=a,b,c][:ignore_label=255]",
    # "name:depth:<image dir>:<depth dir>:intrinsics=fx,fy,cx,cy[:depth_scale=1000]
    # [:min_depth=..][:max_depth=..]". Registered by tools/train_net.py before the checks.
    cfg.DATASETS.CUSTOM = []
    # Read by check_datasets (percep_det/engine/checks.py) before training and evaluation.
    _C = cfg.DATASETS.CHECK = CN()
    # What bad entries do: "stop" (an error listing them), "skip" (train / evaluate without the
    # images that have them, with a warning), "off" (no content check). Both list them in
    # OUTPUT_DIR/bad_entries_<dataset>.json; problems of a whole dataset (its json file,
    # NUM_CLASSES) stop the run under "skip" too.
    _C.POLICY = "stop"
    # Decode every image, label and depth file (slow) instead of reading headers and end markers.
    _C.DEEP = False
    # Pixels a box or polygon may extend beyond its image.
    _C.TOLERANCE = 2.0
    # Report a box whose IoU with its mask's bounding box is below this (0 = off): boxes given
    # as [x0, y0, x1, y1] where COCO wants [x, y, w, h], or boxes of another object.
    _C.BOX_MASK_IOU = 0.5
    # Reuse the result of an earlier check of the same data (same json file size and mtime, or
    # same records), kept in $PERCEP_DET_CACHE/dataset_checks.
    _C.CACHE = True
