#!/usr/bin/env python
"""Step time and peak memory of the perceptual term of CondInst's mask loss, per cost option.

The term is ``loss_mask_percep`` of :class:`PercepPerceptualDynamicMaskHead`: loss network VGG16
(MODEL.PERCEPTUAL_LOSS defaults, in_channels 1), n mask probabilities ``(n, 1, H, W)`` against
their gt masks, chunked (CHUNK_SIZE). One step = the head's target selection + loss forward +
backward to the mask probabilities (what the term adds to a training step).

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
just before the step). Time: median of ``--reps`` steps after one warm-up step, same child.

Examples:
    python tools/benchmark_percep_head.py --device cuda                    # 1x200x336, n=64..500
    OMP_NUM_THREADS=1 python tools/benchmark_percep_head.py --scale 0.25 --sizes 16,64 --reps 1
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from percep_det.modeling.loss_network import PercepVGGLossNetwork  # noqa: E402
from percep_det.modeling.perceptual_mask_head import PercepPerceptualDynamicMaskHead  # noqa: E402
from percep_det.utils.memory import PeakMemory  # noqa: E402


def synthetic_masks(n: int, h: int, w: int, device: torch.device, seed: int = 0):
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


def make_head(option: str, chunk_size: int) -> PercepPerceptualDynamicMaskHead:
    max_instances = int(option.split("max")[1]) if "max" in option else -1
    return PercepPerceptualDynamicMaskHead(
        in_channels=8,
        sizes_of_interest=[64, 128, 256, 512],
        loss_network=PercepVGGLossNetwork(in_channels=1),
        chunk_size=chunk_size,
        max_instances=max_instances,
        crop=option.startswith("crop"),
    )


def step(head, pred_leaf, target) -> float:
    """One perceptual step (targets, loss, backward); returns seconds."""
    cuda = pred_leaf.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    pred_leaf.grad = None
    predictions = {"mask_scores": pred_leaf, "gt_bitmasks": target}
    out = head.perceptual_targets(predictions, instances=None)
    inds = out["percep_inds"]
    pred = pred_leaf if inds is None else pred_leaf[inds]
    loss = head.perceptual_loss(pred, out["percep_targets"]) * head.percep_loss_weight
    loss.backward()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def child(args) -> dict:
    torch.manual_seed(0)
    device = torch.device(args.device)
    head = make_head(args.option, args.chunk_size)
    head.loss_network(device)
    pred, target = synthetic_masks(args.n, args.height, args.width, device)
    pred.requires_grad_(True)
    with PeakMemory(device) as mem:
        times = [step(head, pred, target)]
    peak = mem.peak_bytes
    times += [step(head, pred, target) for _ in range(args.reps)]
    timed = times[1:] if args.reps else times
    return {"time_s": statistics.median(timed), "peak_mib": peak / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
        "--reps", type=int, default=3, help="timed steps after a warm-up (0: first)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--option", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    h, w = round(args.height * args.scale), round(args.width * args.scale)
    sizes = [int(s) for s in args.sizes.split(",")]
    options = args.options.split(",")
    print(
        f"perceptual term of the CondInst mask loss: VGG16 loss net, masks 1x{h}x{w}, "
        f"CHUNK_SIZE {args.chunk_size}, device {args.device}, torch threads "
        f"{os.environ.get('OMP_NUM_THREADS', 'default')}"
    )
    print("time = median step (loss forward + backward to the masks); peak = extra memory\n")
    print("| option | " + " | ".join(f"n={n} time (s) | n={n} peak (MiB)" for n in sizes) + " |")
    print("|---|" + "---|---|" * len(sizes))
    for option in options:
        cells = []
        for n in sizes:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--option", option]
            cmd += ["--n", str(n), "--height", str(h), "--width", str(w), "--device", args.device]
            cmd += ["--chunk-size", str(args.chunk_size), "--reps", str(args.reps)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                cells += ["error", proc.stderr.strip().splitlines()[-1][:40]]
                continue
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            cells += [f"{res['time_s']:.3g}", f"{res['peak_mib']:.0f}"]
        print(f"| {option} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
