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

Presets (``--preset``) name the variant configs and the metrics:
    shapes-cpu: CondInst baseline, percep-gt, percep-teacher on the embedded shapes data set (CPU);
        train the teacher first: tools/train_net.py --config-file
        configs/quick_schedules/condinst_teacher_R18_4k_shapes_cpu.yaml
    coco: the R50 1x COCO configs (set TEACHER.WEIGHTS in condinst_percep_R50_1x_coco.yaml or pass
        MODEL.CONDINST.PERCEPTUAL.TEACHER.WEIGHTS as an override: it is ignored by the others).
    semseg-shapes-cpu: PSPNet-R18 baseline, percep-gt, percep-teacher on the embedded scenes' class
        maps (CPU); train the teacher first: tools/train_net.py --config-file
        configs/quick_schedules/semseg_psp_R18_teacher_shapes_cpu.yaml
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
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from percep_det.utils.plot import load_metrics, plot_experiment
from percep_det.utils.stats import format_mean_std, mean_std, paired_difference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")


class Metric(NamedTuple):
    key: str  # as in metrics.json, e.g. "segm/AP"
    label: str  # table header
    higher_is_better: bool = True


INSTANCE_METRICS = (Metric("segm/AP", "mask AP"), Metric("bbox/AP", "box AP"))
SEMSEG_METRICS = (Metric("sem_seg/mIoU", "mIoU"), Metric("sem_seg/pACC", "pixel acc"))


class Preset(NamedTuple):
    variants: List[Tuple[str, str]]  # (name, config); the first is the baseline
    metrics: Sequence[Metric]


PRESETS: Dict[str, Preset] = {
    "shapes-cpu": Preset(
        [
            ("baseline", "configs/quick_schedules/condinst_R18_shapes_cpu.yaml"),
            ("percep-gt", "configs/quick_schedules/condinst_percep_gt_R18_shapes_cpu.yaml"),
            ("percep-teacher", "configs/quick_schedules/condinst_percep_teacher_R18_shapes_cpu.yaml"),
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
            ("percep-teacher", "configs/quick_schedules/semseg_psp_R18_percep_teacher_shapes_cpu.yaml"),
        ],
        SEMSEG_METRICS,
    ),
}


def parse_metrics(text: str) -> List[Metric]:
    """``--metrics`` "key[:label][:lower],...", e.g. "sem_seg/mIoU:mIoU,depth/AbsRel:AbsRel:lower"."""
    metrics = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if not parts[0]:
            raise ValueError(f"--metrics: empty metric key in {text!r}")
        lower = len(parts) > 2 and parts[2] == "lower"
        if len(parts) > 2 and parts[2] not in ("lower", "higher"):
            raise ValueError(f"--metrics: {item!r}: the third field must be 'lower' or 'higher'")
        metrics.append(Metric(parts[0], parts[1] if len(parts) > 1 and parts[1] else parts[0], not lower))
    return metrics


def read_metrics(
    output_dir: str,
    at_iteration: Optional[int] = None,
    keys: Sequence[str] = tuple(m.key for m in INSTANCE_METRICS),
) -> Optional[dict]:
    """The ``keys`` of a run's last evaluation (of an unfinished run too: the table's "evaluated
    at" column shows it), its ``iteration`` and the mean step ``time``; or those of the evaluation
    logged at ``at_iteration``. None without such an evaluation."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    series = load_metrics(path)  # resumed runs: the last value of a repeated iteration wins
    evals: Dict[int, dict] = {}
    for key in keys:
        for it, value in series.get(key, []):
            evals.setdefault(it, {})[key] = value
    if at_iteration is not None:
        evals = {it: e for it, e in evals.items() if it == at_iteration}
    if not evals:
        return None
    times = [t for _, t in series.get("time", [])]
    times = times[1:] if len(times) > 1 else times  # the first record includes the warm-up
    last = max(evals)
    out = {key: evals[last].get(key, float("nan")) for key in keys}
    out["time"] = sum(times) / len(times) if times else float("nan")
    out["iteration"] = last
    return out


def is_finished(output_dir: str, keys: Sequence[str] = tuple(m.key for m in INSTANCE_METRICS)) -> bool:
    return os.path.isfile(os.path.join(output_dir, "model_final.pth")) and (
        read_metrics(output_dir, keys=keys) is not None
    )


def _has_checkpoint(output_dir: str) -> bool:
    """Whether detectron2's ``last_checkpoint`` names a checkpoint that exists."""
    path = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        return os.path.isfile(os.path.join(output_dir, f.read().strip()))


