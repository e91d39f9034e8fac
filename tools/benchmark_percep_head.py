#!/usr/bin/env python
"""Step time and peak memory of the perceptual term of CondInst's mask loss, per cost option.

The term is ``loss_mask_percep`` of :class:`PercepPerceptualDynamicMaskHead`, i.e.
``head.perceptual_loss(mask_scores, targets)``: the head is built from the default config
(MODEL.PERCEPTUAL_LOSS: VGG16 loss net, in_channels 1, CHUNK_SIZE ``--chunk-size``) plus the
option's MODEL.CONDINST.PERCEPTUAL keys, after any trailing ``KEY VALUE`` overrides; n mask
probabilities ``(n, 1, H, W)`` are compared with their gt masks. One step = the head's target
selection + loss forward + backward to the mask probabilities (what the term adds to a training
step).

Options (rows):
    full        faithful: all n instances on the whole mask (the paper's setting at n = 500)
    max<K>      MAX_INSTANCES K (random subset)
    crop        CROP (support box + CROP_MARGIN, corners on the 32-grid, buckets of CHUNK_SIZE)
    crop_max<K> both

Inputs: COCO-like synthetic instances: one rectangle per mask whose side lengths are log-uniform
in [8, H/2] pixels of the mask (H = 200 at 800 x 1333, stride 4), the prediction is 0.8 inside
plus noise, about 0.01 outside (a model part-way through training). With random full-image
predictions CROP would gain nothing; its gain depends on the instance sizes of the data set.

Memory: each (option, n) runs in a fresh child process. CUDA: ``max_memory_allocated`` during the
step minus what was allocated before it. CPU: rise of the peak resident set size (VmHWM, reset
just before the step). Time: median of ``--reps`` steps after the first (measured) step, same
child. The harness is :mod:`percep_det.utils.benchmark`.

Examples:
    python tools/benchmark_percep_head.py --device cuda                    # 1x200x336, n=64..500
    OMP_NUM_THREADS=1 python tools/benchmark_percep_head.py --scale 0.25 --sizes 16,64 --reps 1
    python tools/benchmark_percep_head.py --device cuda MODEL.PERCEPTUAL_LOSS.PRECISION tf32
"""

import argparse
import re
import sys
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from percep_det.config import get_percep_cfg
from percep_det.modeling.condinst import PercepPerceptualDynamicMaskHead
from percep_det.utils import benchmark as bench

OPTION_RE = re.compile(r"^(full|crop|max(\d+)|crop_max(\d+))$")


