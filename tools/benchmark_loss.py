#!/usr/bin/env python
"""Time and peak memory of the chunked perceptual loss vs a naive reference.

naive:   ``naive_perceptual_loss`` (net(pred) with autograd and net(target) on the whole batch at
         once), then ``backward()``.
chunked: ``perceptual_loss(..., chunk_size=K)``, then ``backward()``;
         ``chunked_cl``: the same in channels_last.

Both run in the same ``--precision`` (default fp32 with TF32 off, the loss's default; ``tf32``
lets cuDNN use TF32 tensor cores, which is what PyTorch does for convolutions unless told not to).

Memory: every (variant, n) runs its first loss step in a fresh child process, so one measurement
cannot inherit another's cached or fragmented memory. Time: one more child per n runs ``--warmup``
untimed rounds, then ``--reps`` rounds of all variants interleaved (each variant on its own copy
of the net), and reports the median per variant (``--reps 0``: the first step's time from the
memory child). The harness is :mod:`percep_det.utils.benchmark`.

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
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from percep_det.modeling.perceptual import (
    PercepLossNetwork,
    PercepVGGLossNetwork,
    PercepZooLossNetwork,
    naive_perceptual_loss,
    perceptual_loss,
)
from percep_det.utils import benchmark as bench

VARIANTS = ("naive", "chunked", "chunked_cl")
COLUMNS = (
    "n",
    "C x H x W",
    "variant",
    "time (s)",
    "peak (MiB)",
    "time / naive",
    "naive peak / peak",
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
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
    # set by the parent for its child processes
    parser.add_argument("--child", choices=("memory", "time"), help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="chunked", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=8, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.variant_list = [v for v in args.variants.split(",") if v]
    unknown = set(args.variant_list) - set(VARIANTS)
    if unknown or "naive" not in args.variant_list:
        parser.error(f"--variants must include 'naive' and be among {VARIANTS}, got {unknown}")
    args.h, args.w = round(args.height * args.scale), round(args.width * args.scale)
    return args


def _loss_network(args: argparse.Namespace) -> PercepLossNetwork:
    if args.arch == "vgg":
        return PercepVGGLossNetwork(in_channels=args.channels)
    return PercepZooLossNetwork(arch=args.arch, in_channels=args.channels)


def _inputs(args: argparse.Namespace) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random logits and binary targets, both ``(n, C, H, W)``, on ``--device``."""
    torch.manual_seed(0)
    shape = (args.n, args.channels, args.h, args.w)
    logits = torch.randn(shape, device=args.device)
    target = (torch.rand(shape, device=args.device) > 0.5).float()
    return logits, target


def make_step(
    args: argparse.Namespace, variant: str, logits: torch.Tensor, target: torch.Tensor
) -> Callable[[], None]:
    """One loss step (forward + backward) of ``variant``, on its own loss network."""
    net = _loss_network(args).to(logits.device)

    def step() -> None:
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

    return step


def child(args: argparse.Namespace) -> Dict[str, float]:
    """memory: peak extra memory (MiB) and time of the first step of ``--variant``; time: median
    step time of every variant, interleaved."""
    logits, target = _inputs(args)
    if args.child == "memory":
        peak_mib, first_s = bench.measure_peak(
            make_step(args, args.variant, logits, target), args.device
        )
        return {"peak_mib": peak_mib, "first_s": first_s}
    steps = {v: make_step(args, v, logits, target) for v in args.variant_list}
    return bench.time_interleaved(steps, args.reps, args.device, warmup=args.warmup)


def measure(args: argparse.Namespace, argv: List[str], n: int) -> Dict[str, dict]:
    """``{variant: {"peak_mib", "time_s"} or {"error"}}`` at ``n`` inputs, from child processes
    that parse ``argv`` (the user's arguments) plus the child's selectors."""

    def run(mode: str, variant: str = "naive") -> dict:
        selectors = ["--child", mode, "--variant", variant, "--n", str(n)]
        return bench.run_in_child(__file__, argv + selectors)

    results = {v: run("memory", v) for v in args.variant_list}
    timed = run("time") if args.reps else {}
    for v, r in results.items():
        if "error" in timed:
            r["error"] = timed["error"]
        elif "error" not in r:
            r["time_s"] = timed.get(v, float("nan")) if args.reps else r["first_s"]
    return results


def _ratio(a: Optional[float], b: Optional[float]) -> float:
    return a / b if a is not None and b else float("nan")


def rows(args: argparse.Namespace, argv: List[str]) -> Iterator[Dict[str, object]]:
    """The table's rows, measured as they are asked for."""
    for n in [int(s) for s in args.sizes.split(",")]:
        results = measure(args, argv, n)
        base = results["naive"]
        for v, r in results.items():
            row = {"n": n, "C x H x W": f"{args.channels}x{args.h}x{args.w}", "variant": v}
            if "error" in r:
                row["time (s)"] = f"failed: {r['error']}"
            else:
                row["time (s)"], row["peak (MiB)"] = r["time_s"], r["peak_mib"]
                row["time / naive"] = _ratio(r["time_s"], base.get("time_s"))
                row["naive peak / peak"] = _ratio(base.get("peak_mib"), r["peak_mib"])
            yield row


def report(args: argparse.Namespace, argv: List[str]) -> None:
    """The parent: print the setup, then the table, measured by child processes."""
    h, w = args.h, args.w
    print(bench.describe_device(args.device))
    print(
        f"loss net: {args.arch} (VGG16 blocks 2,2,3,3,3 if 'vgg'), in_channels {args.channels}, "
        f"final layer, {args.precision} (naive and chunked alike); chunk_size {args.chunk_size}"
    )
    if args.scale != 1.0:
        print(
            f"SCALED: inputs are {h}x{w} = ({args.height}x{args.width}) x {args.scale} per "
            f"side (about {args.scale ** 2:.3g}x the FLOPs and activation memory per input)"
        )
    print(bench.describe_peak(args.device) + "; one loss step = forward + backward")
    timing = f"median of {args.reps} interleaved rounds after {args.warmup} warm-up round(s)"
    print(f"time = {timing}, in one process" if args.reps else "time = first step (memory process)")
    print()
    bench.print_table(rows(args, argv), COLUMNS)


def main(argv: Optional[Sequence[str]] = None) -> None:
    bench.run_benchmark(argv, parse_args, child, report)


if __name__ == "__main__":
    main()
