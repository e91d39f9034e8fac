#!/usr/bin/env python
"""Keep an experiment's or a study's results without its checkpoints, and resume from them.

    python tools/archive_runs.py output/exp_depth docs/results/exp_depth

copies every finished (and every diverged) run under the first folder to the same place under the
second: ``metrics.json``, ``config.yaml``, ``run_stats.jsonl`` and an ``ARCHIVED`` marker, a few
tens of kB per run, small enough to commit; plus the summary files at the top (``results.*``,
``study.json``, plots). Unfinished runs are listed and left out.

An archived run with its final evaluation counts as finished for ``--resume``
(``percep_det/utils/experiment.py``): to continue an experiment on another machine, copy the
archive back and resume, e.g.

    mkdir -p output/exp_depth && cp -r docs/results/exp_depth/. output/exp_depth/
    python tools/run_experiment.py --preset depth-shapes-cpu --seeds 1,2,3,4,5 --resume \\
        --out output/exp_depth ...

and only the runs the archive lacks are trained. ``--summary-only`` tabulates an archive as it is.
"""

import argparse
import sys

from percep_det.utils.experiment import archive_runs, parse_metrics


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("src", help="an experiment's or a study's --out folder")
    parser.add_argument("dst", help="the archive folder (created; existing files are replaced)")
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="KEY,...",
        help="metrics.json keys of the final evaluation (default: per run, the first of the "
        "instance, semantic and depth metrics it has)",
    )
    args = parser.parse_args()
    keys = [m.key for m in parse_metrics(args.metrics)] if args.metrics else None
    try:
        report = archive_runs(args.src, args.dst, keys)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(str(e))
    for rel in report["archived"]:
        print(f"[archived] {rel}")
    for rel in report["diverged"]:
        print(f"[archived, diverged] {rel}")
    for line in report["skipped"]:
        print(f"[left out] {line}")
    print(
        f"{len(report['archived'])} finished and {len(report['diverged'])} diverged runs in "
        f"{args.dst}; {len(report['skipped'])} unfinished left out"
    )


if __name__ == "__main__":
    main()