def parse_option(option: str) -> Tuple[int, bool]:
    """``(MAX_INSTANCES, CROP)`` of an option name: full, max<K>, crop or crop_max<K>."""
    match = OPTION_RE.match(option)
    if match is None:
        raise ValueError(f"unknown option {option!r}: expected full, max<K>, crop or crop_max<K>")
    k = match.group(2) or match.group(3)
    return (int(k) if k else -1), option.startswith("crop")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", default="64,128,256,500", help="numbers of instances n")
    parser.add_argument("--height", type=int, default=200, help="mask height (stride 4)")
    parser.add_argument("--width", type=int, default=336, help="mask width (stride 4)")
    parser.add_argument("--scale", type=float, default=1.0, help="scale H and W (CPU: 0.25)")
    parser.add_argument("--options", default="full,max64,crop,crop_max64")
    parser.add_argument(
        "--chunk-size", type=int, default=8, help="MODEL.PERCEPTUAL_LOSS.CHUNK_SIZE"
    )
    parser.add_argument(
        "--reps", type=int, default=3, help="timed steps after the first (0: first)"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    # set by the parent for its child processes
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--option", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.option_list = [o for o in args.options.split(",") if o]
    try:
        for option in args.option_list + [args.option]:
            parse_option(option)
    except ValueError as e:
        parser.error(str(e))
    args.h, args.w = round(args.height * args.scale), round(args.width * args.scale)
    return args


def synthetic_masks(
    n: int, h: int, w: int, device: torch.device, seed: int = 0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(n, 1, h, w)`` predictions and binary targets of rectangles of log-uniform size."""
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.log(torch.tensor(8.0)), torch.log(torch.tensor(h / 2))
    sides = torch.exp(lo + (hi - lo) * torch.rand(n, 2, generator=g)).round().long()
    target = torch.zeros(n, 1, h, w)
    for i, (bh, bw) in enumerate(sides.tolist()):
        y = int(torch.randint(0, max(h - bh, 1), (1,), generator=g))
        x = int(torch.randint(0, max(w - bw, 1), (1,), generator=g))
        target[i, :, y : y + bh, x : x + bw] = 1
    noise = torch.rand(n, 1, h, w, generator=g)
    pred = (target * 0.8 + 0.01 + 0.02 * noise * (1 + 5 * target)).clamp(0, 1)
    return pred.to(device), target.to(device)


def make_head(
    option: str, chunk_size: int, opts: Sequence[str] = ()
) -> PercepPerceptualDynamicMaskHead:
    """The perceptual mask head that the default config + ``opts`` builds, with ``option``'s
    MAX_INSTANCES and CROP and ``chunk_size`` (these win over ``opts``)."""
    max_instances, crop = parse_option(option)
    cfg = get_percep_cfg(opts=opts)
    cfg.MODEL.CONDINST.MASK_HEAD.NAME = "PercepPerceptualDynamicMaskHead"
    cfg.MODEL.PERCEPTUAL_LOSS.CHUNK_SIZE = chunk_size
    cfg.MODEL.CONDINST.PERCEPTUAL.MAX_INSTANCES = max_instances
    cfg.MODEL.CONDINST.PERCEPTUAL.CROP = crop
    return PercepPerceptualDynamicMaskHead(cfg)


def make_step(
    head: PercepPerceptualDynamicMaskHead, pred_leaf: torch.Tensor, target: torch.Tensor
) -> Callable[[], None]:
    """One step of the perceptual term: targets, loss, backward to ``pred_leaf``."""

    def step() -> None:
        pred_leaf.grad = None
        predictions = {"mask_scores": pred_leaf, "gt_bitmasks": target}
        targets = head.perceptual_targets(predictions, instances=None)
        head.perceptual_loss(pred_leaf, targets).backward()

    return step


def child(args: argparse.Namespace) -> Dict[str, float]:
    """Peak extra memory of the first step of ``--option`` at ``--n`` instances, and the median
    time of ``--reps`` more steps (0: the first step's time)."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    head = make_head(args.option, args.chunk_size, args.opts)
    head.perceptual_loss.loss_network(device)  # built before the measurement
    pred, target = synthetic_masks(args.n, args.h, args.w, device)
    step = make_step(head, pred.requires_grad_(True), target)
    peak_mib, first_s = bench.measure_peak(step, device)
    time_s = bench.time_steps(step, args.reps, device, warmup=0) if args.reps else first_s
    return {"time_s": time_s, "peak_mib": peak_mib}


def rows(args: argparse.Namespace, argv: List[str]) -> Iterator[Dict[str, object]]:
    """One row per option, one child process per (option, n)."""
    sizes = [int(s) for s in args.sizes.split(",")]
    for option in args.option_list:
        row: Dict[str, object] = {"option": option}
        for n in sizes:
            # the selectors go first: the user's trailing KEY VALUE overrides end argv
            res = bench.run_in_child(
                __file__, ["--child", "--option", option, "--n", str(n), *argv]
            )
            if "error" in res:
                row[f"n={n} time (s)"] = "error"
                row[f"n={n} peak (MiB)"] = res["error"]
            else:
                row[f"n={n} time (s)"] = res["time_s"]
                row[f"n={n} peak (MiB)"] = res["peak_mib"]
        yield row


def report(args: argparse.Namespace, argv: List[str]) -> None:
    """The parent: check the config, print the setup, then the table, measured by child
    processes."""
    try:  # a config error shows here, once, instead of in every child
        for option in args.option_list:
            make_head(option, args.chunk_size, args.opts)
    except (KeyError, ValueError) as e:
        sys.exit(f"ERROR: {e}")
    print(bench.describe_device(args.device))
    print(
        "perceptual term of the CondInst mask loss: loss net of MODEL.PERCEPTUAL_LOSS (default "
        f"VGG16), masks 1x{args.h}x{args.w}, "
        f"CHUNK_SIZE {args.chunk_size}, overrides {args.opts or 'none'}"
    )
    print("time = median step (targets + loss forward + backward to the masks)")
    print(bench.describe_peak(args.device) + "\n")
    columns = ["option"]
    for n in [int(s) for s in args.sizes.split(",")]:
        columns += [f"n={n} time (s)", f"n={n} peak (MiB)"]
    bench.print_table(rows(args, argv), columns)


def main(argv: Optional[Sequence[str]] = None) -> None:
    bench.run_benchmark(argv, parse_args, child, report)


if __name__ == "__main__":
    main()
