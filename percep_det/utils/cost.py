"""What the perceptual term costs: the loss network's FLOPs per input pixel, the term's inputs per
image for each task, and a model's forward FLOPs. Shared by ``tools/study_loss_networks.py`` (cost
columns and plots) and ``tools/estimate_term_cost.py`` (the term against the model at a recipe's
scale).

FLOPs are fvcore's: a multiply-add counts as one flop. One training step of the term runs the
loss network forward on the prediction and on the target and backward through the prediction's
pass for the input gradient only (its weights are frozen), about 3 forwards; a model's training
step (forward, then input and weight gradients) is also about 3 forwards. So the term's share of a
step is close to the ratio of the two forward counts, which is what the estimate reports.
"""

import json
import warnings
from typing import Dict, NamedTuple, Tuple

import torch

__all__ = [
    "FLOP_PROBE_SIZE",
    "TermInputs",
    "has_perceptual_term",
    "input_size",
    "loss_net_cost",
    "loss_net_key",
    "model_forward_flops",
    "term_in_channels",
    "term_inputs",
]

FLOP_PROBE_SIZE = 64  # px per side of the input the loss network's FLOPs are counted on (at least)


def term_in_channels(cfg) -> int:
    """Channels of the inputs the task gives its loss network (what it passes as
    ``PerceptualLoss(cfg, in_channels=...)``): class maps in semantic segmentation, one channel
    for masks (CondInst, Mask R-CNN) and depth."""
    if cfg.MODEL.META_ARCHITECTURE == "PercepSemanticSegmentor":
        return int(cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES)
    return 1


def has_perceptual_term(cfg) -> bool:
    """Whether ``cfg`` trains with the perceptual term."""
    return (
        cfg.MODEL.META_ARCHITECTURE == "PercepSemanticSegmentor"
        or cfg.MODEL.CONDINST.MASK_HEAD.NAME == "PercepPerceptualDynamicMaskHead"
        or cfg.MODEL.ROI_MASK_HEAD.NAME == "PercepPerceptualMaskRCNNConvUpsampleHead"
        or (cfg.MODEL.META_ARCHITECTURE == "PercepDepthEstimator" and cfg.MODEL.DEPTH.PERCEPTUAL)
    )


def loss_net_key(cfg) -> str:
    """What defines the loss network's cost: its MODEL.PERCEPTUAL_LOSS keys and input channels."""
    lc = cfg.MODEL.PERCEPTUAL_LOSS
    keys = ("ARCH", "BLOCKS", "WIDTHS", "KERNEL_SIZE", "OUT_POINTS", "PRETRAINED_WEIGHTS")
    spec = {k: list(lc[k]) if isinstance(lc[k], (list, tuple)) else lc[k] for k in keys}
    spec["PRETRAINED_WEIGHTS"] = bool(spec["PRETRAINED_WEIGHTS"])
    spec["IN_CHANNELS"] = term_in_channels(cfg)
    return json.dumps(spec, sort_keys=True)


def _fvcore_flops(module: torch.nn.Module, inputs: tuple) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fvcore.nn import FlopCountAnalysis

        count = FlopCountAnalysis(module, inputs)
        count.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return float(count.total())


def loss_net_cost(cfg) -> Dict[str, object]:
    """Build the loss network of ``cfg`` (with percep_det's builder; this also checks its keys)
    and count its forward FLOPs per input pixel on one square input of at least
    ``FLOP_PROBE_SIZE`` px. Also: parameters, extraction points and the downsampling of the
    deepest one.

    A pretrained zoo net (PRETRAINED_WEIGHTS) is counted as its random twin on 3 channels plus
    the fixed 1x1 projection from the task's C channels (no weights are read)."""
    from percep_det.modeling.perceptual import build_loss_network

    c = term_in_channels(cfg)
    net_cfg = cfg.clone()
    net_cfg.defrost()
    lc = net_cfg.MODEL.PERCEPTUAL_LOSS
    pretrained = bool(lc.PRETRAINED_WEIGHTS)
    lc.IN_CHANNELS = 3 if pretrained else c
    lc.PRETRAINED_WEIGHTS = ""
    net = build_loss_network(net_cfg)
    size = max(FLOP_PROBE_SIZE, net.min_input_size)
    while True:
        x = torch.zeros(1, lc.IN_CHANNELS, size, size)
        try:
            flops = _fvcore_flops(net, (x,))
            break
        except RuntimeError:  # a stem that needs more than min_input_size (inception_v3)
            if size >= 1024:
                raise
            size *= 2
    per_px = flops / (size * size) + (3 * c if pretrained else 0)
    return {
        "flops_per_px": per_px,
        "params": sum(p.numel() for p in net.parameters()) + (3 * c if pretrained else 0),
        "points": list(net.out_points),
        "depth": int(net.min_input_size),  # total downsampling at the deepest point
        "probe_size": size,
    }


