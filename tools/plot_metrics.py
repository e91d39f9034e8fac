#!/usr/bin/env python
"""Training curves (losses and evaluation results: AP, mIoU, ... against iteration) from a run's metrics.json.

Examples:
    python tools/plot_metrics.py output/demo/metrics.json            # -> output/demo/curves.png
    python tools/plot_metrics.py output/demo/metrics.json -o curves.png --smooth 10
"""

import argparse
import os
import sys

from percep_det.utils.plot import plot_metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("metrics_json", help="OUTPUT_DIR/metrics.json of a training run")
    parser.add_argument("-o", "--output", default="", help="PNG path (default: next to the json)")
    parser.add_argument(
        "--smooth", type=int, default=3, help="moving-average window of losses, in logged points"
    )
    args = parser.parse_args(argv)
    out = args.output or os.path.join(
        os.path.dirname(os.path.abspath(args.metrics_json)), "curves.png"
    )
    try:
        plot_metrics(args.metrics_json, out, smooth=args.smooth)
    except (FileNotFoundError, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
