#!/usr/bin/env python
"""What the perceptual term costs against the model it trains, at a recipe's own scale: FLOPs,
no training, no GPU, no weights.

For each variant (a set of config overrides), it builds the loss network and counts its forward
FLOPs per input pixel, works out the term's inputs per training image for the task (class maps
at label or head resolution, depth maps, the sampled instance masks), and counts the forward
FLOPs of the model (and of the teacher, for teacher targets) on one image of the training size.
Training steps of the term and of the model each cost about 3 forwards (percep_det/utils/cost.py),
so "term / model" estimates the term's share of a step's compute, and "step" the whole step
against the baseline without the term.

FLOPs are not time: memory-bound layers (the loss network's first, full-resolution convs, the
decoders' upsampling) run below peak, so measure with tools/study_loss_networks.py or
tools/benchmark_loss.py before relying on a ratio.

Examples:
    python tools/estimate_term_cost.py \\
        --config-file configs/SemanticSegmentation/pspnet_R18_percep_teacher_cityscapes.yaml \\
        --variant "vgg16=" \\
        --variant "b11111=MODEL.PERCEPTUAL_LOSS.BLOCKS [1,1,1,1,1]" \\
        --variant "vgg16 at the head's stride=MODEL.SEM_SEG_PERCEPTUAL.RESOLUTION output"
    python tools/estimate_term_cost.py --config-file configs/InstanceSegmentation/condinst_percep_R50_1x_coco.yaml \\
        --variant "all sampled=" --variant "32 instances=MODEL.CONDINST.PERCEPTUAL.MAX_INSTANCES 32"
"""

import argparse
import os
import shlex
from typing import Dict, List, Optional, Sequence, Tuple

from percep_det.config import get_percep_cfg
from percep_det.utils.cost import (
    has_perceptual_term,
    input_size,
    loss_net_cost,
    model_forward_flops,
    term_inputs,
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, help="a task config with the term")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=KEY VALUE ...",
        help="a named set of overrides (repeatable; default: the config as it is)",
    )
    parser.add_argument(
        "--input-size",
        default="",
        metavar="HxW",
        help="training image size (default: the absolute crop, else the largest short side of a "
        "4:3 image capped at MAX_SIZE_TRAIN)",
    )
    parser.add_argument(
        "--images-per-gpu",
        type=int,
        default=2,
        help="images sharing one GPU's sampled instances (instance tasks; COCO: 16 / 8 GPUs)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides for all")
    return parser.parse_args(argv)


def _variants(items: Sequence[str]) -> List[Tuple[str, List[str]]]:
    out = []
    for item in items or ["config="]:
        if "=" not in item:
            raise SystemExit(f"--variant expects NAME=KEY VALUE ..., got {item!r}")
        name, opts = item.split("=", 1)
        opts = shlex.split(opts)
        if len(opts) % 2:
            raise SystemExit(f"--variant {name!r}: overrides come in KEY VALUE pairs, got {opts}")
        out.append((name or "config", opts))
    return out


_COUNTED: Dict[str, float] = {}  # forward FLOPs already counted, by model config and size


def _forward_flops(cfg, height: int, width: int, model=None) -> float:
    """:func:`model_forward_flops` of the model of ``cfg`` (``model`` if already built), counted
    once per config and size (the variants of one estimate usually change only the loss net)."""
    from detectron2.modeling import build_model

    key = cfg.clone()
    key.defrost()
    key.MODEL.PERCEPTUAL_LOSS.clear()
    key = f"{key.dump()}{height}x{width}"
    if key not in _COUNTED:
        _COUNTED[key] = model_forward_flops(model or build_model(cfg), height, width)
    return _COUNTED[key]


def _teacher_flops(cfg, height: int, width: int) -> Tuple[float, str]:
    """Forward FLOPs of the frozen teacher per image (0 without teacher targets)."""
    if cfg.MODEL.META_ARCHITECTURE == "PercepSemanticSegmentor":
        pc = cfg.MODEL.SEM_SEG_PERCEPTUAL
        target, config_file = pc.TARGET, pc.TEACHER.CONFIG_FILE
        key = "MODEL.SEM_SEG_PERCEPTUAL.TEACHER.CONFIG_FILE"
    elif cfg.MODEL.CONDINST.MASK_HEAD.NAME == "PercepPerceptualDynamicMaskHead":
        pc = cfg.MODEL.CONDINST.PERCEPTUAL
        target, config_file = pc.TARGET, pc.TEACHER.CONFIG_FILE
        key = "MODEL.CONDINST.PERCEPTUAL.TEACHER.CONFIG_FILE"
    else:
        return 0.0, "-"
    if target != "teacher":
        return 0.0, "-"
    if not config_file or not os.path.isfile(config_file):
        return float("nan"), f"{key} {config_file!r} not found: teacher not counted"
    teacher_cfg = get_percep_cfg(config_file, ["MODEL.DEVICE", "cpu"])
    return _forward_flops(teacher_cfg, height, width), os.path.basename(config_file)


