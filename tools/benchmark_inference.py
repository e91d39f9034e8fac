#!/usr/bin/env python
"""Inference speed of a CondInst model: images/s and time per stage.

    python tools/benchmark_inference.py --config-file configs/InstanceSegmentation/condinst_R50_1x_coco.yaml
    python tools/benchmark_inference.py \
        --config-file configs/quick_schedules/condinst_R18_shapes_cpu.yaml \
        --dataset percep_shapes_val --weights output/condinst_R18_shapes_cpu/model_final.pth

Without ``--weights`` the model keeps its random initialisation (the detection threshold is then
lowered with ``--score-thresh`` so that the mask head and post-processing see detections). Images
are random (``--image-size``) or come from a registered dataset (``--dataset``), resized by the
config's test-time resize. Stages: backbone, proposal generator (FCOS incl. NMS), mask branch,
mask head (dynamic convs), postprocess (paste masks to the original image size).
"""

import argparse
import sys
import time
from collections import defaultdict
from typing import Dict, List

import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model

import percep_det  # noqa: F401  (registers models and datasets)
from percep_det.config import get_percep_cfg
from percep_det.engine import check_config_file
from percep_det.engine.checkpoint import PercepCheckpointer  # safe loading of .pkl / .pth

STAGES = ["backbone", "proposal_generator", "mask_branch", "mask_head", "postprocess"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config-file", required=True)
    p.add_argument("--weights", default="", help="checkpoint to load (default: random weights)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dataset", default="", help="registered dataset to take images from")
    p.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="size of random images (default: INPUT.MIN_SIZE_TEST square)",
    )
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--iters", type=int, default=20, help="timed batches")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument(
        "--score-thresh",
        type=float,
        default=None,
        help="MODEL.FCOS.INFERENCE_TH_TEST (default: config; 0.0 with random weights)",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    return p.parse_args(argv)


def setup_cfg(args):
    """The frozen config of ``args``: the config file, the overrides, then --device and the
    detection threshold."""
    check_config_file(args.config_file)
    cfg = get_percep_cfg(args.config_file, args.opts)
    cfg.MODEL.DEVICE = args.device
    if args.score_thresh is not None:
        cfg.MODEL.FCOS.INFERENCE_TH_TEST = args.score_thresh
    elif not args.weights:
        cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0
    cfg.freeze()
    return cfg


def make_batches(cfg, args) -> List[List[Dict]]:
    n = (args.iters + args.warmup) * args.batch_size
    if args.dataset:
        dicts = DatasetCatalog.get(args.dataset)
        mapper = DatasetMapper(cfg, is_train=False)
        inputs = [mapper(dicts[i % len(dicts)]) for i in range(n)]
    else:
        h, w = args.image_size or (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST)
        gen = torch.Generator().manual_seed(0)
        inputs = [
            {
                "image": torch.randint(0, 256, (3, h, w), generator=gen, dtype=torch.uint8),
                "height": h,
                "width": w,
            }
            for _ in range(n)
        ]
    return [inputs[i : i + args.batch_size] for i in range(0, n, args.batch_size)]


class StageTimer:
    """Wall time per named stage (synchronising CUDA before reading the clock)."""

    def __init__(self, device: torch.device):
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.times = defaultdict(float)

    def __call__(self, name, fn, *args, **kwargs):
        self.sync()
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.sync()
        self.times[name] += time.perf_counter() - start
        return out


@torch.no_grad()
def run_batch(model, batch, timer: StageTimer):
    """PercepCondInst.inference, one stage at a time."""
    images = model.preprocess_image(batch)
    features = timer("backbone", model.backbone, images.tensor)
    proposals, _ = timer(
        "proposal_generator", model.proposal_generator, images, features, None, model.controller
    )
    mask_feats, _ = timer("mask_branch", model.mask_branch, features)
    detections = timer(
        "mask_head", model.forward_mask_head_test, proposals, mask_feats, images.tensor.shape[-2:]
    )
    results = timer("postprocess", model.postprocess, detections, batch, images)
    return len(detections), sum(len(r["instances"]) for r in results)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        cfg = setup_cfg(args)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    model = build_model(cfg)
    if args.weights:
        PercepCheckpointer(model).load(args.weights)
    model.eval()
    batches = make_batches(cfg, args)

    timer = StageTimer(model.device)
    for batch in batches[: args.warmup]:
        run_batch(model, batch, timer)
    timer.times.clear()
    num_masked, num_dets = 0, 0
    start = time.perf_counter()
    for batch in batches[args.warmup :]:
        masked, dets = run_batch(model, batch, timer)
        num_masked, num_dets = num_masked + masked, num_dets + dets
    total = time.perf_counter() - start
    num_images = args.iters * args.batch_size

    sizes = {tuple(b[0]["image"].shape[-2:]) for b in batches}
    print(f"config: {args.config_file}")
    print(
        f"weights: {args.weights or '(random init)'}  device: {args.device}  "
        f"threads: {torch.get_num_threads()}  batch: {args.batch_size}  "
        f"images: {num_images} ({args.dataset or 'random'}, input sizes {sorted(sizes)[:3]})"
    )
    print(
        f"per image: {num_masked / num_images:.1f} instances through the mask head, "
        f"{num_dets / num_images:.1f} returned (non-empty boxes)"
    )
    print(f"{'stage':<20}{'ms / image':>12}{'share':>9}")
    for name in STAGES:
        t = timer.times[name]
        print(f"{name:<20}{1000 * t / num_images:>12.2f}{100 * t / total:>8.1f}%")
    other = total - sum(timer.times.values())
    print(
        f"{'other (preprocess)':<20}{1000 * other / num_images:>12.2f}{100 * other / total:>8.1f}%"
    )
    print(f"{'total':<20}{1000 * total / num_images:>12.2f}")
    print(f"throughput: {num_images / total:.2f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
