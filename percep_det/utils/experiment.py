"""Seeded training runs of ``tools/train_net.py``: launch them in parallel, tell finished from
interrupted ones, resume, read their metrics and cost, and tabulate them against a baseline.

Shared by ``tools/run_experiment.py`` (variant configs x seeds) and
``tools/study_loss_networks.py`` (loss-network settings x seeds): one definition of a run, of
"finished", of the step time and of the tables.

A run (:class:`Run`) is ``python tools/train_net.py --config-file CONFIG [--resume] SEED k
OUTPUT_DIR DIR [KEY VALUE ...]`` in a subprocess whose stdout and stderr are appended to
``DIR/train.log``. Every launch appends one JSON line to ``DIR/run_stats.jsonl``: wall time, exit
code, the peak resident memory of the run's largest process (what the kernel reports to
``wait4``: the trainer; data-loader workers are processes of their own) and whether the loss
diverged (detectron2's ``FloatingPointError``).

A run is finished (:func:`run_state`) when detectron2's ``last_checkpoint`` names a checkpoint
that exists and loads, whose ``iteration`` is ``SOLVER.MAX_ITER - 1`` of the run's own
``config.yaml``, and ``metrics.json`` holds an evaluation logged at or after that iteration (the
final one). A checkpoint cut short (a killed save, a full disk) is therefore not finished, and
:func:`prepare_resume` sets it aside so that ``--resume`` continues from the last good one.

Runs can be archived without their checkpoints (:func:`archive_runs`, ``tools/archive_runs.py``):
the files a table needs (``metrics.json``, ``config.yaml``, ``run_stats.jsonl``) are copied with an
``ARCHIVED`` marker. An archived run with its final evaluation counts as finished, so an archive
copied back into an experiment's output folder lets ``--resume`` go on with only the runs it lacks
(e.g. on a new machine, or after deleting checkpoints to free disk).

This module imports nothing from ``tools/``: the caller passes the path of ``train_net.py``.
"""

import datetime
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from .plot import load_metrics
from .stats import format_mean_std, mean_std, paired_difference

__all__ = [
    "ARCHIVED",
    "archive_runs",
    "INSTANCE_METRICS",
    "SEMSEG_METRICS",
    "DEPTH_METRICS",
    "Metric",
    "Run",
    "RunResult",
    "RunState",
    "checkpoint_iteration",
    "collect",
    "is_finished",
    "launch",
    "mean_table",
    "paired_table",
    "parse_metrics",
    "prepare_resume",
    "read_metrics",
    "read_run_stats",
    "run_all",
    "run_state",
    "summarize",
]

logger = logging.getLogger(__name__)

RUN_STATS = "run_stats.jsonl"  # one JSON line per launch of a run, in its OUTPUT_DIR
TRAIN_LOG = "train.log"  # the run's stdout and stderr, appended by every launch
ARCHIVED = "ARCHIVED"  # marker of a run copied by archive_runs (its checkpoints left out)
ARCHIVE_FILES = ("metrics.json", "config.yaml", RUN_STATS)  # what a run's tables read
_DIVERGED = ("FloatingPointError", "Loss became infinite or NaN")


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
class Metric(NamedTuple):
    """An evaluation result to tabulate: its ``metrics.json`` key, a table header, its direction."""

    key: str  # as in metrics.json, e.g. "segm/AP"
    label: str  # table header
    higher_is_better: bool = True
    digits: int = 2  # decimals in the tables (4 for fractions such as AbsRel)


INSTANCE_METRICS = (Metric("segm/AP", "mask AP"), Metric("bbox/AP", "box AP"))
SEMSEG_METRICS = (Metric("sem_seg/mIoU", "mIoU"), Metric("sem_seg/pACC", "pixel acc"))
DEPTH_METRICS = (Metric("depth/AbsRel", "AbsRel", False, 4), Metric("depth/delta1", "δ1", True, 4))