class TermInputs(NamedTuple):
    """The loss network's inputs per training image: ``count`` maps of ``channels`` x ``height``
    x ``width`` (each through the net twice: prediction and target); ``note``: how they were
    counted."""

    count: float
    channels: int
    height: int
    width: int
    note: str

    @property
    def pixels(self) -> float:
        return self.count * self.height * self.width


def term_inputs(cfg, model, height: int, width: int, images_per_gpu: int = 2) -> TermInputs:
    """The term's inputs per training image of ``height`` x ``width`` px for the task of ``cfg``
    (``model``: the built model, for the semantic head's output stride). Instance tasks take
    the instances of one GPU's step (``MAX_INSTANCES``, else every sampled one, up to
    ``MAX_PROPOSALS`` for CondInst) shared by its ``images_per_gpu`` images: an upper bound when
    fewer are sampled, and without ``PERCEPTUAL.CROP``, whose saving depends on the data."""
    arch = cfg.MODEL.META_ARCHITECTURE
    if not has_perceptual_term(cfg):
        raise ValueError(f"this {arch} config has no perceptual term")
    c = term_in_channels(cfg)
    if arch == "PercepSemanticSegmentor":
        if cfg.MODEL.SEM_SEG_PERCEPTUAL.RESOLUTION == "output":
            s = int(model.sem_seg_head.common_stride)
            return TermInputs(1, c, -(-height // s), -(-width // s), f"head output, stride {s}")
        return TermInputs(1, c, height, width, "label resolution")
    if arch == "PercepDepthEstimator":
        return TermInputs(1, 1, height, width, "depth map at the input size")
    if cfg.MODEL.CONDINST.MASK_HEAD.NAME == "PercepPerceptualDynamicMaskHead":
        pc = cfg.MODEL.CONDINST.PERCEPTUAL
        n = int(pc.MAX_INSTANCES)
        proposals = int(cfg.MODEL.CONDINST.MAX_PROPOSALS)
        if n <= 0:
            n, why = (proposals, "MAX_PROPOSALS") if proposals > 0 else (500, "assumed 500")
        else:
            why = "MAX_INSTANCES"
            n = min(n, proposals) if proposals > 0 else n
        s = int(cfg.MODEL.CONDINST.MASK_OUT_STRIDE)
        crop = ", CROP off (on: less)" if pc.CROP else ""
        return TermInputs(
            n / images_per_gpu,
            1,
            -(-height // s),
            -(-width // s),
            f"{n} instances ({why}) per {images_per_gpu} images, mask stride {s}{crop}",
        )
    if cfg.MODEL.ROI_MASK_HEAD.NAME == "PercepPerceptualMaskRCNNConvUpsampleHead":
        n = int(cfg.MODEL.ROI_MASK_HEAD.PERCEPTUAL.MAX_INSTANCES)
        fg = cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE * cfg.MODEL.ROI_HEADS.POSITIVE_FRACTION
        per_image = n / images_per_gpu if n > 0 else fg
        side = 2 * int(cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION)
        return TermInputs(per_image, 1, side, side, "foreground proposals (upper bound)")
    raise ValueError(f"no term inputs known for {arch}")


def model_forward_flops(model: torch.nn.Module, height: int, width: int) -> float:
    """Forward FLOPs of a detectron2 ``model`` in eval mode on one random image of ``height`` x
    ``width`` px, counted with detectron2's ``FlopCountAnalysis`` (fvcore on detectron2's
    inputs and outputs). The inference forward is close to a training forward, without the
    losses."""
    from detectron2.utils.analysis import FlopCountAnalysis

    model.eval()
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8)
    inputs = [{"image": image, "height": height, "width": width}]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        count = FlopCountAnalysis(model, inputs)
        count.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        return float(count.total())


def input_size(cfg) -> Tuple[int, int]:
    """The training input size a recipe implies: its absolute crop, or its largest short side
    with a 4:3 image capped at ``MAX_SIZE_TRAIN``."""
    if cfg.INPUT.CROP.ENABLED and cfg.INPUT.CROP.TYPE == "absolute":
        h, w = cfg.INPUT.CROP.SIZE
        return int(h), int(w)
    short = int(max(cfg.INPUT.MIN_SIZE_TRAIN))
    return short, int(min(cfg.INPUT.MAX_SIZE_TRAIN, round(short * 4 / 3)))
