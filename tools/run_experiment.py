#!/usr/bin/env python
"""Baseline vs perceptual variants: train every variant with every seed, tabulate the metrics.

Each run is ``tools/train_net.py --config-file <variant config> SEED <k> OUTPUT_DIR
<out>/<variant>/seed<k> [overrides]`` in a subprocess (stdout in that folder's ``train.log``). The
final evaluation metrics (a preset's, or ``--metrics``: e.g. ``segm/AP`` and ``bbox/AP`` for
instance segmentation, ``sem_seg/mIoU`` and ``sem_seg/pACC`` for semantic segmentation) are read
from the run's ``metrics.json`` (detectron2 writes the evaluation after the last iteration there);
the step time is the mean of its ``time`` entries (the first record, the warm-up, left out). Two
tables are printed and written to ``<out>/results.md`` (+ ``results.json``): mean +- sample std over
seeds with the step-time ratio vs the first variant (the baseline), and the paired per-seed
differences to the baseline (mean +- std, in how many seeds the variant is better).
``<out>/curves.png`` plots each metric against iteration per variant (mean over seeds, band from the
lowest to the highest seed), to see whether the curves have levelled off.

With ``--resume`` a run counts as finished when the checkpoint its ``last_checkpoint`` names loads,
is at iteration ``SOLVER.MAX_ITER - 1`` (of the run's ``config.yaml``) and the final evaluation is
in ``metrics.json``; an unfinished run continues from its last good checkpoint (one cut short is
set aside as ``<name>.incomplete``). The run machinery is ``percep_det/utils/experiment.py``,
shared with ``tools/study_loss_networks.py``.

Presets (``--preset``) name the variant configs and the metrics:
    shapes-cpu: CondInst baseline, percep-gt, percep-teacher on the embedded shapes data set (CPU);
        train the teacher first: tools/train_net.py --config-file
        configs/quick_schedules/condinst_teacher_R18_4k_shapes_cpu.yaml
    coco: the R50 1x COCO configs (set TEACHER.WEIGHTS in condinst_percep_R50_1x_coco.yaml or pass
        MODEL.CONDINST.PERCEPTUAL.TEACHER.WEIGHTS as an override: it is ignored by the others).
    semseg-shapes-cpu: PSPNet-R18 baseline, percep-gt, percep-teacher on the embedded scenes' class
        maps (CPU); train the teacher first: tools/train_net.py --config-file
        configs/quick_schedules/semseg_psp_R18_teacher_shapes_cpu.yaml
    depth-shapes-cpu: the four rows of the seed paper's Table 7 (WCE, + perceptual, + VNL,
        + VNL + perceptual) on the embedded depth scenes (CPU); AbsRel (lower is better), delta1.
``--variant NAME=CONFIG`` (repeatable) replaces the preset's list (the first is the baseline).

Examples:
    python tools/run_experiment.py --preset shapes-cpu --seeds 1,2,3 --parallel 2 --out output/exp
    python tools/run_experiment.py --preset semseg-shapes-cpu --seeds 1,2,3,4,5 --parallel 2 \\
        --out output/exp_semseg
    python tools/run_experiment.py --preset coco --seeds 1,2 --num-gpus 8 --out output/exp_coco
    python tools/run_experiment.py --preset shapes-cpu --parallel 3 --out output/exp_gpu \\
        MODEL.DEVICE cuda                      # several small runs at once on one big GPU
    python tools/run_experiment.py ... --resume   # skip finished runs, resume unfinished ones
"""

import argparse
import json
import os
import sys
from typing import Dict, List, NamedTuple, Sequence, Tuple

from percep_det.utils.experiment import (  # noqa: F401  (the tests use them from here)
    DEPTH_METRICS,
    INSTANCE_METRICS,
    SEMSEG_METRICS,
    Metric,
    Run,
    is_finished,
    parse_metrics,
    read_metrics,
    run_all,
    run_state,
    summarize,
)
from percep_det.utils.plot import plot_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")


class Preset(NamedTuple):
    variants: List[Tuple[str, str]]  # (name, config); the first is the baseline
    metrics: Sequence[Metric]