def parse_metrics(text: str) -> List[Metric]:
    """``--metrics`` "key[:label][:lower|higher[:digits]],...", e.g.
    "sem_seg/mIoU:mIoU,depth/AbsRel:AbsRel:lower:4" (digits: decimals in the tables, 2 unless
    given)."""
    metrics = []
    for item in text.split(","):
        parts = item.strip().split(":")
        if not parts[0]:
            raise ValueError(f"--metrics: empty metric key in {text!r}")
        if len(parts) > 2 and parts[2] not in ("lower", "higher"):
            raise ValueError(f"--metrics: {item!r}: the third field must be 'lower' or 'higher'")
        if len(parts) > 3 and not parts[3].isdigit():
            raise ValueError(f"--metrics: {item!r}: the fourth field (decimals) must be a number")
        lower = len(parts) > 2 and parts[2] == "lower"
        label = parts[1] if len(parts) > 1 and parts[1] else parts[0]
        digits = int(parts[3]) if len(parts) > 3 else 2
        metrics.append(Metric(parts[0], label, not lower, digits))
    return metrics


def read_metrics(
    output_dir: str,
    at_iteration: Optional[int] = None,
    keys: Sequence[str] = tuple(m.key for m in INSTANCE_METRICS),
) -> Optional[dict]:
    """The ``keys`` of a run's last evaluation (of an unfinished run too: the table's "evaluated
    at" column shows it), its ``iteration`` and the mean step ``time``; or those of the evaluation
    logged at ``at_iteration``. None without such an evaluation.

    The step time is the mean of the ``time`` entries of ``metrics.json`` (seconds per iteration,
    as detectron2 logs them), the first record (which includes the warm-up) left out."""
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
    last = max(evals)
    out = {key: evals[last].get(key, float("nan")) for key in keys}
    for name in ("time", "cpu_time"):  # wall and CPU seconds per step (engine/timing.py)
        values = [t for _, t in series.get(name, [])]
        values = values[1:] if len(values) > 1 else values  # the first includes the warm-up
        out[name] = sum(values) / len(values) if values else float("nan")
    out["iteration"] = last
    return out