def run_one(
    name: str, config: str, seed: int, args, overrides: List[str], keys: Sequence[str]
) -> Tuple[str, int, int]:
    """Train (and evaluate) one (variant, seed); returns (name, seed, exit code)."""
    out = os.path.join(args.out, name, f"seed{seed}")
    if args.resume and is_finished(out, keys):
        print(f"[skip] {name} seed {seed}: finished ({out})", flush=True)
        return name, seed, 0
    os.makedirs(out, exist_ok=True)
    cmd = [sys.executable, TRAIN_NET, "--config-file", config, "--num-gpus", str(args.num_gpus)]
    if args.resume and _has_checkpoint(out):
        cmd.append("--resume")
    cmd += ["SEED", str(seed), "OUTPUT_DIR", out] + overrides
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    print(f"[start] {name} seed {seed}: {' '.join(cmd)}", flush=True)
    start = time.time()
    with open(os.path.join(out, "train.log"), "a") as log:
        code = subprocess.run(
            cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        ).returncode
    status = "done" if code == 0 else f"FAILED (exit {code}, see {out}/train.log)"
    print(f"[{status}] {name} seed {seed} in {time.time() - start:.0f} s", flush=True)
    return name, seed, code


def summarize(
    variants: List[Tuple[str, str]],
    seeds: List[int],
    out_dir: str,
    at_iteration: Optional[int] = None,
    metrics: Sequence[Metric] = INSTANCE_METRICS,
) -> Tuple[str, dict]:
    """Markdown tables (means; paired differences to the first variant) and raw numbers of every
    finished run (or of every run's evaluation at ``at_iteration``)."""
    keys = [m.key for m in metrics]
    raw: Dict[str, Dict[int, dict]] = {}
    for name, _ in variants:
        raw[name] = {}
        for seed in seeds:
            found = read_metrics(os.path.join(out_dir, name, f"seed{seed}"), at_iteration, keys)
            if found is not None:
                raw[name][seed] = found
    base_name = variants[0][0]
    base_time = mean_std([m["time"] for m in raw[base_name].values()])[0]
    labels = " | ".join(m.label for m in metrics)
    lines = [
        f"| variant | config | seeds | {labels} | step time (s) | time vs {base_name} | evaluated at |",
        "|---|---|---|" + "---|" * len(metrics) + "---|---|---|",
    ]
    for name, config in variants:
        runs = raw[name]
        cells = [format_mean_std(*mean_std([r[k] for r in runs.values()])) for k in keys]
        step = mean_std([r["time"] for r in runs.values()])[0]
        ratio = step / base_time if runs and base_time and not math.isnan(base_time) else None
        lines.append(
            f"| {name} | {os.path.basename(config)} | {','.join(map(str, sorted(runs))) or '-'} | "
            + " | ".join(cells)
            + f" | {format_mean_std(step, float('nan'))} | "
            f"{'-' if ratio is None or math.isnan(ratio) else f'{ratio:.2f}x'} | "
            f"{','.join(str(i) for i in sorted({r['iteration'] for r in runs.values()})) or '-'} |"
        )
    if len(variants) > 1:
        lines += [
            "",
            f"Paired per-seed differences to {base_name} (variant - {base_name} on the same seed; "
            "mean ± std over the seeds both have; better = higher"
            + ("" if all(m.higher_is_better for m in metrics) else ", or lower where marked ↓")
            + "):",
            "",
            f"| variant | {' | '.join(m.label + ('' if m.higher_is_better else ' ↓') for m in metrics)} |",
            "|---|" + "---|" * len(metrics),
        ]
        for name, _ in variants[1:]:
            cells = []
            for m in metrics:
                base = {s: r[m.key] for s, r in raw[base_name].items()}
                other = {s: r[m.key] for s, r in raw[name].items()}
                cells.append(paired_difference(base, other, m.higher_is_better).format())
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", raw


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
        metavar="KEY[:LABEL[:lower]],...",
        help="metrics.json keys to tabulate (default: the preset's); 'lower' marks a metric where "
        "lower is better, e.g. depth/AbsRel:AbsRel:lower",
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
        jobs = [(name, config, seed) for seed in seeds for name, config in variants]
        with ThreadPoolExecutor(max_workers=max(args.parallel, 1)) as pool:
            results = list(
                pool.map(
                    lambda job: run_one(*job, args=args, overrides=args.overrides, keys=keys),
                    jobs,
                )
            )
        failed = [(name, seed) for name, seed, code in results if code != 0]
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
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(header + table)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(
            {"variants": dict(variants), "metrics": keys, "seeds": seeds, "runs": raw}, f, indent=1
        )
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
