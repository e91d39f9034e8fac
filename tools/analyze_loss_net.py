#!/usr/bin/env python
"""Why the loss network's init matters (paper Sec. 3.2 and Table 4).

For each init scheme, builds the VGG-like loss net (default: VGG16, in_channels 1), feeds it a
mask-like target and a noisy prediction of it, and prints
* the std of every conv output (pre-activation) for the prediction: the paper's init keeps it
  roughly constant (Var[e_L] = Var[e_1] prod_l n_l Var[w_l] / 2 = Var[e_1]); N(0, 1) multiplies
  it by sqrt(n_l / 2) (~17 for a 3x3x64 conv) per layer and explodes; small fixed std vanishes;
* the loss (final layer, mean squared error) and the norm of its gradient reaching the input,
  which is what the task network receives: it spans tens of orders of magnitude across schemes.

Example:
    OMP_NUM_THREADS=1 python tools/analyze_loss_net.py --size 64 96
"""

import argparse
from typing import List, Tuple

import torch
import torch.nn.functional as F

from percep_det.modeling.perceptual import PercepVGGLossNetwork, perceptual_loss

SCHEMES: List[Tuple[str, str, float]] = [
    ("paper", "paper", 0.0),
    ("xavier_normal", "xavier_normal", 0.0),
    ("N(0,1)", "normal", 1.0),
    ("N(0,0.1)", "normal", 0.1),
    ("N(0,0.01)", "normal", 0.01),
    ("U[-1,1]", "uniform", 1.0),
    ("U[-0.1,0.1]", "uniform", 0.1),
    ("U[-0.01,0.01]", "uniform", 0.01),
]


def _inputs(n: int, c: int, h: int, w: int, noise: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Blob-like binary targets (N, C, H, W) and predictions = soft, noisy versions of them."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(n, c, max(h // 8, 1), max(w // 8, 1), generator=g)
    target = (F.interpolate(coarse, size=(h, w), mode="bilinear") > 0.5).float()
    pred = (target + noise * torch.randn(n, c, h, w, generator=g)).clamp(0, 1)
    return pred, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, nargs="+", default=[2, 2, 3, 3, 3])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 512])
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--size", type=int, nargs=2, default=[64, 96], metavar=("H", "W"))
    parser.add_argument("--n", type=int, default=2, help="number of inputs")
    parser.add_argument("--noise", type=float, default=0.2, help="std of the prediction noise")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    convs = [f"conv{b}_{i}" for b, k in enumerate(args.blocks, 1) for i in range(1, k + 1)]
    final = f"pool{len(args.blocks)}"
    pred, target = _inputs(args.n, args.in_channels, *args.size, args.noise)
    print(f"VGG blocks {args.blocks}, widths {args.widths}, kernel {args.kernel_size}, "
          f"input {args.n}x{args.in_channels}x{args.size[0]}x{args.size[1]} (masks; prediction = "
          f"mask + N(0,{args.noise}) noise, clamped), seed {args.seed}")  # fmt: skip
    stds, losses, grads = {}, {}, {}
    for label, init, param in SCHEMES:
        net = PercepVGGLossNetwork(
            in_channels=args.in_channels, blocks=args.blocks, widths=args.widths,
            kernel_size=args.kernel_size, init=init, init_param=param, seed=args.seed,
            out_points=convs + [final],
        )  # fmt: skip
        with torch.no_grad():
            feats = net(pred)
        stds[label] = [feats[c].double().std().item() for c in convs]
        net_final = PercepVGGLossNetwork(
            in_channels=args.in_channels, blocks=args.blocks, widths=args.widths,
            kernel_size=args.kernel_size, init=init, init_param=param, seed=args.seed,
        )  # fmt: skip
        p = pred.clone().requires_grad_()
        loss = perceptual_loss(p, target, net_final)
        loss.backward()
        losses[label], grads[label] = loss.item(), p.grad.double().norm().item()

    labels = [s[0] for s in SCHEMES]
    print("\nstd of each conv output (pre-activation), prediction input:")
    print("| layer | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")
    for i, c in enumerate(convs):
        print(f"| {c} | " + " | ".join(f"{stds[lb][i]:.2e}" for lb in labels) + " |")
    print("| last/first | " + " | ".join(f"{stds[lb][-1] / stds[lb][0]:.1e}" for lb in labels)
          + " |")  # fmt: skip
    print(f"\nloss and input gradient ({final}, mean squared error):")
    print("| scheme | loss | grad norm at input |")
    print("|---|---|---|")
    for lb in labels:
        print(f"| {lb} | {losses[lb]:.3e} | {grads[lb]:.3e} |")


if __name__ == "__main__":
    main()
