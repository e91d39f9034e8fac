#!/usr/bin/env python
"""Time and peak memory of the chunked perceptual loss vs a naive reference.

naive:   ``naive_perceptual_loss`` (net(pred) with autograd and net(target) on the whole batch at
         once), then ``backward()``.
chunked: ``perceptual_loss(..., chunk_size=K)``, then ``backward()``;
         ``chunked_cl``: the same in channels_last.

Both run in the same ``--precision`` (default fp32 with TF32 off, the loss's default; ``tf32``
lets cuDNN use TF32 tensor cores, which is what PyTorch does for convolutions unless told not to).

Memory: every (variant, n, H, W) runs its first loss step in a fresh child process, so one
measurement cannot inherit another's cached or fragmented memory. Time: one more child per n runs
``--warmup`` untimed rounds, then ``--reps`` rounds of all variants interleaved (each variant on its
own copy of the net), and reports the median per variant (``--reps 0``: the first step's time from
the memory child).

Peak memory (what it measures):
* CUDA: ``torch.cuda.max_memory_allocated()`` during the step minus the memory allocated just
  before it (the net and the inputs), i.e. the extra memory the loss step needs.
* CPU: the increase of the process's peak resident set size (VmHWM, reset through
  ``/proc/self/clear_refs`` just before the step) over its resident size before the step: pages
  actually touched by the step (activations, temporaries, allocator slack), not virtual memory.

Example (CPU, sizes scaled by 1/4 per side):
    OMP_NUM_THREADS=1 python tools/benchmark_loss.py --scale 0.25 --sizes 8,64
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from percep_det.modeling.loss_network import PercepVGGLossNetwork, PercepZooLossNetwork  # noqa
from percep_det.modeling.losses import naive_perceptual_loss, perceptual_loss  # noqa
from percep_det.utils.memory import PeakMemory  # noqa: E402

VARIANTS = ("naive", "chunked", "chunked_cl")


def _setup(args: argparse.Namespace):
    torch.manual_seed(0)
    device = torch.device(args.device)
    shape = (args.n, args.channels, args.height, args.width)
    logits = torch.randn(shape, device=device)
    target = (torch.rand(shape, device=device) > 0.5).float()
    return device, logits, target


def _make_step(args: argparse.Namespace, variant: str, logits: torch.Tensor, target: torch.Tensor):
    """A closure running one loss step (forward + backward) of ``variant`` on its own net."""
    if args.arch == "vgg":
        net = PercepVGGLossNetwork(in_channels=args.channels)
    else:
        net = PercepZooLossNetwork(arch=args.arch, in_channels=args.channels)
    net.to(logits.device)
    cuda = logits.device.type == "cuda"

    def step() -> float:
        pred = logits.sigmoid().detach().requires_grad_()
        if variant == "naive":
            loss = naive_perceptual_loss(pred, target, net, precision=args.precision)
        else:
            loss = perceptual_loss(
                pred,
                target,
                net,
                chunk_size=args.chunk_size,
                precision=args.precision,
                channels_last=variant == "chunked_cl",
            )
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
        return loss.detach()

    return step


def _child_memory(args: argparse.Namespace) -> Dict[str, float]:
    """Peak extra memory (MiB) and time of the first step of one variant."""
    device, logits, target = _setup(args)
    step = _make_step(args, args.variant, logits, target)
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        loss = step()
        first = time.perf_counter() - t0
    peak = mem.peak_bytes
    return {"peak_mib": peak / 2**20, "first_s": first, "loss": float(loss)}


def _child_time(args: argparse.Namespace) -> Dict[str, float]:
    """Median step time of every variant, interleaved (v1, v2, ..., v1, v2, ...) so that load
    changes on the machine hit all variants alike."""
    _, logits, target = _setup(args)
    variants = args.variants.split(",")
    steps = {v: _make_step(args, v, logits, target) for v in variants}
    times: Dict[str, List[float]] = {v: [] for v in variants}
    failed = set()
    for r in range(args.warmup + args.reps):
        for v in variants:
            if v in failed:
                continue
            t0 = time.perf_counter()
            try:
                steps[v]()
            except torch.cuda.OutOfMemoryError:  # e.g. naive at n = 500: time the others
                failed.add(v)
                torch.cuda.empty_cache()
                continue
            if r >= args.warmup:
                times[v].append(time.perf_counter() - t0)
    return {v: statistics.median(t) for v, t in times.items() if v not in failed}


def _run_child(args: argparse.Namespace, mode: str, variant: str, n: int, h: int, w: int) -> dict:
    cmd = [
        sys.executable, os.path.abspath(__file__), "--child", mode, "--variant", variant,
        "--n", str(n), "--height", str(h), "--width", str(w), "--arch", args.arch,
        "--channels", str(args.channels), "--chunk-size", str(args.chunk_size),
        "--precision", args.precision,
        "--reps", str(args.reps), "--warmup", str(args.warmup), "--device", args.device,
        "--variants", args.variants,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="8,64,500", help="comma-separated numbers of inputs n")
    parser.add_argument("--height", type=int, default=200, help="unscaled input height")
    parser.add_argument("--width", type=int, default=336, help="unscaled input width")
    parser.add_argument("--scale", type=float, default=1.0, help="scale factor of H and W")
    parser.add_argument("--arch", default="vgg", help="'vgg' (VGG16 spec) or a zoo arch")
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "tf32", "bf16", "fp16"],
        help="precision of both the naive reference and the chunked loss (fp32: TF32 off)",
    )
    parser.add_argument("--reps", type=int, default=3, help="timed rounds (0: first steps)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds before those")
    parser.add_argument("--variants", default="naive,chunked,chunked_cl")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--child", choices=("memory", "time"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="chunked", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child_memory(args) if args.child == "memory" else _child_time(args)))
        return

    h, w = round(args.height * args.scale), round(args.width * args.scale)
    variants: List[str] = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown or "naive" not in variants:
        parser.error(f"--variants must include 'naive' and be among {VARIANTS}, got {unknown}")
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"device: {args.device} ({name}, torch {torch.__version__}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})")
    print(f"loss net: {args.arch} (VGG16 blocks 2,2,3,3,3 if 'vgg'), in_channels {args.channels}, "
          f"final layer, {args.precision} (naive and chunked alike); chunk_size {args.chunk_size}")
    if args.scale != 1.0:
        print(f"SCALED: inputs are {h}x{w} = ({args.height}x{args.width}) x {args.scale} per "
              f"side (about {args.scale ** 2:.3g}x the FLOPs and activation memory per input)")
    print("peak = extra memory of one loss step (forward + backward): "
          + ("torch.cuda.max_memory_allocated" if args.device == "cuda" else
             "peak RSS (VmHWM) increase over RSS before the step"))
    timing = f"median of {args.reps} interleaved rounds after {args.warmup} warm-up round(s)"
    print(f"time = {timing}, in one process" if args.reps else "time = first step (memory process)")
    print()
    print("| n | C x H x W | variant | time (s) | peak (MiB) | time / naive | naive peak / peak |")
    print("|" + "---|" * 7)
    for n in [int(s) for s in args.sizes.split(",")]:
        results = {v: _run_child(args, "memory", v, n, h, w) for v in variants}
        timed = _run_child(args, "time", "", n, h, w) if args.reps else {}
        for v in variants:
            if "error" in timed:
                results[v]["error"] = timed["error"]
            elif "peak_mib" in results[v]:
                first = results[v]["first_s"]
                results[v]["time_s"] = timed.get(v, float("nan")) if args.reps else first
        base = results["naive"]
        for v in variants:
            r = results[v]
            if "error" in r:
                print(f"| {n} | {args.channels}x{h}x{w} | {v} | failed: {r['error']} | | | |")
                continue
            ratio_t = r["time_s"] / base["time_s"] if "time_s" in base else float("nan")
            ratio_m = base["peak_mib"] / r["peak_mib"] if "peak_mib" in base else float("nan")
            print(f"| {n} | {args.channels}x{h}x{w} | {v} | {r['time_s']:.3f} | "
                  f"{r['peak_mib']:.1f} | {ratio_t:.2f} | {ratio_m:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