PRESETS: Dict[str, Preset] = {
    "shapes-cpu": Preset(
        [
            ("baseline", "configs/quick_schedules/condinst_R18_shapes_cpu.yaml"),
            ("percep-gt", "configs/quick_schedules/condinst_percep_gt_R18_shapes_cpu.yaml"),
            (
                "percep-teacher",
                "configs/quick_schedules/condinst_percep_teacher_R18_shapes_cpu.yaml",
            ),
        ],
        INSTANCE_METRICS,
    ),
    "coco": Preset(
        [
            ("baseline", "configs/InstanceSegmentation/condinst_R50_1x_coco.yaml"),
            ("percep-gt", "configs/InstanceSegmentation/condinst_percep_gt_R50_1x_coco.yaml"),
            ("percep-teacher", "configs/InstanceSegmentation/condinst_percep_R50_1x_coco.yaml"),
        ],
        INSTANCE_METRICS,
    ),
    "semseg-shapes-cpu": Preset(
        [
            ("baseline", "configs/quick_schedules/semseg_psp_R18_shapes_cpu.yaml"),
            ("percep-gt", "configs/quick_schedules/semseg_psp_R18_percep_gt_shapes_cpu.yaml"),
            (
                "percep-teacher",
                "configs/quick_schedules/semseg_psp_R18_percep_teacher_shapes_cpu.yaml",
            ),
        ],
        SEMSEG_METRICS,
    ),
    "depth-shapes-cpu": Preset(
        [
            ("wce", "configs/quick_schedules/depth_R18_wce_shapes_cpu.yaml"),
            ("wce-percep", "configs/quick_schedules/depth_R18_wce_percep_shapes_cpu.yaml"),
            ("wce-vnl", "configs/quick_schedules/depth_R18_wce_vnl_shapes_cpu.yaml"),
            ("wce-vnl-percep", "configs/quick_schedules/depth_R18_wce_vnl_percep_shapes_cpu.yaml"),
        ],
        DEPTH_METRICS,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shapes-cpu")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME=CONFIG", help="replaces --preset"
    )
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="KEY[:LABEL[:lower|higher[:DIGITS]]],...",
        help="metrics.json keys to tabulate (default: the preset's); 'lower' marks a metric where "
        "lower is better, DIGITS the decimals in the tables (2 by default), e.g. "
        "depth/AbsRel:AbsRel:lower:4",
    )
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated SEED values")
    parser.add_argument("--out", default="output/experiment", help="root of the runs' OUTPUT_DIRs")
    parser.add_argument("--parallel", type=int, default=1, help="runs at the same time")
    parser.add_argument("--num-gpus", type=int, default=1, help="per run (tools/train_net.py)")
    parser.add_argument("--resume", action="store_true", help="skip finished runs, resume others")
    parser.add_argument("--summary-only", action="store_true", help="only tabulate existing runs")
    parser.add_argument(
        "--at-iteration",
        type=int,
        default=None,
        help="tabulate the evaluation logged at this iteration (e.g. 1499 for TEST.EVAL_PERIOD "
        "500) instead of the final one: compares runs that did not all finish",
    )
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="KEY VALUE ... for every run")
    args = parser.parse_args()

    if args.variant:
        variants = [tuple(v.split("=", 1)) for v in args.variant]
        bad = [v for v in args.variant if "=" not in v]
        if bad:
            parser.error(f"--variant expects NAME=CONFIG, got {bad}")
    else:
        variants = PRESETS[args.preset].variants
    try:
        metrics = parse_metrics(args.metrics) if args.metrics else PRESETS[args.preset].metrics
    except ValueError as e:
        parser.error(str(e))
    keys = [m.key for m in metrics]
    for _, config in variants:
        if not os.path.isfile(os.path.join(REPO, config)):
            parser.error(f"config file {config!r} does not exist (relative to {REPO})")
    if len(args.overrides) % 2:
        parser.error(f"overrides must be KEY VALUE pairs, got {args.overrides}")
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out = os.path.abspath(args.out)

    if not args.summary_only:
        jobs = [
            Run(
                name,
                seed,
                config,
                os.path.join(args.out, name, f"seed{seed}"),
                tuple(args.overrides),
            )
            for seed in seeds
            for name, config in variants
        ]
        results = run_all(
            jobs,
            TRAIN_NET,
            keys=keys,
            parallel=args.parallel,
            num_gpus=args.num_gpus,
            resume=args.resume,
            cwd=REPO,
        )
        failed = [(r.name, r.seed) for r in results if r.code != 0]
        if failed:
            print(f"failed runs: {failed}", file=sys.stderr)

    table, raw = summarize(variants, seeds, args.out, args.at_iteration, metrics)
    when = "final evaluation"
    if args.at_iteration is not None:
        when = f"evaluation at iteration {args.at_iteration}"
    header = (
        f"Runs under {args.out}, seeds {seeds}, overrides {args.overrides or 'none'}, {when}; mean ± "
        "sample std over seeds; step time = mean of metrics.json 'time' (s/iter).\n\n"
    )
    os.makedirs(args.out, exist_ok=True)
    summary = {"variants": dict(variants), "metrics": keys, "seeds": seeds, "runs": raw}
    for name, text in (
        ("results.md", header + table),
        ("results.json", json.dumps(summary, indent=1)),
    ):
        path = os.path.join(args.out, name)
        with open(path + ".tmp", "w") as f:  # whole files or none: a killed summary leaves .tmp
            f.write(text)
        os.replace(path + ".tmp", path)
    print("\n" + header + table)
    print(f"written to {os.path.join(args.out, 'results.md')}")
    runs = {
        name: [os.path.join(args.out, name, f"seed{seed}", "metrics.json") for seed in seeds]
        for name, _ in variants
    }
    try:
        png = plot_experiment(runs, os.path.join(args.out, "curves.png"), keys, title=args.out)
        print(f"curves (mean over seeds, band = min..max) in {png}")
    except ValueError as e:
        print(f"no curves yet: {e}")


if __name__ == "__main__":
    main()
