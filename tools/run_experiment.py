#!/usr/bin/env python
"""Baseline vs perceptual CondInst: train every variant with every seed, tabulate mask / box AP.

Each run is ``tools/train_net.py --config-file <variant config> SEED <k> OUTPUT_DIR
<out>/<variant>/seed<k> [overrides]`` in a subprocess (stdout in that folder's ``train.log``). The
final ``segm/AP`` and ``bbox/AP`` are read from the run's ``metrics.json`` (detectron2 writes the
evaluation after the last iteration there), the step time is the mean of its ``time`` entries
(the first record, the warm-up, left out). The table (mean +- sample std over seeds; the step-time
ratio vs the first variant) is printed and written to ``<out>/results.md`` (+ ``results.json``);
``<out>/curves.png`` plots mask and box AP against iteration per variant (mean over seeds, band
from the lowest to the highest seed), to see whether the curves have levelled off.

Presets (``--preset``) name the variant configs:
    shapes-cpu: baseline, percep-gt, percep-teacher on the embedded shapes data set (CPU);
        train the teacher first: tools/train_net.py --config-file
        configs/quick_schedules/condinst_teacher_R18_4k_shapes_cpu.yaml
    coco: the R50 1x COCO configs (set TEACHER.WEIGHTS in condinst_percep_R50_1x_coco.yaml or pass
        MODEL.CONDINST.PERCEPTUAL.TEACHER.WEIGHTS as an override: it is ignored by the others).
``--variant NAME=CONFIG`` (repeatable) replaces the preset's list.

Examples:
    python tools/run_experiment.py --preset shapes-cpu --seeds 1,2,3 --parallel 2 --out output/exp
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
from typing import Dict, List, Optional, Tuple

from percep_det.utils.plot import load_metrics, plot_experiment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")

PRESETS: Dict[str, List[Tuple[str, str]]] = {
    "shapes-cpu": [
        ("baseline", "configs/quick_schedules/condinst_R18_shapes_cpu.yaml"),
        ("percep-gt", "configs/quick_schedules/condinst_percep_gt_R18_shapes_cpu.yaml"),
        ("percep-teacher", "configs/quick_schedules/condinst_percep_teacher_R18_shapes_cpu.yaml"),
    ],
    "coco": [
        ("baseline", "configs/InstanceSegmentation/condinst_R50_1x_coco.yaml"),
        ("percep-gt", "configs/InstanceSegmentation/condinst_percep_gt_R50_1x_coco.yaml"),
        ("percep-teacher", "configs/InstanceSegmentation/condinst_percep_R50_1x_coco.yaml"),
    ],
}


def read_metrics(output_dir: str, at_iteration: Optional[int] = None) -> Optional[dict]:
    """``segm/AP``, ``bbox/AP`` of a run's last evaluation (of an unfinished run too: the table's
    "evaluated at" column shows it), its ``iteration`` and the mean step ``time``; or those of the
    evaluation logged at ``at_iteration``. None without such an evaluation."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return None
    series = load_metrics(path)  # resumed runs: the last value of a repeated iteration wins
    evals: Dict[int, dict] = {}
    for key in ("segm/AP", "bbox/AP"):
        for it, value in series.get(key, []):
            evals.setdefault(it, {})[key] = value
    if at_iteration is not None:
        evals = {it: e for it, e in evals.items() if it == at_iteration}
    if not evals:
        return None
    times = [t for _, t in series.get("time", [])]
    times = times[1:] if len(times) > 1 else times  # the first record includes the warm-up
    last = max(evals)
    return {
        "segm/AP": evals[last].get("segm/AP", float("nan")),
        "bbox/AP": evals[last].get("bbox/AP", float("nan")),
        "time": sum(times) / len(times) if times else float("nan"),
        "iteration": last,
    }


def is_finished(output_dir: str) -> bool:
    return os.path.isfile(os.path.join(output_dir, "model_final.pth")) and (
        read_metrics(output_dir) is not None
    )


def _has_checkpoint(output_dir: str) -> bool:
    """Whether detectron2's ``last_checkpoint`` names a checkpoint that exists."""
    path = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        return os.path.isfile(os.path.join(output_dir, f.read().strip()))


def run_one(name: str, config: str, seed: int, args, overrides: List[str]) -> Tuple[str, int, int]:
    """Train (and evaluate) one (variant, seed); returns (name, seed, exit code)."""
    out = os.path.join(args.out, name, f"seed{seed}")
    if args.resume and is_finished(out):
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


def _mean_std(values: List[float]) -> Tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return float("nan"), float("nan")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _fmt(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def summarize(
    variants: List[Tuple[str, str]],
    seeds: List[int],
    out_dir: str,
    at_iteration: Optional[int] = None,
) -> Tuple[str, dict]:
    """Markdown table and raw numbers of every finished run (or of every run's evaluation at
    ``at_iteration``)."""
    raw = {}
    for name, _ in variants:
        raw[name] = {}
        for seed in seeds:
            metrics = read_metrics(os.path.join(out_dir, name, f"seed{seed}"), at_iteration)
            if metrics is not None:
                raw[name][seed] = metrics
    base_time = _mean_std([m["time"] for m in raw[variants[0][0]].values()])[0]
    lines = [
        "| variant | config | seeds | mask AP | box AP | step time (s) | time vs "
        f"{variants[0][0]} | evaluated at |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, config in variants:
        runs = raw[name]
        mask = _mean_std([m["segm/AP"] for m in runs.values()])
        box = _mean_std([m["bbox/AP"] for m in runs.values()])
        step = _mean_std([m["time"] for m in runs.values()])
        ratio = step[0] / base_time if runs and base_time and not math.isnan(base_time) else None
        lines.append(
            f"| {name} | {os.path.basename(config)} | {','.join(map(str, sorted(runs))) or '-'} | "
            f"{_fmt(*mask)} | {_fmt(*box)} | {_fmt(step[0], float('nan'))} | "
            f"{'-' if ratio is None or math.isnan(ratio) else f'{ratio:.2f}x'} | "
            f"{','.join(str(i) for i in sorted({m['iteration'] for m in runs.values()})) or '-'} |"
        )
    return "\n".join(lines) + "\n", raw


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="shapes-cpu")
    parser.add_argument(
        "--variant", action="append", default=[], metavar="NAME=CONFIG", help="replaces --preset"
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
        variants = PRESETS[args.preset]
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
                pool.map(lambda job: run_one(*job, args=args, overrides=args.overrides), jobs)
            )
        failed = [(name, seed) for name, seed, code in results if code != 0]
        if failed:
            print(f"failed runs: {failed}", file=sys.stderr)

    table, raw = summarize(variants, seeds, args.out, args.at_iteration)
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
        json.dump({"variants": dict(variants), "seeds": seeds, "runs": raw}, f, indent=1)
    print("\n" + header + table)
    print(f"written to {os.path.join(args.out, 'results.md')}")
    runs = {
        name: [os.path.join(args.out, name, f"seed{seed}", "metrics.json") for seed in seeds]
        for name, _ in variants
    }
    try:
        png = plot_experiment(runs, os.path.join(args.out, "curves.png"), title=args.out)
        print(f"AP curves (mean over seeds, band = min..max) in {png}")
    except ValueError as e:
        print(f"no AP curves yet: {e}")


if __name__ == "__main__":
    main()