def estimate(config_file: str, opts: Sequence[str], size: Tuple[int, int], images_per_gpu: int):
    """One row: the variant's loss net, term inputs and FLOPs against the model's."""
    from detectron2.modeling import build_model

    cfg = get_percep_cfg(config_file, list(opts) + ["MODEL.DEVICE", "cpu"])
    if not has_perceptual_term(cfg):
        raise SystemExit(
            f"{config_file} (with {list(opts)}) trains no perceptual term: give a config with it "
            "(e.g. MODEL.META_ARCHITECTURE PercepSemanticSegmentor, MODEL.DEPTH.PERCEPTUAL True)"
        )
    h, w = size or input_size(cfg)
    # the student as the term sees it; its teacher (weights not needed) is counted apart
    student_cfg = cfg.clone()
    student_cfg.defrost()
    student_cfg.MODEL.SEM_SEG_PERCEPTUAL.TARGET = "gt"
    student_cfg.MODEL.CONDINST.PERCEPTUAL.TARGET = "gt"
    model = build_model(student_cfg)
    inputs = term_inputs(cfg, model, h, w, images_per_gpu)
    net = loss_net_cost(cfg)
    term = net["flops_per_px"] * inputs.pixels
    model_flops = _forward_flops(student_cfg, h, w, model)
    teacher, teacher_note = _teacher_flops(cfg, h, w)
    # steps: model 3 forwards; term 3 forwards of the net; teacher 1 forward (no backward)
    extra = term + (teacher / 3 if teacher == teacher else 0.0)
    return {
        "size": f"{h}x{w}",
        "net_kflop_px": net["flops_per_px"] / 1e3,
        "inputs": f"{inputs.count:g} x {inputs.channels} x {inputs.height} x {inputs.width}",
        "note": inputs.note,
        "term_gflop": term / 1e9,
        "model_gflop": model_flops / 1e9,
        "teacher_gflop": teacher / 1e9,
        "teacher_note": teacher_note,
        "term_share": term / model_flops,
        "step": 1.0 + extra / model_flops,
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    if not os.path.isfile(args.config_file):
        raise SystemExit(f"--config-file {args.config_file!r} does not exist")
    size: Tuple[int, int] = ()  # type: ignore[assignment]
    if args.input_size:
        try:
            h, w = (int(v) for v in args.input_size.lower().split("x"))
            size = (h, w)
        except ValueError:
            raise SystemExit(f"--input-size expects HxW, e.g. 769x769, got {args.input_size!r}")
    rows = []
    for name, opts in _variants(args.variant):
        rows.append((name, estimate(args.config_file, list(args.opts) + opts, size,
                                    args.images_per_gpu)))  # fmt: skip
    print(
        f"{args.config_file}: per training image; forward GFLOP (fvcore, multiply-add = 1); term "
        "and model steps about 3 forwards each, the teacher's 1\n"
    )
    print(
        "| variant | input | loss net kFLOP/px | term inputs per image | term GFLOP | model GFLOP "
        "| teacher GFLOP | term / model | step vs baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        teacher = "-" if r["teacher_note"] == "-" else f"{r['teacher_gflop']:.3g}"
        print(
            f"| {name} | {r['size']} | {r['net_kflop_px']:.1f} | {r['inputs']} ({r['note']}) | "
            f"{r['term_gflop']:.3g} | {r['model_gflop']:.3g} | {teacher} | "
            f"{r['term_share']:.2f} | {r['step']:.2f}x |"
        )
    notes = {r["teacher_note"] for _, r in rows if r["teacher_note"] not in ("-",)}
    for note in sorted(notes):
        if "not counted" in note:
            print(f"\nNote: {note}")


if __name__ == "__main__":
    main()