def read_evaluations(output_dir: str, keys: Sequence[str]) -> Dict[int, Dict[str, float]]:
    """Every evaluation of ``keys`` in a run's ``metrics.json``: {iteration: {key: value}}."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return {}
    series = load_metrics(path)
    evals: Dict[int, Dict[str, float]] = {}
    for key in keys:
        for it, value in series.get(key, []):
            evals.setdefault(it, {})[key] = value
    return dict(sorted(evals.items()))


# --------------------------------------------------------------------------------------------
# Finished, interrupted, resumable
# --------------------------------------------------------------------------------------------
def checkpoint_iteration(path: str) -> Tuple[Optional[int], str]:
    """``(iteration, "")`` of a detectron2 checkpoint that loads, or ``(None, why not)``.

    The file is read with the project's safe loader (``torch.load(weights_only=True)``: tensors
    and plain containers only; nothing in it is executed). Should that refuse an object that a
    trainer put there, the file must at least be a complete zip archive (every member's CRC
    checked) and its iteration is taken from its name (``model_0004999.pth`` -> 4999;
    ``model_final.pth`` -> None with the reason "final")."""
    from percep_det.engine.safe_load import CorruptFileError, UnsafeFileError, load_torch

    if not os.path.isfile(path):
        return None, f"{path} does not exist"
    try:
        state = load_torch(path)
    except UnsafeFileError as e:  # weights_only refused an object: check the archive
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as zip_error:
            return None, f"{path} is not a complete checkpoint ({zip_error})"
        if bad is not None:
            return None, f"{path} is corrupt (member {bad!r} fails its CRC)"
        match = re.fullmatch(r"model_(\d+)\.pth", os.path.basename(path))
        if match:
            return int(match.group(1)), ""
        return None, f"final: {path} is complete but its iteration is unreadable ({e})"
    except CorruptFileError as e:  # empty, truncated or garbage
        return None, f"{path} is incomplete or corrupt ({e})"
    if not isinstance(state, dict) or not isinstance(state.get("iteration"), int):
        return None, f"{path} has no 'iteration' (not a detectron2 training checkpoint)"
    return state["iteration"], ""


def _max_iter(output_dir: str) -> Tuple[Optional[int], str]:
    """SOLVER.MAX_ITER of the run's own ``config.yaml`` (written by train_net's setup)."""
    import yaml

    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return None, f"no {path} (the run never started)"
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f)
        return int(cfg["SOLVER"]["MAX_ITER"]), ""
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        return None, f"{path} has no readable SOLVER.MAX_ITER ({type(e).__name__}: {e})"


class RunState(NamedTuple):
    """Where a run stands. ``checkpoint_iter``: iteration of the last good checkpoint named by
    ``last_checkpoint`` (None if none); ``reason``: why it is not finished ("" if it is)."""

    finished: bool
    reason: str
    max_iter: Optional[int]
    checkpoint_iter: Optional[int]


def run_state(
    output_dir: str, keys: Sequence[str] = tuple(m.key for m in INSTANCE_METRICS)
) -> RunState:
    """Whether the run in ``output_dir`` is finished: ``last_checkpoint`` names a checkpoint that
    exists and loads, at iteration ``SOLVER.MAX_ITER - 1`` of the run's ``config.yaml``, and
    ``metrics.json`` has an evaluation of ``keys`` logged at or after that iteration. For an
    archived run (an ``ARCHIVED`` marker, no checkpoints) the evaluation alone decides."""
    max_iter, why = _max_iter(output_dir)
    if max_iter is None:
        return RunState(False, why, None, None)
    if os.path.isfile(os.path.join(output_dir, ARCHIVED)):  # checkpoints left out on purpose
        found = read_metrics(output_dir, keys=keys)
        if found is None or found["iteration"] < max_iter - 1:
            return RunState(
                False,
                f"archived without a final evaluation of {list(keys)} (it starts over)",
                max_iter,
                None,
            )
        return RunState(True, "", max_iter, max_iter - 1)
    tag = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(tag):
        return RunState(False, "no checkpoint yet", max_iter, None)
    with open(tag) as f:
        name = f.read().strip()
    iteration, why = checkpoint_iteration(os.path.join(output_dir, name))
    if iteration is None and why.startswith("final: "):
        iteration = max_iter - 1  # a complete model_final.pth whose pickle weights_only refused
    elif iteration is None:
        return RunState(False, f"last_checkpoint names {name}, but {why}", max_iter, None)
    if iteration != max_iter - 1:
        return RunState(
            False, f"checkpoint at iteration {iteration} of {max_iter}", max_iter, iteration
        )
    found = read_metrics(output_dir, keys=keys)
    if found is None or found["iteration"] < max_iter - 1:
        return RunState(
            False,
            f"no final evaluation of {list(keys)} in metrics.json (training ended at iteration "
            f"{max_iter - 1})",
            max_iter,
            iteration,
        )
    return RunState(True, "", max_iter, iteration)


def is_finished(
    output_dir: str, keys: Sequence[str] = tuple(m.key for m in INSTANCE_METRICS)
) -> bool:
    """See :func:`run_state`."""
    return run_state(output_dir, keys).finished


def archive_runs(src: str, dst: str, keys: Optional[Sequence[str]] = None) -> Dict[str, List[str]]:
    """Copy the finished and the diverged runs under ``src`` to the same relative folders under
    ``dst``, without checkpoints or logs: ``metrics.json``, ``config.yaml``, ``run_stats.jsonl``
    and an ``ARCHIVED`` marker (JSON: where from, when). The summaries in ``src`` itself (files
    of at most 2 MB: ``results.*``, ``study.json``, plots) are copied too.

    ``keys``: the final evaluation that makes a run finished; by default, per run, the first of
    the instance, semantic and depth metrics that its ``metrics.json`` holds. A run folder is one
    with a ``config.yaml``. Unfinished runs are left out (a resume from the
    archive trains them from the start). Every file is written to a temporary name and renamed,
    so an interrupted archive holds whole files. Returns {"archived": [...], "diverged": [...],
    "skipped": ["<folder>: <why>", ...]} with folders relative to ``src``."""
    import shutil

    if not os.path.isdir(src):
        raise FileNotFoundError(f"archive_runs: {src} is not a folder")
    if os.path.abspath(dst) == os.path.abspath(src):
        raise ValueError(f"archive_runs: the archive {dst} is the source folder itself")

    def copy(from_path: str, to_path: str) -> None:
        os.makedirs(os.path.dirname(to_path), exist_ok=True)
        tmp = to_path + ".tmp"
        shutil.copyfile(from_path, tmp)
        os.replace(tmp, to_path)

    report: Dict[str, List[str]] = {"archived": [], "diverged": [], "skipped": []}
    for name in sorted(os.listdir(src)):
        path = os.path.join(src, name)
        if (
            os.path.isfile(path)
            and os.path.getsize(path) <= 2 * 2**20
            and not name.endswith((".pth", ".tmp"))
        ):
            copy(path, os.path.join(dst, name))
    for root, dirs, files in os.walk(src):
        dirs.sort()
        if os.path.abspath(root).startswith(os.path.abspath(dst) + os.sep):
            continue
        if "config.yaml" not in files or "metrics.json" not in files and RUN_STATS not in files:
            continue
        rel = os.path.relpath(root, src)
        run_keys = keys
        if run_keys is None:
            candidates = [tuple(m.key for m in ms) for ms in (INSTANCE_METRICS, SEMSEG_METRICS)]
            candidates.append(tuple(m.key for m in DEPTH_METRICS))
            found = [k for k in candidates if read_metrics(root, keys=k) is not None]
            run_keys = found[0] if found else candidates[0]
        state = run_state(root, run_keys)
        diverged = not state.finished and read_run_stats(root)["diverged"]
        if not state.finished and not diverged:
            report["skipped"].append(f"{rel}: {state.reason}")
            continue
        for f in ARCHIVE_FILES:
            if os.path.isfile(os.path.join(root, f)):
                copy(os.path.join(root, f), os.path.join(dst, rel, f))
        marker = {
            "source": os.path.abspath(root),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "state": "finished" if state.finished else "diverged",
        }
        tmp = os.path.join(dst, rel, ARCHIVED + ".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(marker) + "\n")
        os.replace(tmp, os.path.join(dst, rel, ARCHIVED))
        report["diverged" if diverged else "archived"].append(rel)
    return report


def prepare_resume(output_dir: str) -> bool:
    """Make ``output_dir`` safe for ``train_net.py --resume`` and say whether to pass it.

    If ``last_checkpoint`` names a checkpoint that does not load, that file is renamed to
    ``<name>.incomplete`` and ``last_checkpoint`` is pointed at the latest periodic checkpoint that
    loads (``model_XXXXXXX.pth``), or removed when there is none (the run then starts over).
    Returns True when there is a good checkpoint to resume from."""
    tag = os.path.join(output_dir, "last_checkpoint")
    if not os.path.isfile(tag):
        return False
    with open(tag) as f:
        name = f.read().strip()
    path = os.path.join(output_dir, name)
    if name and checkpoint_iteration(path)[0] is not None:
        return True
    if name and os.path.isfile(path):
        os.replace(path, path + ".incomplete")
        logger.warning(f"{path} does not load: moved to {path}.incomplete")
    candidates = sorted(
        (f for f in os.listdir(output_dir) if re.fullmatch(r"model_\d+\.pth", f)), reverse=True
    )
    for candidate in candidates:
        if checkpoint_iteration(os.path.join(output_dir, candidate))[0] is not None:
            with open(tag, "w") as f:
                f.write(candidate)
            return True
    os.remove(tag)
    return False


# --------------------------------------------------------------------------------------------
# Launching
# --------------------------------------------------------------------------------------------
class Run(NamedTuple):
    """One training run: ``config`` with ``SEED seed``, ``OUTPUT_DIR output_dir`` and
    ``overrides`` (``KEY VALUE`` strings, as on train_net's command line); ``name`` is its
    setting (variant) in logs and tables."""

    name: str
    seed: int
    config: str
    output_dir: str
    overrides: Tuple[str, ...] = ()


class RunResult(NamedTuple):
    name: str
    seed: int
    code: int  # train_net's exit code; 0 for a skipped (finished) run
    seconds: float
    skipped: bool = False


def _tail(path: str, num_bytes: int = 20000) -> str:
    if not os.path.isfile(path):
        return ""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - num_bytes))
        return f.read().decode("utf-8", "replace")


def launch(
    run: Run,
    train_net: str,
    *,
    num_gpus: int = 1,
    resume: bool = False,
    cwd: Optional[str] = None,
) -> RunResult:
    """Train (and evaluate) one run in a subprocess; with ``resume``, continue from its last good
    checkpoint (see :func:`prepare_resume`). Appends the launch's record to ``run_stats.jsonl``."""
    out = run.output_dir
    os.makedirs(out, exist_ok=True)
    cmd = [sys.executable, train_net, "--config-file", run.config, "--num-gpus", str(num_gpus)]
    if resume and prepare_resume(out):
        cmd.append("--resume")
    cmd += ["SEED", str(run.seed), "OUTPUT_DIR", out] + list(run.overrides)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    print(f"[start] {run.name} seed {run.seed}: {' '.join(cmd)}", flush=True)
    start = time.time()
    with open(os.path.join(out, TRAIN_LOG), "a") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        # wait4 rather than wait: it also returns the child's resource usage (peak RSS)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
    seconds = time.time() - start
    record = {
        "started": datetime.datetime.fromtimestamp(start).isoformat(timespec="seconds"),
        "wall_s": round(seconds, 1),
        "exit_code": code,
        "resumed": "--resume" in cmd,
        "peak_rss_mb": round(usage.ru_maxrss / 1024.0, 1),  # ru_maxrss is in KiB on Linux
        "diverged": code != 0 and any(s in _tail(os.path.join(out, TRAIN_LOG)) for s in _DIVERGED),
    }
    with open(os.path.join(out, RUN_STATS), "a") as f:
        f.write(json.dumps(record) + "\n")
    if code == 0:
        status_text = "done"
    elif record["diverged"]:
        status_text = f"DIVERGED (the loss became nan/inf, see {out}/{TRAIN_LOG})"
    else:
        status_text = f"FAILED (exit {code}, see {out}/{TRAIN_LOG})"
    print(f"[{status_text}] {run.name} seed {run.seed} in {seconds:.0f} s", flush=True)
    return RunResult(run.name, run.seed, code, seconds)


def read_run_stats(output_dir: str) -> Dict[str, object]:
    """A run's cost and history from ``run_stats.jsonl`` and ``log.txt``: ``peak_rss_mb`` (the
    largest over its launches), ``cuda_max_mem_mb`` (the largest ``max_mem`` detectron2 logged
    on CUDA; nan on CPU), ``wall_s`` (all launches), ``launches`` and ``diverged`` (the last
    launch ended with a nan/inf loss)."""
    records = []
    path = os.path.join(output_dir, RUN_STATS)
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut by a killed sweep
    cuda = [
        float(m)
        for m in re.findall(r"max_mem: (\d+)M", _tail(os.path.join(output_dir, "log.txt"), 10**7))
    ]
    return {
        "peak_rss_mb": max(
            (float(r["peak_rss_mb"]) for r in records if "peak_rss_mb" in r), default=float("nan")
        ),
        "cuda_max_mem_mb": max(cuda, default=float("nan")),
        "wall_s": sum(r.get("wall_s", 0.0) for r in records),
        "launches": len(records),
        "diverged": bool(records and records[-1].get("diverged")),
    }


def run_all(
    runs: Sequence[Run],
    train_net: str,
    *,
    keys: Sequence[str],
    parallel: int = 1,
    num_gpus: int = 1,
    resume: bool = True,
    skip_diverged: bool = False,
    cwd: Optional[str] = None,
) -> List[RunResult]:
    """Run ``runs`` with up to ``parallel`` at a time. With ``resume``, finished runs (see
    :func:`run_state`) are skipped and interrupted ones continue from their last good checkpoint;
    with ``skip_diverged`` too, runs whose last launch diverged are not tried again."""

    def one(run: Run) -> RunResult:
        if resume:
            state = run_state(run.output_dir, keys)
            if state.finished:
                print(f"[skip] {run.name} seed {run.seed}: finished ({run.output_dir})", flush=True)
                return RunResult(run.name, run.seed, 0, 0.0, skipped=True)
            if skip_diverged and read_run_stats(run.output_dir)["diverged"]:
                print(
                    f"[skip] {run.name} seed {run.seed}: diverged before (see "
                    f"{run.output_dir}/{TRAIN_LOG}; --retry-diverged tries again)",
                    flush=True,
                )
                return RunResult(run.name, run.seed, 1, 0.0, skipped=True)
        return launch(run, train_net, num_gpus=num_gpus, resume=resume, cwd=cwd)

    with ThreadPoolExecutor(max_workers=max(parallel, 1)) as pool:
        return list(pool.map(one, runs))


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
Raw = Dict[str, Dict[int, dict]]  # setting -> seed -> read_metrics() of that run


def collect(
    dirs: Mapping[str, Mapping[int, str]],
    at_iteration: Optional[int] = None,
    keys: Sequence[str] = tuple(m.key for m in INSTANCE_METRICS),
) -> Raw:
    """:func:`read_metrics` of every run that has the evaluation: {name: {seed: metrics}}, from
    {name: {seed: output_dir}}. Without ``at_iteration``, the final evaluation (logged at or after
    ``SOLVER.MAX_ITER - 1`` of the run's ``config.yaml``): an unfinished run is left out rather
    than mixed into a row with its last, earlier evaluation."""
    raw: Raw = {}
    for name, seeds in dirs.items():
        raw[name] = {}
        for seed, out in seeds.items():
            found = read_metrics(out, at_iteration, keys)
            if found is not None and at_iteration is None:
                max_iter = _max_iter(out)[0]
                if max_iter is None or found["iteration"] < max_iter - 1:
                    found = None
            if found is not None:
                raw[name][seed] = found
    return raw


def mean_table(
    rows: Sequence[Tuple[str, Sequence[str]]],
    headers: Sequence[str],
    raw: Raw,
    metrics: Sequence[Metric],
    base: str,
    extra: Sequence[Tuple[str, Callable[[str], str]]] = (),
) -> List[str]:
    """Markdown lines: one row per ``(name, leading cells)`` of ``rows`` with the seeds found,
    mean ± sample std of each metric over them, the mean step time, its ratio to ``base``'s,
    the mean CPU time per step and its ratio (when the runs logged ``cpu_time``: it is not
    inflated by other jobs on the machine), the ``extra`` columns (header, cell of a name) and
    the evaluated iterations."""
    base_time = mean_std([m["time"] for m in raw.get(base, {}).values()])[0]
    cpu = {
        name: mean_std([r.get("cpu_time", float("nan")) for r in runs.values()])[0]
        for name, runs in raw.items()
    }
    if any(not math.isnan(v) for v in cpu.values()):  # runs that logged cpu_time
        base_cpu = cpu.get(base, float("nan"))

        def cpu_cell(name: str) -> str:
            return format_mean_std(cpu.get(name, float("nan")), float("nan"))

        def cpu_ratio(name: str) -> str:
            ratio = cpu.get(name, float("nan")) / base_cpu if base_cpu else float("nan")
            return "-" if math.isnan(ratio) else f"{ratio:.2f}x"

        extra = [("CPU s/step", cpu_cell), (f"CPU vs {base}", cpu_ratio)] + list(extra)
    labels = " | ".join(m.label for m in metrics)
    extra_headers = "".join(f" {h} |" for h, _ in extra)
    lines = [
        f"| {' | '.join(headers)} | seeds | {labels} | step time (s) | time vs {base} |"
        + extra_headers
        + " evaluated at |",
        "|" + "---|" * (len(headers) + len(metrics) + len(extra) + 4),
    ]
    for name, lead in rows:
        runs = raw.get(name, {})
        cells = [
            format_mean_std(*mean_std([r[m.key] for r in runs.values()]), m.digits) for m in metrics
        ]
        step = mean_std([r["time"] for r in runs.values()])[0]
        ratio = step / base_time if runs and base_time and not math.isnan(base_time) else None
        ratio_cell = "-" if ratio is None or math.isnan(ratio) else f"{ratio:.2f}x"
        iters = ",".join(str(i) for i in sorted({r["iteration"] for r in runs.values()}))
        lines.append(
            f"| {' | '.join(lead)} | {','.join(map(str, sorted(runs))) or '-'} | "
            + " | ".join(cells)
            + f" | {format_mean_std(step, float('nan'))} | {ratio_cell} |"
            + "".join(f" {cell(name)} |" for _, cell in extra)
            + f" {iters or '-'} |"
        )
    return lines


def paired_table(
    names: Sequence[str],
    raw: Raw,
    metrics: Sequence[Metric],
    base: str,
    row_header: str = "variant",
    labels: Optional[Sequence[str]] = None,
) -> List[str]:
    """Markdown lines: per name, the paired per-seed difference to ``base`` of each metric (mean
    ± std over the seeds both have, and in how many of them the name is better); ``labels``: the
    rows' first cells (default: the names)."""
    lines = [
        "",
        f"Paired per-seed differences to {base} ({row_header} - {base} on the same seed; "
        "mean ± std over the seeds both have; better = higher"
        + ("" if all(m.higher_is_better for m in metrics) else ", or lower where marked ↓")
        + "):",
        "",
        f"| {row_header} | "
        + " | ".join(m.label + ("" if m.higher_is_better else " ↓") for m in metrics)
        + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for name, label in zip(names, labels or names):
        cells = []
        for m in metrics:
            base_values = {s: r[m.key] for s, r in raw.get(base, {}).items()}
            values = {s: r[m.key] for s, r in raw.get(name, {}).items()}
            cells.append(
                paired_difference(base_values, values, m.higher_is_better).format(m.digits)
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def summarize(
    variants: Sequence[Tuple[str, str]],
    seeds: Sequence[int],
    out_dir: str,
    at_iteration: Optional[int] = None,
    metrics: Sequence[Metric] = INSTANCE_METRICS,
) -> Tuple[str, Raw]:
    """Markdown tables (means; paired differences to the first variant) and raw numbers of every
    run under ``out_dir/<variant>/seed<k>`` with a final evaluation (or with the evaluation at
    ``at_iteration``). ``variants``: (name, config) pairs, the first one the baseline."""
    keys = [m.key for m in metrics]
    dirs = {
        name: {seed: os.path.join(out_dir, name, f"seed{seed}") for seed in seeds}
        for name, _ in variants
    }
    raw = collect(dirs, at_iteration, keys)
    base = variants[0][0]
    rows = [(name, [name, os.path.basename(config)]) for name, config in variants]
    lines = mean_table(rows, ["variant", "config"], raw, metrics, base)
    missing = [
        f"{name} seed {seed} ({run_state(d, keys).reason or 'no evaluation at that iteration'})"
        for name, by_seed in dirs.items()
        for seed, d in by_seed.items()
        if seed not in raw[name]
    ]
    if missing:
        lines += ["", "Not in the tables: " + "; ".join(missing) + "."]
    if len(variants) > 1:
        lines += paired_table([name for name, _ in variants[1:]], raw, metrics, base)
    return "\n".join(lines) + "\n", raw
